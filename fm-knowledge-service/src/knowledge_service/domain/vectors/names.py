"""Embedding model names: what collections and chunks record for a configured model."""

from __future__ import annotations

MINILM_NAMES = frozenset(
    {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm", "default"}
)
MINILM_CANONICAL = "sentence-transformers/all-MiniLM-L6-v2"


def canonical_model_name(name: str) -> str:
    """The name recorded on collections and chunks for a configured model."""
    return MINILM_CANONICAL if name.strip().lower() in MINILM_NAMES else name.strip()
