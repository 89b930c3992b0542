"""An uploaded log becomes searchable in its case, through the real worker.

Evidence -> Celery task knowledge.index_evidence (Redis broker) -> the real worker fetches
the bytes back with EvidenceClient and a service token -> chunks, embeddings (the real
model), Chroma -> the knowledge service's search finds them for the owner's case only.
"""

from __future__ import annotations

import importlib.util
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from fm_common.devstack import Stack

pytestmark = pytest.mark.skipif(
    any(
        importlib.util.find_spec(m) is None
        for m in ("knowledge_service.main", "job_worker.app", "case_service.main")
    ),
    reason="the knowledge service, the worker or the case service is not installed",
)

LOG = b"".join(
    f"2024-05-01T10:00:{i % 60:02d}Z ERROR kafka consumer lag on topic payments-{i % 3} "
    f"exceeded 90000 messages\n".encode()
    for i in range(40)
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("evidence-indexing")
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(),
        only={
            "redis",
            "chroma",
            "auth",
            "session",
            "case",
            "evidence",
            "knowledge",
            "gateway",
            "worker",
        },
        log_dir=root / "logs",
        extra_env={
            "FM_AUTH_BCRYPT_ROUNDS": "4",
            "FM_WORKER_CONCURRENCY": "1",
            "HF_HUB_OFFLINE": "1",
        },
    )
    try:
        stack.start(timeout=240)
        yield stack
    finally:
        stack.stop()


def _register(client: httpx.Client) -> dict[str, str]:
    resp = client.post(
        "/api/v1/auth/register",
        json={"username": f"ix_{uuid.uuid4().hex[:10]}", "password": "indexing-pass-1"},
    )
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _search(client: httpx.Client, headers: dict[str, str], case_id: str) -> list[dict]:
    resp = client.post(
        "/api/v1/knowledge/search",
        json={"query": "kafka consumer lag payments", "case_id": case_id, "scopes": ["case"]},
        headers=headers,
    )
    if resp.status_code == 404:
        return []
    assert resp.status_code == 200, resp.text
    return list(resp.json()["results"])


def test_uploaded_log_is_indexed_into_its_case_only(stack: Stack):
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        me, other = _register(client), _register(client)
        case = client.post("/api/v1/cases", json={"title": "lag"}, headers=me).json()["case_id"]
        up = client.post(
            "/api/v1/evidence",
            data={"case_id": case},
            files={"file": ("consumer.log", LOG, "text/plain")},
            headers=me,
        )
        assert up.status_code == 201, up.text
        file_id = up.json()["file_id"]
        deadline = time.monotonic() + 120
        hits: list[dict] = []
        while time.monotonic() < deadline and not hits:
            hits = [h for h in _search(client, me, case) if h["document_id"] == file_id]
            if not hits:
                time.sleep(1)
        assert hits, "the uploaded log never became searchable in its case"
        assert "kafka consumer lag" in hits[0]["content"]
        assert hits[0]["scope"] == "case"
        # The other user cannot search that case.
        assert not [h for h in _search(client, other, case) if h["document_id"] == file_id]


def _hits(client: httpx.Client, headers: dict[str, str], case_id: str, query: str, mode: str):
    resp = client.post(
        "/api/v1/knowledge/search",
        json={"query": query, "case_id": case_id, "scopes": ["case"], "mode": mode},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["results"]


def _wait(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(1)


@pytest.mark.parametrize("knowledge_down", [False, True], ids=["up", "knowledge-down"])
def test_deleted_log_leaves_semantic_and_hybrid_search(stack: Stack, knowledge_down: bool):
    tag = uuid.uuid4().hex[:8]
    text = "".join(
        f"2024-05-01T10:00:{i:02d}Z ERROR quince-{tag} broker rejected the write\n"
        for i in range(30)
    )
    query = f"quince-{tag} broker rejected"
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        me = _register(client)
        case = client.post("/api/v1/cases", json={"title": "del"}, headers=me).json()["case_id"]
        up = client.post(
            "/api/v1/evidence",
            data={"case_id": case},
            files={"file": ("broker.log", text.encode(), "text/plain")},
            headers=me,
        )
        assert up.status_code == 201, up.text
        file_id = up.json()["file_id"]

        def mine(mode: str) -> list[dict]:
            return [h for h in _hits(client, me, case, query, mode) if h["document_id"] == file_id]

        _wait(lambda: mine("semantic") and mine("hybrid"), "never indexed")
        if knowledge_down:
            stack.stop_process("knowledge")
        try:
            gone = client.delete(f"/api/v1/evidence/{file_id}", headers=me)
            assert gone.status_code == 204, gone.text
        finally:
            if knowledge_down:
                stack.start_process("knowledge")
                stack.wait_healthy(timeout=180)
        _wait(lambda: not mine("semantic") and not mine("hybrid"), "still searchable")
