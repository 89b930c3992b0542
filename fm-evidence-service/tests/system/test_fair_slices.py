"""One user's large file does not hold the worker (issue 16 item 5, ADR 0160): the real
stack with a worker of ONE child that gives it back every second (FM_WORKER_SLICE_SECONDS)
while it indexes a large log in slices.

A quiet user's small file, uploaded while another user's large one is being indexed, is
indexed before that one ends (under run-to-completion it waited for all of it); the large
one still ends `completed`, with every passage once, and so does one whose worker is
killed in the middle of a slice.
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


def _log(lines: int, word: str) -> bytes:
    return "".join(
        f"2024-05-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z ERROR {word}-{i % 7} upstream "
        f"timeout after {i} ms on pool {i % 13} request {i} was retried\n"
        for i in range(lines)
    ).encode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("fair-slices")
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

    def wait(self, what: str, check, timeout: float = 240) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

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
    users.wait("the large file's first slice", lambda: users.chunks(case_a, large))

    small = users.upload(b, case_b, _log(20, "quiet"), "small.log")
    users.wait("the small file", lambda: users.file(b, small)["analysis_status"] == "completed")
    # Read after the small file ended: the large one had not.
    assert users.file(a, large)["analysis_status"] == "processing"
    partial = len(users.chunks(case_a, large))

    users.wait("the large file", lambda: users.file(a, large)["analysis_status"] != "processing")
    total = users.passages(a, large)
    docs = users.chunks(case_a, large)
    assert len(docs) == total == len(set(docs))
    assert total > partial
    assert users.chunks(case_b, small)


def test_a_slice_killed_midway_is_redone_without_duplicates(users: Users) -> None:
    a, case_a = users.register()
    large = users.upload(a, case_a, _log(500, "killed"), "killed.log")
    users.wait("the large file's first slices", lambda: len(users.chunks(case_a, large)) > 8)
    assert users.file(a, large)["analysis_status"] == "processing"

    users.stack.stop_process("worker", signal.SIGKILL)
    assert users.stack.procs["worker"].poll() is not None
    partial = len(users.chunks(case_a, large))
    users.stack.start_process("worker")

    users.wait("the large file", lambda: users.file(a, large)["analysis_status"] != "processing")
    total = users.passages(a, large)
    docs = users.chunks(case_a, large)
    assert len(docs) == total == len(set(docs))
    assert total > partial
