"""Evidence files: upload, metadata, content, deletion."""
