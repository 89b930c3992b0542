"""Ingestion: text extraction, chunking and the pipeline the worker runs."""
