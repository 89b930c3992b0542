"""Fixtures of the knowledge tests.

`kstack` (session): the real processes as `make run` starts them (Redis, the Chroma
server, the knowledge service, a Celery worker) on free ports, trusting the test token
issuer. `runbooks` (session): the prometheus-operator runbooks uploaded once through
the API as global documents and processed by the worker; every search test shares them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fm_common.devstack import ROOT, Stack
from fm_common.testing.tokens import TokenIssuer

RUNBOOKS = ROOT.parent / "shared" / "data" / "runbooks" / "prometheus-operator"
ADMIN_ID = "admin-0000-0000-0000-000000000001"


def runbook_files() -> list[Path]:
    return sorted(p for p in RUNBOOKS.rglob("*.md") if p.name != "SOURCE.md")


@pytest.fixture(scope="session")
def kstack(tmp_path_factory: pytest.TempPathFactory, token_issuer: TokenIssuer) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("kstack")
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(),
        only={"redis", "chroma", "knowledge", "worker"},
        log_dir=root / "logs",
        extra_env={
            "FM_JWKS_URL": token_issuer.jwks_url,
            "FM_LOG_FORMAT": "json",
            "FM_WORKER_CONCURRENCY": "1",
            # No case service in this stack: case ownership is proven by the local
            # record of who first wrote to the case (tests/system covers the real check).
            "FM_KNOWLEDGE_VERIFY_CASE_OWNERSHIP": "false",
            # Small embedding groups, so a worker can be killed between two of them.
            "FM_KNOWLEDGE_EMBED_BATCH_SIZE": "8",
            "HF_HUB_OFFLINE": "1",
        },
    )
    try:
        stack.start(timeout=120)
    except Exception:
        stack.stop()
        raise
    stack.root = root  # type: ignore[attr-defined]
    yield stack
    stack.stop()


def kurl(stack: Stack) -> str:
    return stack.url("knowledge")


def upload(
    client: httpx.Client,
    headers: dict[str, str],
    name: str,
    data: bytes,
    *,
    title: str | None = None,
    scope: str = "personal",
    document_type: str = "runbook",
    **form: str,
) -> httpx.Response:
    fields = {"title": title or name, "document_type": document_type, "scope": scope, **form}
    return client.post(
        "/api/v1/knowledge/documents",
        headers=headers,
        data=fields,
        files={"file": (name, data, "application/octet-stream")},
    )


def wait_documents(
    client: httpx.Client, headers: dict[str, str], ids: list[str], timeout: float = 300
) -> dict[str, dict[str, Any]]:
    """Poll until every document left `processing`; their final bodies."""
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(ids):
        for doc_id in ids:
            if doc_id in done:
                continue
            body = client.get(f"/api/v1/knowledge/documents/{doc_id}", headers=headers).json()
            if body.get("status") != "processing":
                done[doc_id] = body
        if len(done) < len(ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids) - len(done)} documents still processing")
            time.sleep(0.5)
    return done


@pytest.fixture(scope="session")
def runbooks(kstack: Stack, token_issuer: TokenIssuer) -> dict[str, str]:
    """Runbook file stem -> document id, all processed (global scope, uploaded by an admin)."""
    if not RUNBOOKS.is_dir():
        pytest.skip(f"the runbook corpus is not at {RUNBOOKS} (../shared/data of the repo)")
    files = runbook_files()
    limit = int(os.environ.get("FM_TEST_RUNBOOK_LIMIT", "0"))
    if limit:
        files = files[:limit]
    admin = token_issuer.headers(ADMIN_ID, roles=["user", "admin"], ttl=3600)
    ids: dict[str, str] = {}
    with httpx.Client(base_url=kurl(kstack), timeout=30) as client:
        for path in files:
            resp = upload(
                client,
                admin,
                path.name,
                path.read_bytes(),
                title=path.stem,
                scope="global",
                tags=f"runbook,{path.parent.name}",
                category=path.parent.name,
            )
            assert resp.status_code == 202, resp.text
            ids[path.stem] = resp.json()["document_id"]
        final = wait_documents(client, admin, list(ids.values()), timeout=600)
    failed = {k: v["error"] for k, v in final.items() if v["status"] != "processed"}
    assert not failed, failed
    return ids
