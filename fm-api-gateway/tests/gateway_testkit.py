"""Real HTTP servers for the gateway tests: uvicorn in a thread per app, on free ports."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from fm_common.testing.servers import AppServer
from fm_common.testing.tokens import TokenIssuer
from gateway.config import Settings


class ServerThread(AppServer):
    """One uvicorn server (uvloop + httptools, as in production) in its own thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        super().__init__(app, port, production_loop=True)


class Gate:
    """Lets a test hold an upstream's streamed answer open until it has seen a part."""

    def __init__(self) -> None:
        self.event = threading.Event()

    async def wait(self, timeout: float = 15.0) -> bool:
        return await asyncio.to_thread(self.event.wait, timeout)


def make_upstream(name: str, gates: dict[str, Gate]) -> FastAPI:
    """A stand-in service: echoes what it received, plus streaming and slow routes."""
    app = FastAPI(title=f"{name} stand-in")
    hits = {"health": 0}

    @app.get("/health")
    async def health() -> dict[str, str]:
        hits["health"] += 1
        await asyncio.sleep(0.05)
        return {"status": "healthy", "service": name}

    @app.get("/test-stats", include_in_schema=False)
    async def stats() -> dict[str, int]:
        return hits

    @app.get(f"/internal/v1/{name}-secrets", summary="internal only")
    async def internal() -> dict[str, str]:
        return {"secret": name}

    @app.get("/v1/meta/capabilities")
    async def caps() -> dict[str, Any]:
        return {"llmProviders": [{"name": "primary", "kind": "openai", "model": "gpt-test"}]}

    @app.get("/api/v1/cases/{case_id}/turns/sse")
    async def sse(case_id: str) -> StreamingResponse:
        async def events():  # type: ignore[no-untyped-def]
            yield b"event: token\ndata: first\n\n"
            try:
                released = await gates["sse"].wait()
            except asyncio.CancelledError:
                gates["sse_abandoned"].event.set()  # the gateway hung up on us
                raise
            yield f"event: done\ndata: released={released}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/api/v1/evidence/{file_id}/content")
    async def download(file_id: str) -> StreamingResponse:
        chunk = b"x" * (1024 * 1024)

        async def body():  # type: ignore[no-untyped-def]
            yield chunk
            await gates["download"].wait()
            for _ in range(19):
                yield chunk

        return StreamingResponse(body(), media_type="application/octet-stream")

    @app.get("/api/v1/knowledge/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(3)
        return {"late": "yes"}

    @app.post("/api/v1/evidence")
    async def upload(request: Request) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        return {"service": name, "size": size, "sha256": digest.hexdigest()}

    @app.post("/api/v1/knowledge/documents")
    async def refuse_large(request: Request) -> JSONResponse:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > 100_000:  # refuses mid-upload, as a service with its own limit does
                return JSONResponse(
                    {"detail": "Too large for this service.", "code": "FILE_TOO_LARGE"},
                    status_code=413,
                    headers={"x-error-code": "FILE_TOO_LARGE"},
                )
        return JSONResponse({"size": size})

    @app.get("/api/v1/auth/me", summary="public route of the auth stand-in")
    async def me() -> JSONResponse:
        return JSONResponse({"service": name}, headers={"x-upstream": name})

    @app.api_route(
        "/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
        include_in_schema=False,
    )
    async def echo(path: str, request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {
                "service": name,
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": dict(request.headers),
                "body_len": len(body),
                "peer_port": request.client.port if request.client else None,
            },
            headers={"x-upstream": name, "location": f"/from/{name}"},
        )

    return app


def gateway_settings(
    upstreams: dict[str, ServerThread],
    redis_url: str,
    issuer: TokenIssuer,
    dead_url: str,
    /,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {f"{n}_url": s.url for n, s in upstreams.items()}
    values.update(
        redis_url=redis_url,
        jwks_url=issuer.jwks_url,
        chroma_url=dead_url,
        upstream_timeout=1.0,
        log_level="WARNING",
        dashboard_dir=Path("/nonexistent-dashboard"),
    )
    values.update(overrides)
    return Settings(**values)
