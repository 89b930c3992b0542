"""Embeddings, the Chroma vector store and the BM25 keyword indexes."""
