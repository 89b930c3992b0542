"""An uploaded log becomes searchable in its case, through the real worker.

Evidence -> Celery task knowledge.index_evidence (Redis broker) -> the real worker fetches
the bytes back with EvidenceClient and a service token -> chunks, embeddings (the real
model), Chroma -> the knowledge service's search finds them for the owner's case only.

The worker has ONE child, which it gives back every second (FM_WORKER_SLICE_SECONDS)
while it indexes a large log in slices (issue 16 item 5, ADR 0160): a quiet user's small
file, uploaded while another user's large one is being indexed, is indexed before that
one ends (run to completion, it waited for all of it); the large one still ends
`completed` with every passage once, and so does one whose worker is killed mid-slice.
"""

from __future__ import annotations

import importlib.util
import re
import signal
import time
import uuid
from collections.abc import Iterator

import chromadb
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
            "FM_WORKER_SLICE_SECONDS": "1",
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


def _log(lines: int, word: str) -> bytes:
    return "".join(
        f"2024-05-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z ERROR {word}-{i % 7} upstream "
        f"timeout after {i} ms on pool {i % 13} request {i} was retried\n"
        for i in range(lines)
    ).encode()


class Users:
    def __init__(self, stack: Stack, client: httpx.Client) -> None:
        self.stack = stack
        self.client = client

    def register(self) -> tuple[dict[str, str], str]:
        resp = self.client.post(
            "/api/v1/auth/register",
            json={"username": f"sl_{uuid.uuid4().hex[:10]}", "password": "slices-pass-1"},
        )
        resp.raise_for_status()
        auth = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        case = self.client.post("/api/v1/cases", json={"title": "slices"}, headers=auth)
        case.raise_for_status()
        return auth, str(case.json()["case_id"])

    def upload(self, auth: dict[str, str], case_id: str, body: bytes, name: str) -> str:
        resp = self.client.post(
            "/api/v1/evidence",
            data={"case_id": case_id},
            files={"file": (name, body, "text/plain")},
            headers=auth,
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["file_id"])

    def file(self, auth: dict[str, str], file_id: str) -> dict:
        resp = self.client.get(f"/api/v1/evidence/{file_id}", headers=auth)
        resp.raise_for_status()
        return dict(resp.json())

    def chunks(self, case_id: str, file_id: str) -> list[str]:
        client = chromadb.HttpClient(host="127.0.0.1", port=self.stack.ports["chroma"])
        try:
            col = client.get_collection(f"case_{case_id}", embedding_function=None)
        except Exception:  # no collection yet
            return []
        return list(col.get(where={"document_id": file_id}, include=["documents"])["documents"])

    def passages(self, auth: dict[str, str], file_id: str) -> int:
        found = self.file(auth, file_id)
        assert found["analysis_status"] == "completed", found
        match = re.search(r"Indexed as (\d+) passages", found["summary"] or "")
        assert match, found
        return int(match.group(1))


@pytest.fixture
def users(stack: Stack) -> Iterator[Users]:
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        yield Users(stack, client)


def test_a_quiet_users_file_is_indexed_while_a_large_one_is_in_progress(users: Users) -> None:
    (a, case_a), (b, case_b) = users.register(), users.register()
    large = users.upload(a, case_a, _log(500, "noisy"), "large.log")
    # The worker's one child is on the large file: its first slices are in.
    _wait(lambda: users.chunks(case_a, large), "the large file's first slice", 240)

    small = users.upload(b, case_b, _log(20, "quiet"), "small.log")
    _wait(lambda: users.file(b, small)["analysis_status"] == "completed", "the small file", 240)
    # Read after the small file ended: the large one had not.
    assert users.file(a, large)["analysis_status"] == "processing"
    partial = len(users.chunks(case_a, large))

    _wait(lambda: users.file(a, large)["analysis_status"] != "processing", "the large file", 240)
    total = users.passages(a, large)
    docs = users.chunks(case_a, large)
    assert len(docs) == total == len(set(docs))
    assert total > partial
    assert users.chunks(case_b, small)


def test_a_slice_killed_midway_is_redone_without_duplicates(users: Users) -> None:
    a, case_a = users.register()
    large = users.upload(a, case_a, _log(500, "killed"), "killed.log")
    _wait(lambda: len(users.chunks(case_a, large)) > 8, "the large file's first slices", 240)
    assert users.file(a, large)["analysis_status"] == "processing"

    users.stack.stop_process("worker", signal.SIGKILL)
    assert users.stack.procs["worker"].poll() is not None
    partial = len(users.chunks(case_a, large))
    users.stack.start_process("worker")

    _wait(lambda: users.file(a, large)["analysis_status"] != "processing", "the large file", 240)
    total = users.passages(a, large)
    docs = users.chunks(case_a, large)
    assert len(docs) == total == len(set(docs))
    assert total > partial
