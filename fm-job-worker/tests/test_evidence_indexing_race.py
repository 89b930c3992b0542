"""knowledge.index_evidence when the file is deleted while it is being indexed (ADR 0045),
and in slices (ADR 0160): the real task (Celery `apply`), the real knowledge database,
Chroma server and embedding model, and a stand-in of the evidence service (with the auth
service's service-token route) that serves the file, then answers the task's final report
with 404, as the evidence service does once the file's delete has committed between the
fetch and the report."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import chromadb
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

import job_worker.runtime as runtime_mod
from fm_common.auth import TokenVerifier
from fm_common.db import migrate_sync
from fm_common.errors import FMError, Forbidden
from fm_common.testing.servers import AppServer
from fm_common.testing.tokens import TokenIssuer
from job_worker import tracking
from job_worker.app import app
from job_worker.config import Settings as WorkerSettings
from job_worker.runtime import Runtime
from knowledge_service.domain.vectors.bm25 import version_key
from knowledge_service.main import MIGRATIONS

SECRET = "index-race-test-secret"
OWNER = "race-owner"
CASE = "race-case"
COLLECTION = f"case_{CASE}"


def _log(word: str) -> bytes:
    return "".join(
        f"2024-05-01T10:00:{i:02d}Z ERROR {word} upstream reset the connection\n" for i in range(40)
    ).encode()


class EvidenceStandIn:
    """Files by id; `deleted_while_indexing` holds the ids whose delete commits between the
    task's fetch and its final report. Records the reports and, at the moment of that final
    report, how many chunks of the file the case collection held."""

    def __init__(self, issuer: TokenIssuer, chroma_port: int) -> None:
        self.issuer = issuer
        self.chroma_port = chroma_port
        self.files: dict[str, bytes] = {}
        self.names: dict[str, str] = {}
        self.deleted_while_indexing: set[str] = set()
        self.reports: list[tuple[str, str]] = []
        self.chunks_at_report: dict[str, int] = {}
        self.server = AppServer(self._app(), lifespan="off")

    def _meta(self, file_id: str) -> dict[str, Any]:
        data = self.files[file_id]
        return {
            "file_id": file_id,
            "filename": self.names.get(file_id, "app.log"),
            "size_bytes": len(data),
            "content_type": "application/pdf" if data.startswith(b"%PDF") else "text/plain",
            "content_hash": hashlib.sha256(data).hexdigest(),
            "source_type": "logs",
            "case_id": CASE,
            "uploaded_at": datetime.now(UTC).isoformat(),
        }

    def _chunks(self, file_id: str) -> int:
        client = chromadb.HttpClient(host="127.0.0.1", port=self.chroma_port)
        col = client.get_collection(COLLECTION, embedding_function=None)
        return len(col.get(where={"document_id": file_id}, include=[])["ids"])

    def _app(self) -> FastAPI:
        api = FastAPI()
        verifier = TokenVerifier(
            issuer=self.issuer.issuer, audience=self.issuer.audience, jwks=self.issuer.jwks
        )
        gone = JSONResponse({"detail": "No such file.", "code": "FILE_NOT_FOUND"}, 404)

        async def owner_only(request: Request) -> None:
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            principal = await verifier.verify(token)
            if not principal.is_service or principal.user_id != OWNER:
                raise Forbidden("Only the worker acting for the owner.")

        @api.exception_handler(FMError)
        async def refused(_: Request, exc: FMError) -> JSONResponse:
            return JSONResponse({"detail": exc.detail, "code": exc.code}, exc.status_code)

        @api.post("/internal/v1/service-token")
        async def service_token(request: Request) -> JSONResponse:
            body = await request.json()
            if body.get("client_secret") != SECRET:
                return JSONResponse({"detail": "bad credential", "code": "INVALID_CLIENT"}, 401)
            token = self.issuer.token(
                "service:worker", roles=["service"], on_behalf_of=body["on_behalf_of"], ttl=300
            )
            return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": 300})

        @api.get("/api/v1/evidence/{file_id}")
        async def get(file_id: str, request: Request) -> JSONResponse:
            await owner_only(request)
            return JSONResponse(self._meta(file_id)) if file_id in self.files else gone

        @api.get("/api/v1/evidence/{file_id}/content")
        async def content(file_id: str, request: Request) -> Response:
            await owner_only(request)
            if file_id not in self.files:
                return gone
            return Response(self.files[file_id], media_type="text/plain")

        @api.put("/internal/v1/evidence/{file_id}/analysis")
        async def analysis(file_id: str, request: Request) -> JSONResponse:
            await owner_only(request)
            status = (await request.json())["analysis_status"]
            self.reports.append((file_id, status))
            if status == "completed" and file_id in self.deleted_while_indexing:
                # The delete committed after the bytes were fetched: the file is gone now.
                self.chunks_at_report[file_id] = self._chunks(file_id)
                del self.files[file_id]
            if file_id not in self.files:
                return gone
            return JSONResponse(self._meta(file_id) | {"analysis_status": status})

        return api


@pytest.fixture
def evidence(token_issuer: TokenIssuer, chroma_url: str) -> Iterator[EvidenceStandIn]:
    stand_in = EvidenceStandIn(token_issuer, int(chroma_url.rsplit(":", 1)[1]))
    stand_in.server.start()
    yield stand_in
    stand_in.server.stop()


@pytest.fixture
def rt(
    redis_url: str,
    sqlite_url: str,
    chroma_url: str,
    data_dir: Path,
    evidence: EvidenceStandIn,
    monkeypatch: Any,
) -> Iterator[Runtime]:
    monkeypatch.setenv("FM_KNOWLEDGE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FM_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FM_CHROMA_URL", chroma_url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    migrate_sync(MIGRATIONS, sqlite_url)
    runtime = Runtime(
        WorkerSettings(
            redis_url=redis_url,
            auth_url=evidence.server.url,
            evidence_url=evidence.server.url,
            service_client_secret=SECRET,
            data_dir=data_dir,
            max_retries=0,
        ),
        app,
    )
    runtime_mod.install(runtime)
    yield runtime
    runtime_mod.install(None)
    runtime.runner.close()


@pytest.fixture
def sent(monkeypatch: Any) -> list[str]:
    """Tasks the code under test sends (the debounced BM25 refresh): recorded only."""
    names: list[str] = []
    monkeypatch.setattr(app, "send_task", lambda name, **_: names.append(name))
    return names


def _index(file_id: str) -> Any:
    kwargs = {"file_id": file_id, "case_id": CASE, "owner_id": OWNER}
    return app.tasks["knowledge.index_evidence"].apply(kwargs=kwargs).result


def _version(rt: Runtime) -> int:
    return int(rt.redis.get(version_key(COLLECTION)) or 0)


def test_a_file_deleted_while_indexed_leaves_no_chunks_behind(rt, evidence, sent) -> None:  # type: ignore[no-untyped-def]
    kept, deleted = str(uuid.uuid4()), str(uuid.uuid4())
    evidence.files[kept] = _log("quince")
    evidence.files[deleted] = _log("medlar")
    evidence.deleted_while_indexing.add(deleted)

    first = _index(kept)
    assert first["chunks"] > 0
    version = _version(rt)

    result = _index(deleted)

    assert result == {"file_id": deleted, "status": "gone"}
    # Its chunks were upserted before the re-check, and are gone after it.
    assert evidence.chunks_at_report[deleted] > 0
    assert evidence._chunks(deleted) == 0
    # The case's other file is untouched.
    assert evidence._chunks(kept) == first["chunks"]
    assert evidence.reports == [
        (kept, "processing"),
        (kept, "completed"),
        (deleted, "processing"),
        (deleted, "completed"),
    ]
    # Both writes bumped the collection's version, so BM25 (hybrid search) follows too.
    assert _version(rt) == version + 2
    assert "knowledge.refresh_bm25" in sent


def test_evidence_is_redacted_before_it_is_chunked(rt, evidence, sent) -> None:  # type: ignore[no-untyped-def]
    """A log with a private key cut short (BEGIN and body, no END) and a password: the
    case collection holds the case's placeholders, never the values, in any chunk."""
    body = [
        f"TUlJRXBBSUJBQUtDQVFFQTBaM1ZTNUpKY2RzM3hmbi95Z1d5RjhQYm5H{i}eTBBSEI3TWhn" for i in range(8)
    ]
    text = _log("quince").decode() + "2024-05-01T10:01:00Z ERROR key dump follows\n"
    text += "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(body) + "\n"
    text += "2024-05-01T10:01:01Z INFO retry with db password=Idx9Secret!\n"
    text += _log("medlar").decode()
    file_id = str(uuid.uuid4())
    evidence.files[file_id] = text.encode()

    assert _index(file_id)["chunks"] > 0

    client = chromadb.HttpClient(host="127.0.0.1", port=evidence.chroma_port)
    col = client.get_collection(COLLECTION, embedding_function=None)
    docs = " ".join(col.get(where={"document_id": file_id}, include=["documents"])["documents"])
    assert not any(line in docs for line in body)
    assert "Idx9Secret" not in docs
    assert "<SECRET_" in docs
    stored = rt.redis.hgetall(f"fm:agent:redact:{CASE}")
    assert stored
    assert not any(b"Idx9Secret" in v for v in stored.values())


