"""The knowledge service app: documents, embeddings, semantic and hybrid search."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from fm_common.app import create_service_app
from fm_common.blobs import open_blob_store
from fm_common.db import open_database, ping
from fm_common.errors import PayloadTooLarge, error_response
from fm_common.observability import install_gc_metrics
from fm_common.settings import load_settings
from knowledge_service.api.routes import collections, documents, internal, jobs, search
from knowledge_service.config import Settings
from knowledge_service.domain.search.service import SearchDeps
from knowledge_service.domain.vectors.bm25 import Bm25Indexes
from knowledge_service.domain.vectors.embedder import embedder_for
from knowledge_service.domain.vectors.store import VectorStore

log = structlog.get_logger("knowledge.main")
MIGRATIONS = Path(__file__).parent / "migrations"
# Room for the multipart framing and form fields around the file itself.
FORM_OVERHEAD_BYTES = 64 * 1024


class UploadLimit:
    """413 before reading a body whose declared length is over the upload limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for name, value in scope.get("headers", ()):
                if name == b"content-length":
                    try:
                        size = int(value)
                    except ValueError:
                        size = 0
                    if size > self.max_bytes:
                        exc = PayloadTooLarge(
                            f"The upload is larger than the limit of {self.max_bytes} bytes."
                        )
                        resp = error_response(413, exc.detail, exc.code, {"Connection": "close"})
                        await resp(scope, receive, send)
                        return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_database(app, MIGRATIONS, settings.effective_database_url):
            app.state.blobs = open_blob_store(settings, "knowledge")
            embedder = embedder_for(settings, settings.torch_threads)
            # A missing model (a torch-free image without its ONNX export) stops the start
            # with a message naming the fix, rather than failing every search.
            await asyncio.to_thread(embedder.check_available)
            store = VectorStore(settings.chroma_url, embedder.name, settings.retry_after_seconds)
            app.state.search_deps = SearchDeps(
                settings=settings,
                store=store,
                embedder=embedder,
                bm25=Bm25Indexes(settings.bm25_dir, store),
                redis=app.state.redis,
            )
            preload = None
            if settings.preload_model:
                # Off the event loop: the service answers /health while the model loads.
                preload = asyncio.create_task(asyncio.to_thread(embedder.load))
            try:
                yield
            finally:
                if preload is not None and not preload.done():
                    with contextlib.suppress(BaseException):
                        await preload
                app.state.blobs.close()

    def checks(app: FastAPI) -> dict[str, Callable[[], Awaitable[Any]]]:
        async def database() -> None:
            await ping(app.state.engine)

        async def chroma() -> None:
            await asyncio.to_thread(app.state.search_deps.store.heartbeat)

        async def storage() -> None:
            await asyncio.to_thread(app.state.blobs.check)

        return {"database": database, "chroma": chroma, "storage": storage}

    app = create_service_app(
        settings,
        title="FaultMaven knowledge service",
        description="Documents, embeddings, semantic and hybrid search.",
        lifespan=lifespan,
        checks=checks,
    )
    for module in (documents, search, jobs, collections, internal):
        app.include_router(module.router)
    # Search latency's tail (bench/search_latency.py): the collector's pauses, measured.
    install_gc_metrics(settings.service_name)
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES)
    return app
