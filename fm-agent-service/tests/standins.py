"""Small real HTTP stand-ins of the case, knowledge and evidence routes the agent calls.

One uvicorn server on a free port (in a thread) serves the internal routes with the
shapes of fm_common.contracts, scoped to the bearer token's user exactly as the real
services are; the agent talks to it over real HTTP through the typed clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import uvicorn
from fastapi import FastAPI, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from agent_service.config import Settings
from agent_service.main import create_app
from fm_common.contracts.case import (
    TRANSITIONS,
    CaseState,
    InvestigationState,
    TurnAppendRequest,
)
from fm_common.contracts.evidence import DerivedEvidenceCreate
from fm_common.testing.ports import free_port
from fm_common.testing.servers import AppServer
from fm_common.testing.shared import reference_openapi_path


@dataclass
class StandinState:
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    turn_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    documents: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    ocr_texts: dict[str, str] = field(default_factory=dict)
    ocr_layouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    search_calls: list[dict[str, Any]] = field(default_factory=list)
    # evidence_id -> {file_id, ...DerivedEvidenceCreate}
    derived: dict[str, dict[str, Any]] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)  # "knowledge", "case"
    user_tokens_on_internal: int = 0  # /internal calls refused for a user's own token


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _user(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        return None
    claims = jwt.decode(auth[7:], options={"verify_signature": False})
    if "service" in (claims.get("roles") or []):
        return claims.get("on_behalf_of")
    return claims.get("sub")


def _is_service(request: Request) -> bool:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        return False
    claims = jwt.decode(auth[7:], options={"verify_signature": False})
    return "service" in (claims.get("roles") or []) and bool(claims.get("on_behalf_of"))


def _not_found() -> JSONResponse:
    return JSONResponse({"detail": "Not found.", "code": "NOT_FOUND"}, status_code=404)


class Standins:
    def __init__(self) -> None:
        self.state = StandinState()
        self.port = free_port()
        self.app = self._build()
        self._server: AppServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.state = StandinState()

    # -- fixtures' helpers -------------------------------------------------------------
    def add_case(self, owner: str, *, title: str = "Case-0101-1", state: str = "inquiry") -> str:
        case_id = str(uuid.uuid4())
        self.state.cases[case_id] = {
            "owner": owner,
            "title": title,
            "state": state,
            "current_turn": 0,
            "investigation": InvestigationState().model_dump(mode="json"),
        }
        self.state.messages[case_id] = []
        return case_id

    def add_document(
        self, title: str, content: str, *, scope: str = "global", owner: str | None = None
    ) -> str:
        doc_id = str(uuid.uuid4())
        self.state.documents.append(
            {
                "document_id": doc_id,
                "title": title,
                "content": content,
                "scope": scope,
                "owner": owner,
            }
        )
        return doc_id

    # -- the app ---------------------------------------------------------------------
    def _case_detail(self, case_id: str) -> dict[str, Any]:
        c = self.state.cases[case_id]
        inv = InvestigationState.model_validate(c["investigation"])
        now = _now()
        state = CaseState(c["state"])
        return {
            "case_id": case_id,
            "title": c["title"],
            "description": "",
            "state": c["state"],
            "created_at": now,
            "updated_at": now,
            "last_activity_at": now,
            "resolved_at": None,
            "closed_at": None,
            "user_id": c["owner"],
            "organization_id": "default",
            "closure_reason": None,
            "current_turn": c["current_turn"],
            "turns_without_progress": 0,
            "current_stage": inv.current_stage,
            "milestones_completed": inv.milestones_completed,
            "pending_milestones": [],
            "evidence_count": 0,
            "hypothesis_count": len(inv.hypotheses),
            "solution_count": 0,
            "is_terminal": not TRANSITIONS[state],
            "escalated": False,
            "valid_next_states": [s.value for s in TRANSITIONS[state]],
        }

    def _build(self) -> FastAPI:
        app = FastAPI()
        st = lambda: self.state  # noqa: E731

        @app.middleware("http")
        async def service_tokens_only(request: Request, call_next: Any) -> Response:
            # As the real services: /internal routes take service tokens only (ADR 0135),
            # so every agent test also proves the agent sends one.
            if request.url.path.startswith("/internal/") and not _is_service(request):
                self.state.user_tokens_on_internal += 1
                return JSONResponse({"detail": "service only", "code": "SERVICE_ONLY"}, 403)
            return await call_next(request)

        def owned(request: Request, case_id: str) -> bool:
            c = st().cases.get(case_id)
            return c is not None and c["owner"] == _user(request) and "case" not in st().down

        @app.get("/internal/v1/cases/{case_id}")
        async def get_case(case_id: str, request: Request, history: int = 0) -> Response:
            if "case" in st().down:
                return JSONResponse({"detail": "down", "code": "X"}, 503, {"Retry-After": "1"})
            if not owned(request, case_id):
                return _not_found()
            c = st().cases[case_id]
            return JSONResponse(
                {
                    "case": self._case_detail(case_id),
                    "owner_id": c["owner"],
                    "priority": "medium",
                    "investigation": c["investigation"],
                    "recent_messages": st().messages[case_id][-history:] if history else [],
                }
            )

        @app.post("/internal/v1/cases/{case_id}/turns")
        async def append(case_id: str, request: Request) -> Response:
            if not owned(request, case_id):
                return _not_found()
            turn = TurnAppendRequest.model_validate(await request.json())
            c = st().cases[case_id]
            if turn.turn_key in st().turn_keys:
                return JSONResponse(st().turn_keys[turn.turn_key] | {"replayed": True})
            if (
                turn.to_state is not None
                and turn.to_state not in TRANSITIONS[CaseState(c["state"])]
            ):
                return JSONResponse({"detail": "invalid", "code": "INVALID_TRANSITION"}, 409)
            c["current_turn"] += 1
            n = c["current_turn"]
            ids = []
            for role, msg in (("user", turn.user_message), ("assistant", turn.assistant_message)):
                mid = str(uuid.uuid4())
                ids.append(mid)
                st().messages[case_id].append(
                    {
                        "message_id": mid,
                        "turn_number": n,
                        "role": role,
                        "content": msg.content,
                        "created_at": _now(),
                        "metadata": msg.metadata,
                    }
                )
            if turn.investigation is not None:
                c["investigation"] = turn.investigation.model_dump(mode="json")
            if turn.to_state is not None:
                c["state"] = turn.to_state.value
            inv = InvestigationState.model_validate(c["investigation"])
            result = {
                "case_id": case_id,
                "turn_number": n,
                "case_state": c["state"],
                "user_message_id": ids[0],
                "assistant_message_id": ids[1],
                "milestones_completed": inv.milestones_completed,
                "replayed": False,
            }
            st().turn_keys[turn.turn_key] = result
            return JSONResponse(result)

        @app.put("/api/v1/cases/{case_id}")
        async def update(case_id: str, request: Request) -> Response:
            if not owned(request, case_id):
                return _not_found()
            body = await request.json()
            if "title" in body:
                st().cases[case_id]["title"] = body["title"]
            return JSONResponse(self._case_detail(case_id))

        @app.put("/internal/v1/cases/{case_id}/reports/{report_id}")
        async def store_report(case_id: str, report_id: str, request: Request) -> Response:
            if not owned(request, case_id):
                return _not_found()
            body = await request.json()
            now = _now()
            report = {
                "report_id": report_id,
                "case_id": case_id,
                "report_type": "postmortem",
                "status": body["status"],
                "job_id": None,
                "error": body.get("error"),
                "created_at": now,
                "updated_at": now,
                "content": body.get("content"),
            }
            st().reports[report_id] = report
            return JSONResponse(report)

        @app.post("/api/v1/knowledge/search")
        async def search(request: Request) -> Response:
            if "knowledge" in st().down:
                return JSONResponse({"detail": "down", "code": "X"}, 503, {"Retry-After": "1"})
            body = await request.json()
            st().search_calls.append(body)
            user = _user(request)
            words = {w.lower() for w in body["query"].split() if len(w) > 3}
            results = []
            for d in st().documents:
                if d["scope"] == "personal" and d["owner"] != user:
                    continue
                overlap = len(words & {w.lower() for w in d["content"].split()})
                if overlap:
                    results.append(
                        {
                            "document_id": d["document_id"],
                            "title": d["title"],
                            "chunk_id": f"{d['document_id']}:0",
                            "content": d["content"],
                            "score": min(1.0, overlap / 10),
                            "scope": d["scope"],
                            "metadata": {},
                        }
                    )
            results.sort(key=lambda r: -r["score"])
            results = results[: body.get("limit", 10)]
            return JSONResponse({"results": results, "total_count": len(results), "took_ms": 1.0})

        @app.post("/api/v1/knowledge/documents")
        async def add_document(
            request: Request,
            file: UploadFile,
            title: str = Form(),
            document_type: str = Form(),
            scope: str = Form(),
            tags: str = Form(""),
        ) -> Response:
            doc_id = str(uuid.uuid4())
            st().documents.append(
                {
                    "document_id": doc_id,
                    "title": title,
                    "content": (await file.read()).decode(),
                    "scope": scope,
                    "owner": _user(request),
                    "document_type": document_type,
                    "tags": tags,
                }
            )
            job = {"job_id": "j1", "status": "queued", "location": "/api/v1/knowledge/jobs/j1"}
            return JSONResponse({"document_id": doc_id, "status": "processing", "job": job}, 202)

        @app.post("/api/v1/evidence")
        async def upload(
            request: Request,
            file: UploadFile,
            case_id: str = Form(),
            upload_source: str = Form("file_upload"),
        ) -> Response:
            if not owned(request, case_id):
                return _not_found()
            data = await file.read()
            digest = hashlib.sha256(data).hexdigest()
            dup = next(
                (
                    f
                    for f in st().files.values()
                    if f["case_id"] == case_id and f["content_hash"] == digest
                ),
                None,
            )
            file_id = str(uuid.uuid4())
            name = file.filename or "upload"
            source_type = (
                "image"
                if name.endswith((".png", ".jpg"))
                else "logs"
                if name.endswith(".log")
                else "text"
            )
            meta = {
                "file_id": file_id,
                "filename": name,
                "size_bytes": len(data),
                "content_type": file.content_type or "application/octet-stream",
                "content_hash": digest,
                "source_type": source_type,
                "case_id": case_id,
                "uploaded_at": _now(),
                "duplicate_of": dup["file_id"] if dup else None,
                "upload_source": upload_source,
            }
            if dup is None:
                st().files[file_id] = meta | {"data": data, "owner": _user(request)}
            return JSONResponse(meta, status_code=201)

        @app.get("/api/v1/evidence/{file_id}/text")
        async def text(file_id: str, request: Request) -> Response:
            # The worker's OCR is stood in for by `ocr_texts` (file name -> text).
            if "evidence_text" in st().down:
                return JSONResponse({"detail": "down", "code": "UNAVAILABLE"}, status_code=503)
            f = st().files.get(file_id)
            if f is None or f["owner"] != _user(request):
                return _not_found()
            if f["source_type"] != "image":
                return JSONResponse({"file_id": file_id, "status": "none"})
            found = st().ocr_texts.get(f["filename"])
            if found is None:
                return JSONResponse({"file_id": file_id, "status": "pending"})
            layout = st().ocr_layouts.get(f["filename"])
            return JSONResponse(
                {"file_id": file_id, "status": "ready", "text": found, "layout": layout}
            )

        @app.post("/internal/v1/evidence/{file_id}/derived")
        async def add_derived(file_id: str, request: Request) -> Response:
            if "derived" in st().down:
                return JSONResponse({"detail": "down", "code": "UNAVAILABLE"}, 503)
            f = st().files.get(file_id)
            if f is None or f["owner"] != _user(request):
                return _not_found()
            body = DerivedEvidenceCreate.model_validate(await request.json())
            item = body.model_dump(mode="json")
            st().derived.setdefault(body.evidence_id, {"file_id": file_id, **item})
            return JSONResponse(item)

        @app.get("/api/v1/evidence/{file_id}/content")
        async def content(file_id: str, request: Request) -> Response:
            f = st().files.get(file_id)
            if f is None or f["owner"] != _user(request):
                return _not_found()
            return Response(f["data"], media_type="application/octet-stream")

        @app.get("/api/v1/cases/{case_id}/uploaded-files")
        async def case_files(case_id: str, request: Request) -> Response:
            if not owned(request, case_id):
                return _not_found()
            files = [
                {
                    "file_id": f["file_id"],
                    "filename": f["filename"],
                    "size_bytes": f["size_bytes"],
                    "size_display": f"{f['size_bytes']} B",
                    "uploaded_at_turn": 1,
                    "uploaded_at": f["uploaded_at"],
                    "source_type": f["upload_source"],
                    "analysis_status": "completed",
                    "summary": None,
                }
                for f in st().files.values()
                if f["case_id"] == case_id
            ]
            return JSONResponse(
                {
                    "files": files,
                    "total_count": len(files),
                    "limit": 50,
                    "offset": 0,
                    "has_more": False,
                }
            )

        return app

    def start(self) -> Standins:
        self._server = AppServer(self.app, self.port, lifespan="off").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


def provider(fake: Any, name: str, kind: str = "openai", **extra: Any) -> dict[str, Any]:
    base = fake.anthropic_base_url(name) if kind == "anthropic" else fake.openai_base_url(name)
    return {
        "name": name,
        "kind": kind,
        "model": f"{name}-model",
        "api_key": "test-key",
        "base_url": base,
    } | extra


def turn_json(answer: str = "The pool is exhausted [S1].", **fields: Any) -> str:
    body: dict[str, Any] = {
        "answer": answer,
        "cited_sources": ["S1"],
        "milestone_updates": ["symptom_verified"],
        "hypotheses": [
            {"statement": "Connection pool exhausted", "likelihood": 0.7, "evidence": ["S1"]}
        ],
        "proposed_state": None,
        "suggested_actions": [{"label": "Check pool metrics", "type": "command"}],
    }
    body.update(fields)
    return json.dumps(body)


def reference_schema(name: str) -> dict[str, Any]:
    """A schema of the real extension's OpenAPI, resolvable on its own."""
    doc = json.loads(reference_openapi_path().read_text())
    text = json.dumps(doc["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/")
    defs = json.loads(text)
    return {"$defs": defs, **defs[name]}


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://agent", timeout=30
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The app under a real uvicorn server on a free port (for streaming tests)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
