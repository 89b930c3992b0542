"""Domain code: documents, vectors, ingestion and search."""
