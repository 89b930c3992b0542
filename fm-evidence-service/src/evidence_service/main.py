"""The evidence service app: create_app() and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI

from evidence_service.api.routes import case_files, evidence, internal
from evidence_service.config import Settings
from evidence_service.domain.evidence.cases import CaseGate
from evidence_service.domain.evidence.flows import (
    Uploads,
    requeue_unindex,
    requeue_unindexed,
    sweep_orphans,
)
from evidence_service.domain.evidence.storage import FileStore
from fm_common.app import create_service_app
from fm_common.blobs import open_blob_store
from fm_common.clients.auth import service_credential
from fm_common.clients.case import CaseClient
from fm_common.db import open_database, ping
from fm_common.settings import load_settings

log = structlog.get_logger("evidence_service")

MIGRATIONS = Path(__file__).parent / "migrations"


async def _maintenance(app: FastAPI) -> None:
    """Heal what a crash or a down broker left: sweep leftovers, re-queue indexing."""
    settings: Settings = app.state.settings
    first = True
    while True:
        try:
            if first:
                await sweep_orphans(settings, app.state.sessionmaker, app.state.file_store)
                first = False
            if settings.index_uploads:
                await requeue_unindexed(settings, app.state.sessionmaker)
            await requeue_unindex(settings, app.state.sessionmaker)
        except Exception:
            # Logged and retried next round; one bad round must not end the loop.
            log.exception("evidence.maintenance_failed")
        await asyncio.sleep(settings.requeue_interval_seconds)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)
    url = settings.effective_database_url

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_database(app, MIGRATIONS, url):
            store = FileStore(
                open_blob_store(settings, "evidence", local_root=settings.effective_storage_dir)
            )
            app.state.file_store = store
            app.state.case_gate = CaseGate(
                CaseClient(
                    settings.case_url, app.state.http, retry_after=settings.retry_after_seconds
                ),
                service_credential(settings, app.state.http),
            )
            app.state.uploads = Uploads(
                settings, app.state.sessionmaker, store, app.state.case_gate
            )
            task = asyncio.create_task(_maintenance(app), name="evidence-maintenance")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                store.blobs.close()

    def checks(app: FastAPI) -> dict[str, Callable[[], Awaitable[Any]]]:
        async def storage() -> None:
            await asyncio.to_thread(app.state.file_store.blobs.check)

        return {"database": lambda: ping(app.state.engine), "storage": storage}

    app = create_service_app(
        settings,
        title="FaultMaven evidence service",
        description="Uploaded files of cases: streaming upload, dedupe, metadata, download.",
        lifespan=lifespan,
        checks=checks,
    )
    app.include_router(evidence.router)
    app.include_router(case_files.router)
    app.include_router(internal.router)
    return app
