"""Text embeddings: one process-wide embedder per model, on one of two backends.

- `onnx` (default): ONNX Runtime and the tokenizers library over the model exported once
  to ONNX (`onnx_embedder`, `onnx_export`); no torch in the process (ADR 0095).
- `torch`: sentence-transformers (`torch_embedder`), for models that cannot be exported;
  needs the `torch` extra.

Both give the same vectors (cosine >= 0.999) under the same model name, so switching the
backend needs no re-index; changing the model does.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from knowledge_service.domain.vectors.names import (
    MINILM_CANONICAL,
    MINILM_NAMES,
    canonical_model_name,
)

if TYPE_CHECKING:
    from knowledge_service.config import Settings

__all__ = [
    "MINILM_CANONICAL",
    "MINILM_NAMES",
    "Embedder",
    "EmbeddingBackend",
    "canonical_model_name",
    "embedder_for",
    "get_embedder",
]

EmbeddingBackend = Literal["onnx", "torch"]
QueryPrecision = Literal["auto", "fp32", "bf16"]


class Embedder(Protocol):
    """What ingestion, search and re-index use of an embedder."""

    name: str
    backend: str

    def __hash__(self) -> int: ...  # one instance per model: a cache key (token budgets)

    @property
    def model(self) -> Any: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_seq_length(self) -> int | None: ...

    @property
    def special_tokens(self) -> int: ...

    def load(self) -> None: ...

    def check_available(self) -> None: ...

    def set_threads(self, threads: int) -> None: ...

    def count_tokens(self, text: str) -> int: ...

    def encode(self, texts: list[str], batch_size: int = 32) -> list[list[float]]: ...

    def encode_query(self, text: str) -> list[float]: ...


def get_embedder(
    name: str,
    device: str = "cpu",
    threads: int = 0,
    query_precision: QueryPrecision = "fp32",
    backend: EmbeddingBackend | None = None,
    onnx_root: Path | None = None,
) -> Embedder:
    """The process-wide embedder of a model (the model loads on first use). Without a
    backend or an ONNX directory, the settings' (FM_EMBEDDING_BACKEND,
    FM_EMBEDDING_ONNX_DIR)."""
    if backend is None or onnx_root is None:
        from knowledge_service.config import Settings

        settings = Settings()
        backend = backend or settings.embedding_backend
        onnx_root = onnx_root or settings.embedding_onnx_root
    return _embedder(name, device, threads, query_precision, backend, onnx_root.resolve())


@lru_cache(maxsize=8)
def _embedder(
    name: str,
    device: str,
    threads: int,
    query_precision: QueryPrecision,
    backend: EmbeddingBackend,
    onnx_root: Path,
) -> Embedder:
    if backend == "torch":
        from knowledge_service.domain.vectors.torch_embedder import TorchEmbedder

        return TorchEmbedder(name, device, threads, query_precision)
    from knowledge_service.domain.vectors.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(name, onnx_root, threads)


def embedder_for(settings: Settings, threads: int = 0) -> Embedder:
    """The embedder the settings configure (the service passes its thread count; the
    worker's main process and children share the default so they share the instance)."""
    return get_embedder(
        settings.embedding_model,
        settings.embedding_device,
        threads,
        settings.query_precision,
        settings.embedding_backend,
        settings.embedding_onnx_root,
    )
