"""Query embeddings of the torch backend: the bf16 query path stays with the fp32
document vectors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="the torch backend needs the `torch` extra")

from knowledge_service.domain.vectors.embedder import get_embedder
from knowledge_service.domain.vectors.torch_embedder import (
    TorchEmbedder,
    _plain_bert_forward,
    _use_bf16,
)

Embedder = TorchEmbedder

QUERIES = [
    "etcd has no leader",
    "why",
    "Checkout returns 502 and orders logs 'remaining connection slots are reserved'",
    "kubelet client certificates expire in the prod-eu-1 cluster within 24h; rotate them?",
    "Fehler: Verbindung abgelehnt — 接続が拒否されました — ошибка соединения ✓",
    "OOMKilled " * 400,  # past the model's 256 tokens: truncated the same way
]


@pytest.fixture(scope="module")
def bf16() -> Embedder:
    embedder = get_embedder("all-MiniLM-L6-v2", query_precision="bf16", backend="torch")
    embedder.model  # noqa: B018 (loads it)
    return embedder


def test_bf16_query_vectors_stay_with_the_fp32_document_vectors(bf16: Embedder) -> None:
    import torch

    linears = [m for m in bf16._query_model.modules() if type(m).__name__ == "Bf16Linear"]
    assert len(linears) == 36  # 6 layers x (q, k, v, out, up, down): all in bf16
    for m in linears:
        assert m.bias.dtype == torch.bfloat16
        assert m.packed is not None or m.weight.dtype == torch.bfloat16
    for query in QUERIES:
        fast = np.asarray(bf16.encode_query(query))
        full = np.asarray(bf16.encode([query])[0])  # how documents are embedded: fp32
        assert fast.shape == (384,)
        assert abs(float(np.linalg.norm(fast)) - 1.0) < 1e-5
        assert float(fast @ full) >= 0.999, query


def test_bf16_queries_leave_document_embeddings_in_fp32(bf16: Embedder) -> None:
    fp32 = get_embedder("all-MiniLM-L6-v2", backend="torch")
    assert fp32.query_precision == "fp32"
    texts = ["Lower the pool size to 20 per pod and restart pgbouncer.", "etcd leader lost"]
    assert bf16.encode(texts) == fp32.encode(texts)
    fp32.model  # noqa: B018
    assert fp32._query_model is fp32.model[0].auto_model  # fp32: the model's own transformer


def test_auto_precision_is_bf16_only_with_native_bf16_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    assert _use_bf16("fp32", "cpu") is False
    assert _use_bf16("bf16", "cpu") is True
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert _use_bf16("auto", "cpu") is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert _use_bf16("auto", "cpu") is True
    assert _use_bf16("auto", "cuda") is False


def test_without_onednn_packing_bf16_queries_use_plain_bf16_weights(
    bf16: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def missing(*_args: object) -> None:
        raise RuntimeError("no packed linear here")

    monkeypatch.setitem(torch.ops.mkldnn.__dict__, "_reorder_linear_weight", missing)
    plain = Embedder("all-MiniLM-L6-v2", query_precision="bf16")
    plain.model  # noqa: B018
    linears = [m for m in plain._query_model.modules() if type(m).__name__ == "Bf16Linear"]
    assert linears
    assert all(m.packed is None and m.weight.dtype == torch.bfloat16 for m in linears)
    for query in QUERIES:
        a = np.asarray(plain.encode_query(query))
        b = np.asarray(bf16.encode_query(query))
        assert float(a @ b) >= 0.9999, query


def test_the_written_out_bert_forward_matches_transformers() -> None:
    import torch

    first = get_embedder("all-MiniLM-L6-v2", backend="torch").model[0]
    forward = _plain_bert_forward(first.auto_model)
    assert forward is not None
    for query in QUERIES:
        batch = first.tokenizer(
            [query], return_tensors="pt", truncation=True, max_length=first.max_seq_length
        )
        with torch.inference_mode():
            ours = forward(dict(batch))
            theirs = first.auto_model(**batch).last_hidden_state
        assert ours.shape == theirs.shape
        assert torch.allclose(ours, theirs, atol=1e-4), query
    assert _plain_bert_forward(torch.nn.Linear(2, 2)) is None  # other models: transformers
