"""Semantic and hybrid search over the collections a caller may read."""
