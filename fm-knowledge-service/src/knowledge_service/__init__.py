"""FaultMaven knowledge service: documents, embeddings, semantic and hybrid search."""
