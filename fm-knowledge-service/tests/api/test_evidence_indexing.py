"""Evidence text reaches the case's collection: evidence service -> worker -> knowledge.

The real processes (auth, session, case, evidence, knowledge, worker); the worker fetches the
bytes with a service token issued by the auth service for the file's owner.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from fm_common.devstack import Stack

NEEDED = {"redis", "chroma", "auth", "session", "case", "evidence", "knowledge", "worker"}


@pytest.fixture(scope="module")
def evidence_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("evidence-stack")
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(),
        only=NEEDED,
        log_dir=root / "logs",
        extra_env={"FM_WORKER_CONCURRENCY": "1", "HF_HUB_OFFLINE": "1", "FM_LOG_FORMAT": "json"},
    )
    missing = NEEDED - {s.name for s in stack.selected()}
    if missing:
        pytest.skip(f"not installed: {', '.join(sorted(missing))}")
    try:
        stack.start(timeout=180)
    except Exception:
        stack.stop()
        raise
    yield stack
    stack.stop()


def _register(stack: Stack) -> dict[str, str]:
    name = f"u{uuid.uuid4().hex[:12]}"
    resp = httpx.post(
        f"{stack.url('auth')}/api/v1/auth/register",
        json={"username": name, "password": "correct horse battery"},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def test_text_evidence_is_indexed_into_the_case_collection(evidence_stack: Stack) -> None:
    alice, bob = _register(evidence_stack), _register(evidence_stack)
    case = httpx.post(
        f"{evidence_stack.url('case')}/api/v1/cases",
        headers={**alice, "Idempotency-Key": uuid.uuid4().hex},
        json={"title": "payments 502", "priority": "low"},
        timeout=30,
    )
    assert case.status_code in (200, 201), case.text
    case_id = case.json()["case_id"]
    tag = uuid.uuid4().hex[:8]
    log = "".join(
        f"2024-05-01T10:00:{i:02d}Z ERROR upstream quince-{tag} returned 502 Bad Gateway\n"
        for i in range(30)
    )
    up = httpx.post(
        f"{evidence_stack.url('evidence')}/api/v1/evidence",
        headers=alice,
        data={"case_id": case_id},
        files={"file": ("gateway.log", log.encode(), "text/plain")},
        timeout=30,
    )
    assert up.status_code == 201, up.text
    file_id = up.json()["file_id"]

    knowledge = evidence_stack.url("knowledge")
    deadline = time.monotonic() + 240
    while True:
        resp = httpx.post(
            f"{knowledge}/api/v1/knowledge/search",
            headers=alice,
            json={"query": f"quince-{tag} 502", "scopes": ["case"], "case_id": case_id},
            timeout=30,
        )
        if resp.status_code == 200 and resp.json()["results"]:
            break
        assert time.monotonic() < deadline, resp.text
        time.sleep(1)
    hit = resp.json()["results"][0]
    assert hit["document_id"] == file_id
    assert hit["scope"] == "case"
    assert f"quince-{tag}" in hit["content"]
    assert hit["chunk_id"].startswith(f"evidence:{file_id}:")
    # The evidence service was told: its file shows the analysis completed.
    deadline = time.monotonic() + 30
    while True:
        meta = httpx.get(
            f"{evidence_stack.url('evidence')}/api/v1/evidence/{file_id}", headers=alice, timeout=30
        ).json()
        if meta["analysis_status"] == "completed":
            break
        assert time.monotonic() < deadline, meta
        time.sleep(0.5)
    # Bob cannot read Alice's case collection.
    other = httpx.post(
        f"{knowledge}/api/v1/knowledge/search",
        headers=bob,
        json={"query": f"quince-{tag} 502", "case_id": case_id},
        timeout=30,
    )
    assert other.status_code == 404
