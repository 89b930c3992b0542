"""What the fork server of `make run` imports before it forks the services (ADR 0155).

The libraries that two or more of the Procfile's Python processes import at start-up,
imported once here so their pages are shared by every forked child. Only libraries and
fm_common modules that read no settings at import; nothing that starts a thread or
sizes a thread pool when imported (numpy, ONNX Runtime, the tokenizers library stay in
the processes that use them). Then the garbage collector is frozen: a collection in a
child would otherwise write to every shared object's header and copy its page.
"""

from __future__ import annotations

import gc
import importlib

MODULES = (
    # Every service (fm_common.app and what it wires).
    "fm_common.app",
    "fm_common.db",
    "fm_common.settings",
    "fm_common.jobs",
    "fm_common.clients.agent",
    "fm_common.clients.auth",
    "fm_common.clients.case",
    "fm_common.clients.evidence",
    "fm_common.clients.knowledge",
    "fm_common.clients.session",
    "fm_common.contracts",
    "uvicorn",
    "uvicorn.main",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.lifespan.on",
    "uvloop",
    "httptools",
    "sqlalchemy.ext.asyncio",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "aiosqlite",
    "asyncpg",
    "alembic.command",
    "alembic.config",
    "alembic.runtime.migration",
    "multipart",
    # The worker, beat and the services that enqueue.
    "celery",
    "celery.app.base",
    "celery.bin.celery",
    "celery.worker",
    "celery.beat",
    "kombu.transport.redis",
    # The agent and the worker's queued turns.
    "langchain_core.messages",
    "langchain_core.language_models",
)


def preload() -> list[str]:
    """Import MODULES (one that is not installed is skipped); returns the skipped."""
    missing = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    gc.collect()
    gc.freeze()
    return missing


SKIPPED = preload()
