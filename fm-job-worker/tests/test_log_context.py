"""A worker task's log lines carry its own ids, never an earlier task's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from job_worker.app import app
from job_worker.config import Settings as WorkerSettings
from job_worker.runtime import Runtime


def test_each_run_sees_its_own_log_context_only(redis_url: str, data_dir: Path) -> None:
    rt = Runtime(WorkerSettings(redis_url=redis_url, data_dir=data_dir), app)

    async def bind_and_read() -> dict[str, Any]:
        structlog.contextvars.bind_contextvars(document_id="doc-1")  # as domain code does
        return structlog.contextvars.get_contextvars()

    async def read() -> dict[str, Any]:
        return structlog.contextvars.get_contextvars()

    try:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(task="knowledge.ingest", track_id="t1")
        first = rt.run(bind_and_read())
        structlog.contextvars.clear_contextvars()  # what the base task does between tasks
        structlog.contextvars.bind_contextvars(task="agent.generate_postmortem", track_id="t2")
        second = rt.run(read())
    finally:
        structlog.contextvars.clear_contextvars()
        rt.runner.close()
    assert first == {"task": "knowledge.ingest", "track_id": "t1", "document_id": "doc-1"}
    assert second == {"task": "agent.generate_postmortem", "track_id": "t2"}
