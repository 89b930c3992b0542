"""The orphan sweep's evidence check (`evidence_exists` in
knowledge_service.domain.documents.tasks) against the real evidence service (SQLite,
uvicorn on a free port) and a small stand-in of the auth service's service-token route."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import job_worker.runtime as runtime_mod
from evidence_service.config import Settings as EvidenceSettings
from evidence_service.domain.evidence.models import EvidenceFileRow
from evidence_service.main import create_app as create_evidence_app
from fm_common.db import create_engine, create_sessionmaker
from fm_common.errors import Unavailable
from fm_common.testing.ports import free_port
from fm_common.testing.servers import AppServer
from fm_common.testing.tokens import TokenIssuer
from job_worker.app import app
from job_worker.config import Settings as WorkerSettings
from job_worker.runtime import Runtime
from knowledge_service.domain.documents.tasks import evidence_exists
from knowledge_service.worker import knowledge

SECRET = "evidence-check-test-secret"


def auth_stand_in(issuer: TokenIssuer) -> FastAPI:
    app = FastAPI()

    async def service_token(request: Request) -> JSONResponse:
        body = await request.json()
        if body.get("client_secret") != SECRET:
            return JSONResponse({"detail": "bad credential", "code": "INVALID_CLIENT"}, 401)
        token = issuer.token(
            "service:worker", roles=["service"], on_behalf_of=body["on_behalf_of"], ttl=300
        )
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": 300})

    app.add_api_route("/internal/v1/service-token", service_token, methods=["POST"])
    return app


@pytest.fixture
def evidence_db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'evidence.db'}"


@pytest.fixture
def services(
    token_issuer: TokenIssuer, redis_url: str, evidence_db: str, data_dir: Path
) -> Iterator[dict[str, str]]:
    settings = EvidenceSettings(
        environment="test",
        redis_url=redis_url,
        jwks_url=token_issuer.jwks_url,
        data_dir=data_dir,
        database_url=evidence_db,
        case_url=f"http://127.0.0.1:{free_port()}",
        index_uploads=False,
    )
    evidence = AppServer(create_evidence_app(settings)).start()
    auth = AppServer(auth_stand_in(token_issuer), lifespan="off").start()
    yield {"evidence": evidence.url, "auth": auth.url}
    auth.stop()
    evidence.stop()


def _runtime(redis_url: str, data_dir: Path, auth_url: str, evidence_url: str) -> Runtime:
    return Runtime(
        WorkerSettings(
            redis_url=redis_url,
            auth_url=auth_url,
            evidence_url=evidence_url,
            service_client_secret=SECRET,
            data_dir=data_dir,
        ),
        app,
    )


@pytest.fixture
def worker(redis_url, services, data_dir: Path) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    rt = _runtime(redis_url, data_dir, services["auth"], services["evidence"])
    runtime_mod.install(rt)
    yield rt
    runtime_mod.install(None)
    rt.runner.close()


def _add_file(database_url: str, owner_id: str) -> str:
    file_id = str(uuid.uuid4())

    async def add() -> None:
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                session.add(
                    EvidenceFileRow(
                        id=file_id,
                        owner_id=owner_id,
                        case_id="case-1",
                        filename="app.log",
                        size_bytes=3,
                        content_type="text/plain",
                        content_hash=hashlib.sha256(file_id.encode()).hexdigest(),
                        source_type="logs",
                        upload_source="file_upload",
                    )
                )
        finally:
            await engine.dispose()

    asyncio.run(add())
    return file_id


def test_the_owners_existing_files_are_answered(worker, evidence_db) -> None:  # type: ignore[no-untyped-def]
    alices = _add_file(evidence_db, "alice")
    bobs = _add_file(evidence_db, "bob")
    exists = evidence_exists(worker)
    assert exists("alice", [alices, bobs, "deleted-file"]) == {alices}
    assert exists("bob", [alices, bobs]) == {bobs}


def test_an_unreachable_evidence_service_raises_unavailable(redis_url, services, data_dir) -> None:  # type: ignore[no-untyped-def]
    rt = _runtime(redis_url, data_dir, services["auth"], f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(Unavailable):
            evidence_exists(rt)("alice", ["f1"])
    finally:
        rt.runner.close()


def test_purge_orphans_with_the_evidence_check_removes_deleted_files_chunks(  # type: ignore[no-untyped-def]
    redis_url, services, evidence_db, chroma_url, sqlite_url, data_dir, monkeypatch
) -> None:
    """The knowledge.purge_orphans task (Celery `apply`) asks the evidence service."""
    from fm_common.db import migrate_sync
    from knowledge_service.domain.documents.models import CaseCollection
    from knowledge_service.main import MIGRATIONS

    monkeypatch.setenv("FM_KNOWLEDGE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FM_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FM_CHROMA_URL", chroma_url)
    migrate_sync(MIGRATIONS, sqlite_url)
    rt = _runtime(redis_url, data_dir, services["auth"], services["evidence"])
    try:
        kept = _add_file(evidence_db, "alice")
        deleted = str(uuid.uuid4())  # a file whose unindex failed for good
        for file_id in (kept, deleted):
            knowledge(rt).store.upsert(
                "case_c1",
                [f"evidence:{file_id}:0"],
                [[0.1] * 384],
                ["t"],
                [{"document_id": file_id, "owner_id": "alice", "origin": "evidence"}],
            )

        async def claim(s):  # type: ignore[no-untyped-def]
            s.add(CaseCollection(case_id="c1", owner_id="alice"))

        knowledge(rt).db(claim)
        runtime_mod.install(rt)
        # The BM25 refresh it schedules is recorded, not sent (no broker in this test).
        sent: list[str] = []
        monkeypatch.setattr(app, "send_task", lambda name, **_: sent.append(name))
        result = app.tasks["knowledge.purge_orphans"].apply().result
        assert result["evidence_chunks_deleted"] == 1
        assert result["evidence_files_gone"] == 1
        assert sent == ["knowledge.refresh_bm25"]
        left = knowledge(rt).store.get_collection("case_c1").get(include=[])["ids"]
        assert left == [f"evidence:{kept}:0"]
    finally:
        runtime_mod.install(None)
        rt.runner.close()
