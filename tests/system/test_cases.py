"""Cases through the gateway with the real processes: create (idempotent), upload a log,
list its files, transition, read back in the reference shapes, another user sees
nothing, and delete: the real worker drops the evidence files and clears the outbox."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource

from fm_common.devstack import Stack
from fm_common.testing.shared import reference_openapi_path

pytestmark = pytest.mark.skipif(
    any(
        importlib.util.find_spec(m) is None
        for m in ("auth_service.main", "case_service.main", "evidence_service.main")
    ),
    reason="the auth, case and evidence services are not installed",
)

PASSWORD = "correct horse battery staple"


def check(schema: str, instance: Any) -> None:
    doc = json.loads(reference_openapi_path().read_text())
    registry = Registry().with_resource("urn:ref", Resource.opaque(doc))
    jsonschema.Draft202012Validator(
        {"$ref": f"urn:ref#/components/schemas/{schema}"}, registry=registry
    ).validate(instance)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("cases")
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
            "FM_AUTH_REGISTRATIONS_PER_ADDRESS": "100000",
            "FM_WORKER_CONCURRENCY": "1",
            "HF_HUB_OFFLINE": "1",
            "FM_LOG_FORMAT": "json",
        },
    )
    try:
        stack.start(timeout=180)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        yield client


def register(gateway: httpx.Client) -> dict[str, str]:
    username = f"u_{uuid.uuid4().hex[:10]}"
    resp = gateway.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def outbox_count(stack: Stack) -> int:
    with sqlite3.connect(stack.data_dir / "case.db") as db:
        return int(db.execute("SELECT count(*) FROM case_cleanup_outbox").fetchone()[0])


def test_case_lifecycle_through_the_gateway(gateway: httpx.Client, stack: Stack):
    alice, bob = register(gateway), register(gateway)

    key = {"Idempotency-Key": f"sys-{uuid.uuid4().hex}"}
    body = {"title": None, "priority": "low"}
    created = gateway.post("/api/v1/cases", json=body, headers={**alice, **key})
    again = gateway.post("/api/v1/cases", json=body, headers={**alice, **key})
    assert created.status_code == again.status_code == 201, created.text
    assert created.json() == again.json()
    check("CaseSummary", created.json())
    case_id = created.json()["case_id"]

    log = b"2026-11-24T10:00:00Z ERROR upstream timed out\n" * 50
    up = gateway.post(
        "/api/v1/evidence",
        files={"file": ("app.log", log, "text/plain")},
        data={"case_id": case_id},
        headers=alice,
    )
    assert up.status_code == 201, up.text
    file_id = up.json()["file_id"]
    files = gateway.get(f"/api/v1/cases/{case_id}/uploaded-files", headers=alice)
    assert files.status_code == 200, files.text
    check("UploadedFilesList", files.json())

    moved = gateway.post(
        f"/api/v1/cases/{case_id}/transition", json={"to_state": "investigating"}, headers=alice
    )
    assert moved.status_code == 200, moved.text
    bad = gateway.post(
        f"/api/v1/cases/{case_id}/transition", json={"to_state": "inquiry"}, headers=alice
    )
    assert bad.status_code == 409
    assert bad.headers["x-error-code"] == "INVALID_TRANSITION"
    assert bad.json()["valid_next_states"] == ["resolved", "closed"]

    detail = gateway.get(f"/api/v1/cases/{case_id}", headers=alice)
    check("CaseDetail", detail.json())
    assert detail.json()["state"] == "investigating"
    ui = gateway.get(f"/api/v1/cases/{case_id}/ui", headers=alice)
    check("CaseUIResponse_Investigating", ui.json())
    assert ui.json()["uploaded_files_count"] == 1
    listed = gateway.get("/api/v1/cases?limit=50", headers=alice)
    check("CaseListResponse", listed.json())
    assert [c["case_id"] for c in listed.json()["cases"]] == [case_id]
    messages = gateway.get(f"/api/v1/cases/{case_id}/messages", headers=alice)
    check("CaseMessagesResponse", messages.json())

    # Another user: nothing, everywhere.
    for path in (
        f"/api/v1/cases/{case_id}",
        f"/api/v1/cases/{case_id}/ui",
        f"/api/v1/cases/{case_id}/messages",
        f"/api/v1/cases/{case_id}/uploaded-files",
    ):
        assert gateway.get(path, headers=bob).status_code == 404, path
    assert gateway.get("/api/v1/cases", headers=bob).json()["total_count"] == 0
    # Internal routes are not published through the gateway.
    assert gateway.get(f"/internal/v1/cases/{case_id}", headers=alice).status_code == 404

    # A post-mortem: 202 + Location, generated by the real worker, stored and readable.
    queued = gateway.post(f"/api/v1/cases/{case_id}/reports", headers=alice)
    assert queued.status_code == 202, queued.text
    job_url = queued.headers["location"]
    deadline = time.monotonic() + 90
    job = gateway.get(job_url, headers=alice).json()
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = gateway.get(job_url, headers=alice).json()
    assert job["status"] == "completed", job
    report = gateway.get(
        f"/api/v1/cases/{case_id}/reports/{queued.json()['report_id']}", headers=alice
    ).json()
    assert report["status"] == "completed"
    assert report["content"].lstrip().startswith("#")
    assert gateway.get(job_url, headers=bob).status_code == 404

    # Delete: the case is gone at once; the worker drops its files and the outbox row.
    assert gateway.delete(f"/api/v1/cases/{case_id}", headers=alice).status_code == 204
    assert gateway.get(f"/api/v1/cases/{case_id}", headers=alice).status_code == 404
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and outbox_count(stack) > 0:
        time.sleep(0.5)
    assert outbox_count(stack) == 0, "the worker did not finish the cleanup"
    assert gateway.get(f"/api/v1/evidence/{file_id}", headers=alice).status_code == 404
