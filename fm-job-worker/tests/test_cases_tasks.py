"""cases.* tasks run for real (Celery `apply`, the real task code and retry machinery)
against the case database and small real HTTP stand-ins of auth, evidence, knowledge."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

import job_worker.runtime as runtime_mod
from case_service.config import Settings as CaseSettings
from case_service.domain.cases.models import CleanupOutbox
from case_service.main import create_app
from fm_common.testing.tokens import TokenIssuer
from job_worker.app import app
from job_worker.config import Settings as WorkerSettings
from job_worker.runtime import Runtime

SECRET = "worker-test-secret-value"


class StandIn:
    """Answers DELETE with `status` (recording calls) and issues service tokens on POST."""

    def __init__(self, issuer: TokenIssuer, status: int = 204) -> None:
        self.status = status
        self.calls: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict | None = None) -> None:
                raw = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_DELETE(self) -> None:
                outer.calls.append((self.path, self.headers.get("authorization")))
                if outer.status == 204:
                    self._send(204)
                else:
                    self._send(outer.status, {"detail": "down", "code": "DOWN"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if body.get("client_secret") != SECRET:
                    self._send(401, {"detail": "bad credential", "code": "UNAUTHORIZED"})
                    return
                token = issuer.token(
                    "worker", roles=["service"], on_behalf_of=body["on_behalf_of"], ttl=300
                )
                self._send(200, {"access_token": token, "token_type": "bearer", "expires_in": 300})

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_ins(token_issuer: TokenIssuer) -> Iterator[dict[str, StandIn]]:
    servers = {name: StandIn(token_issuer) for name in ("auth", "evidence", "knowledge")}
    yield servers
    for s in servers.values():
        s.close()


@pytest.fixture
def case_settings(sqlite_url, redis_url, token_issuer, data_dir, monkeypatch) -> CaseSettings:
    monkeypatch.setenv("FM_CASE_DATABASE_URL", sqlite_url)
    return CaseSettings(
        database_url=sqlite_url,
        redis_url=redis_url,
        jwks_url=token_issuer.jwks_url,
        data_dir=data_dir,
        outbox_sweep_seconds=0,
    )


@pytest.fixture
def worker(redis_url, stand_ins, data_dir: Path) -> Iterator[Runtime]:
    rt = Runtime(
        WorkerSettings(
            redis_url=redis_url,
            auth_url=stand_ins["auth"].url,
            evidence_url=stand_ins["evidence"].url,
            knowledge_url=stand_ins["knowledge"].url,
            service_client_secret=SECRET,
            data_dir=data_dir,
            max_retries=2,
        ),
        app,
    )
    runtime_mod.install(rt)
    yield rt
    runtime_mod.install(None)
    rt.runner.close()


async def _deleted_case(case_settings: CaseSettings, issuer: TokenIssuer) -> tuple[str, str, list]:
    """Create and delete a case through the case service; returns its ids and outbox."""
    owner = "cleanup-owner"
    headers = issuer.headers(owner)
    app = create_app(case_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://case") as c:
            case = (await c.post("/api/v1/cases", json={}, headers=headers)).json()
            assert (
                await c.delete(f"/api/v1/cases/{case['case_id']}", headers=headers)
            ).status_code == 204
        async with app.state.sessionmaker() as s:
            rows = list((await s.execute(select(CleanupOutbox))).scalars().all())
    return case["case_id"], owner, rows


async def _outbox(case_settings: CaseSettings) -> list[CleanupOutbox]:
    from case_service.storage import open_engine
    from fm_common.db import create_sessionmaker

    engine = open_engine(case_settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as s:
            return list((await s.execute(select(CleanupOutbox))).scalars().all())
    finally:
        await engine.dispose()


def test_cleanup_task_drops_files_and_collection_and_clears_the_outbox(
    case_settings, worker, stand_ins, token_issuer
):
    case_id, owner, rows = asyncio.run(_deleted_case(case_settings, token_issuer))
    assert [r.case_id for r in rows] == [case_id]

    result = app.tasks["cases.cleanup_case"].apply(kwargs={"case_id": case_id, "owner_id": owner})
    assert result.get() == {"case_id": case_id, "cleaned": True}

    [(ev_path, ev_auth)] = stand_ins["evidence"].calls
    [(kn_path, kn_auth)] = stand_ins["knowledge"].calls
    assert ev_path == f"/internal/v1/cases/{case_id}/files"
    assert kn_path == f"/internal/v1/collections/case/{case_id}"
    claims = jwt.decode(ev_auth.removeprefix("Bearer "), options={"verify_signature": False})
    assert (claims["roles"], claims["on_behalf_of"]) == (["service"], owner)
    assert kn_auth == ev_auth
    assert asyncio.run(_outbox(case_settings)) == []


def test_cleanup_task_with_knowledge_down_retries_then_marks_failure(
    case_settings, worker, stand_ins, token_issuer
):
    case_id, owner, _ = asyncio.run(_deleted_case(case_settings, token_issuer))
    stand_ins["knowledge"].status = 503

    app.tasks["cases.cleanup_case"].apply(kwargs={"case_id": case_id, "owner_id": owner})

    # 1 try + 2 retries, each asking both services (evidence is idempotent).
    assert len(stand_ins["knowledge"].calls) >= 3
    assert len(stand_ins["evidence"].calls) == 3
    [row] = asyncio.run(_outbox(case_settings))
    assert row.attempts == 3
    assert row.failed_at is not None
    assert "DEPENDENCY_UNAVAILABLE" in (row.last_error or "")

    # Knowledge is back: the next run (the sweeper re-enqueues it) clears the row.
    stand_ins["knowledge"].status = 204
    app.tasks["cases.cleanup_case"].apply(kwargs={"case_id": case_id, "owner_id": owner})
    assert asyncio.run(_outbox(case_settings)) == []


def test_purge_task_requeues_pending_cleanups(case_settings, worker, token_issuer, redis_url):
    import redis as redis_lib

    case_id, _owner, _ = asyncio.run(_deleted_case(case_settings, token_issuer))
    r = redis_lib.Redis.from_url(redis_url)
    r.delete("maintenance")
    # Pretend its enqueue was lost long ago: the purge pass sends it again.
    from sqlalchemy import update

    from case_service.storage import open_engine
    from fm_common.db import create_sessionmaker

    async def forget_enqueue() -> None:
        engine = open_engine(case_settings.effective_database_url)
        async with create_sessionmaker(engine)() as s, s.begin():
            await s.execute(update(CleanupOutbox).values(last_enqueued_at=None))
        await engine.dispose()

    asyncio.run(forget_enqueue())

    result = app.tasks["cases.purge_expired"].apply(kwargs={})
    assert result.get() == {"purged": 0, "requeued": 1}
    queued = [json.loads(m)["headers"]["task"] for m in r.lrange("maintenance", 0, -1)]
    assert queued == ["cases.cleanup_case"]
    r.close()
    assert case_id


def test_cleanup_drops_the_cases_redaction_map(case_settings, worker, stand_ins, token_issuer):
    """The agent's map of the case's originals (encrypted) lives as long as the case."""
    case_id, owner, _ = asyncio.run(_deleted_case(case_settings, token_issuer))
    key = f"fm:agent:redact:{case_id}"
    worker.redis.hset(key, mapping={"p:<SECRET_1>": "e1:sealed", "n:SECRET": 1})
    other = f"fm:agent:redact:{uuid.uuid4()}"
    worker.redis.hset(other, mapping={"p:<SECRET_1>": "e1:sealed"})

    app.tasks["cases.cleanup_case"].apply(kwargs={"case_id": case_id, "owner_id": owner}).get()

    assert worker.redis.exists(key) == 0
    assert worker.redis.exists(other) == 1
    worker.redis.delete(other)