def _pdf_page(text: str) -> bytes:
    """A one-page PDF showing `text` (a line per Tj), made by hand."""
    shown = b"".join(b"(%s) Tj 0 -16 Td " % line.encode() for line in text.splitlines())
    stream = b"BT /F1 12 Tf 72 720 Td " + shown + b"ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_pdf_evidence_chunks_are_redacted_before_they_are_indexed(rt, evidence, sent) -> None:  # type: ignore[no-untyped-def]
    file_id = str(uuid.uuid4())
    evidence.files[file_id] = _pdf_page(
        "Incident notes for the orders database\nthe root password is Pdf9Secret7\n"
        "mysql -u root -pPdfMysql9x -h db\npaged oncall.pdf@example.org"
    )
    evidence.names[file_id] = "notes.pdf"

    assert _index(file_id)["chunks"] > 0

    client = chromadb.HttpClient(host="127.0.0.1", port=evidence.chroma_port)
    col = client.get_collection(COLLECTION, embedding_function=None)
    docs = " ".join(col.get(where={"document_id": file_id}, include=["documents"])["documents"])
    assert "Incident notes" in docs
    for secret in ("Pdf9Secret7", "PdfMysql9x", "oncall.pdf@example.org"):
        assert secret not in docs


# Its handed-over slices are recorded by the `slices` fixture (conftest.py).
SLICED_TASK = "knowledge.index_evidence"


