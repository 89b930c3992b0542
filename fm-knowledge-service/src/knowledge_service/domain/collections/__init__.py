"""Chroma collections as an admin sees them: their models, and re-indexing them."""
