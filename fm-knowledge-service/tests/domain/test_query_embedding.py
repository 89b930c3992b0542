"""Query embeddings: the bf16 query path stays with the fp32 document vectors, and a
search embeds its query while it reads the case's owner."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from fm_common.auth import Principal
from fm_common.contracts.knowledge import SearchRequest
from fm_common.db import create_engine, create_sessionmaker
from knowledge_service.domain.documents import service as documents
from knowledge_service.domain.search import service as search_service
from knowledge_service.domain.vectors.embedder import Embedder, _use_bf16, get_embedder

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
    embedder = get_embedder("all-MiniLM-L6-v2", query_precision="bf16")
    embedder.model  # noqa: B018 (loads it)
    return embedder


def test_bf16_query_vectors_stay_with_the_fp32_document_vectors(bf16: Embedder) -> None:
    import torch

    linears = [m for m in bf16._query_model.modules() if type(m).__name__ == "Bf16Linear"]
    assert len(linears) == 36  # 6 layers x (q, k, v, out, up, down): all in bf16
    assert all(m.weight.dtype == torch.bfloat16 for m in linears)
    for query in QUERIES:
        fast = np.asarray(bf16.encode_query(query))
        full = np.asarray(bf16.encode([query])[0])  # how documents are embedded: fp32
        assert fast.shape == (384,)
        assert abs(float(np.linalg.norm(fast)) - 1.0) < 1e-5
        assert float(fast @ full) >= 0.999, query


def test_bf16_queries_leave_document_embeddings_in_fp32(bf16: Embedder) -> None:
    fp32 = get_embedder("all-MiniLM-L6-v2")
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


class _Embedder:
    """Records that the embedding started; answers a fixed vector."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def encode_query(self, text: str) -> list[float]:
        self.started.set()
        return [1.0] + [0.0] * 383


class _Store:
    def __init__(self) -> None:
        self.queried: list[str] = []

    def query(self, name: str, vector: Any, n: int, where: Any) -> list[Any]:
        self.queried.append(name)
        return []


def test_a_case_search_embeds_its_query_while_it_reads_the_case_owner(
    kdb: Any, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kdb(lambda s: documents.claim_case(s, "c1", "alice"))
    embedder, store = _Embedder(), _Store()
    seen: dict[str, bool] = {}
    real_owner = documents.case_collection_owner

    async def owner(session: Any, case_id: str) -> str | None:
        # Sequential code would start the embedding only after this returns.
        seen["embedding_started"] = await asyncio.to_thread(embedder.started.wait, 5)
        return await real_owner(session, case_id)

    monkeypatch.setattr(search_service.documents, "case_collection_owner", owner)
    principal = Principal(
        user_id="alice",
        username="alice",
        roles=(),
        session_id=None,
        jti="j",
        expires_at=0,
        token="t",
        is_service=False,
    )
    deps = SimpleNamespace(settings=None, store=store, embedder=embedder, bm25=None, redis=None)
    req = SearchRequest(query="pool exhausted", scopes=["personal", "case"], case_id="c1")

    async def run() -> Any:
        engine = create_engine(sqlite_url)
        try:
            return await search_service.search(create_sessionmaker(engine), principal, req, deps)  # type: ignore[arg-type]
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    assert seen == {"embedding_started": True}
    assert sorted(store.queried) == ["case_c1", "user_alice"]
    assert result.results == []