def _case_chunks(evidence: EvidenceStandIn, file_id: str) -> list[str]:
    client = chromadb.HttpClient(host="127.0.0.1", port=evidence.chroma_port)
    col = client.get_collection(COLLECTION, embedding_function=None)
    return list(col.get(where={"document_id": file_id}, include=["documents"])["documents"])


def _long_log(lines: int) -> bytes:
    return "".join(
        f"2024-05-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z ERROR payments-{i % 7} upstream "
        f"timeout after {i} ms on pool {i % 13} request {i} was retried\n"
        for i in range(lines)
    ).encode()


def test_a_large_file_is_indexed_in_slices_each_handed_over_once(rt, evidence, slices) -> None:  # type: ignore[no-untyped-def]
    file_id = str(uuid.uuid4())
    evidence.files[file_id] = _long_log(600)
    first = {"file_id": file_id, "case_id": CASE, "owner_id": OWNER}
    run = app.tasks["knowledge.index_evidence"].apply(kwargs=first, task_id="t0", priority=3)

    part = run.result
    assert part["indexed"] == 8  # one embedding batch, then its time was up
    total = part["chunks"]
    assert total > 24
    order = ["t0"]
    while slices:
        kwargs, options = slices.pop(0)
        # The rest, at the priority the work came with, as the next slice of t0.
        assert options["priority"] == 3
        n = len(order)
        assert options["task_id"] == f"t0/{n}"
        assert kwargs == {**first, "start": 8 * n, "slice": {"of": "t0", "n": n}}
        order.append(options["task_id"])
        result = slices.deliver(kwargs, options).result
        if n == 2:
            # Slice 2 delivered again after it handed over (its worker died before the
            # acknowledgement): nothing redone, slice 3 not sent twice.
            assert slices.deliver(kwargs, options).result is None
            assert len(slices) == 1
    assert result == {"file_id": file_id, "case_id": CASE, "chunks": total}
    assert len(order) == -(-total // 8)
    docs = _case_chunks(evidence, file_id)
    assert len(docs) == total == len(set(docs))
    # The file was reported processing once and completed once, by the last slice.
    assert evidence.reports == [(file_id, "processing"), (file_id, "completed")]
    # Nothing left in flight, and the kept passages are gone with the last slice.
    assert not [e for e in tracking.all_entries(rt.redis) if e.track_id.startswith("t0")]
    assert not rt.redis.exists(f"fm:knowledge:evidence-slices:{file_id}")


def test_a_slice_whose_passages_expired_prepares_them_again(rt, evidence, slices) -> None:  # type: ignore[no-untyped-def]
    file_id = str(uuid.uuid4())
    evidence.files[file_id] = _long_log(300)
    kwargs = {"file_id": file_id, "case_id": CASE, "owner_id": OWNER}
    total = (
        app.tasks["knowledge.index_evidence"].apply(kwargs=kwargs, task_id="u0").result["chunks"]
    )
    rt.redis.delete(f"fm:knowledge:evidence-slices:{file_id}")  # expired, Redis restarted
    while slices:
        result = slices.deliver(*slices.pop(0)).result
    assert result["chunks"] == total
    docs = _case_chunks(evidence, file_id)
    assert len(docs) == total == len(set(docs))


def test_a_file_deleted_between_slices_is_taken_back_out(rt, evidence, slices) -> None:  # type: ignore[no-untyped-def]
    file_id = str(uuid.uuid4())
    evidence.files[file_id] = _long_log(300)
    kwargs = {"file_id": file_id, "case_id": CASE, "owner_id": OWNER}
    assert (
        app.tasks["knowledge.index_evidence"].apply(kwargs=kwargs, task_id="v0").result["indexed"]
    )
    assert _case_chunks(evidence, file_id)
    del evidence.files[file_id]

    assert slices.deliver(*slices.pop(0)).result == {"file_id": file_id, "status": "gone"}
    assert not slices
    assert _case_chunks(evidence, file_id) == []
    assert not rt.redis.exists(f"fm:knowledge:evidence-slices:{file_id}")


def test_a_slice_that_fails_fails_the_file_and_takes_its_chunks_back(
    rt, evidence, slices, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    file_id = str(uuid.uuid4())
    evidence.files[file_id] = _long_log(300)
    kwargs = {"file_id": file_id, "case_id": CASE, "owner_id": OWNER}
    assert (
        app.tasks["knowledge.index_evidence"].apply(kwargs=kwargs, task_id="w0").result["indexed"]
    )
    assert _case_chunks(evidence, file_id)

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("knowledge_service.domain.ingest.tasks.evidence.embed_and_upsert", boom)
    follow = slices.pop(0)
    assert slices.deliver(*follow).result is None
    # Failed once, with the reason, not handed on; nothing of it stays searchable.
    assert not slices
    assert evidence.reports[-1] == (file_id, "failed")
    assert _case_chunks(evidence, file_id) == []
    assert not rt.redis.exists(f"fm:knowledge:evidence-slices:{file_id}")
    assert tracking.get(rt.redis, "w0/1") is None


def test_a_later_slice_reads_only_a_window_of_the_kept_passages(
    rt, evidence, slices, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("knowledge_service.domain.ingest.kept.SLICE_WINDOW", 5)
    file_id = str(uuid.uuid4())
    evidence.files[file_id] = _long_log(300)
    kwargs = {"file_id": file_id, "case_id": CASE, "owner_id": OWNER}
    total = (
        app.tasks["knowledge.index_evidence"].apply(kwargs=kwargs, task_id="x0").result["chunks"]
    )
    starts = []
    while slices:
        follow = slices.pop(0)
        starts.append(follow[0]["start"])
        result = slices.deliver(*follow).result
    # The first slice embeds a batch of 8 from what it prepared; each later one its
    # window of 5.
    assert starts == list(range(8, total, 5))
    assert result["chunks"] == total
    docs = _case_chunks(evidence, file_id)
    assert len(docs) == total == len(set(docs))
