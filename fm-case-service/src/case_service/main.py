"""The case service app: cases, state machine, messages, investigation state, reports."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import structlog
from fastapi import FastAPI

from case_service.api.routes import cases, internal, reports
from case_service.config import Settings
from case_service.domain.cases.flows import broker_enqueue, run_sweeper
from case_service.storage import open_engine, open_read_engine, write_sessionmaker
from fm_common.app import create_service_app
from fm_common.db import create_sessionmaker, open_database, ping
from fm_common.settings import load_settings

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)
    url = settings.effective_database_url

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_database(
            app,
            MIGRATIONS,
            url,
            engine_factory=open_engine,
            sessionmaker_factory=functools.partial(write_sessionmaker, url),
        ) as engine:
            read_engine = open_read_engine(url, engine)
            app.state.read_sessionmaker = create_sessionmaker(read_engine)
            app.state.cleanup_enqueue = broker_enqueue(settings.redis_url)
            sweeper: asyncio.Task[None] | None = None
            if settings.outbox_sweep_seconds > 0:
                sweeper = asyncio.create_task(
                    run_sweeper(
                        app.state.sessionmaker,
                        app.state.cleanup_enqueue,
                        every=settings.outbox_sweep_seconds,
                        retry_after=timedelta(seconds=settings.outbox_retry_seconds),
                    )
                )
            try:
                yield
            finally:
                if sweeper is not None:
                    sweeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sweeper
                if read_engine is not engine:
                    await read_engine.dispose()

    app = create_service_app(
        settings,
        title="FaultMaven case service",
        description="Cases, their state machine, messages, investigation state and reports.",
        lifespan=lifespan,
        checks=lambda a: {"database": lambda: ping(a.state.engine)},
    )
    app.include_router(cases.router)
    app.include_router(reports.router)
    app.include_router(internal.router)
    return app
