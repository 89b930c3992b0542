"""Fixtures shared by the worker's task tests."""

from __future__ import annotations

from typing import Any

import pytest

from job_worker.app import app


class HandedSlices(list[tuple[dict[str, Any], dict[str, Any]]]):
    """The slices runs of one task handed over (kwargs, send options), in order; not
    delivered until the test delivers them."""

    def __init__(self, task: str) -> None:
        super().__init__()
        self.task = task

    def deliver(self, kwargs: dict[str, Any], options: dict[str, Any]) -> Any:
        return app.tasks[self.task].apply(
            kwargs=kwargs, task_id=options["task_id"], priority=options["priority"]
        )


@pytest.fixture
def slices(request: pytest.FixtureRequest, rt: Any, monkeypatch: Any) -> HandedSlices:
    """Every run is one slice (one embedding batch: its time is up at once); the slices
    of the test module's `SLICED_TASK` that runs hand over are recorded, not sent.
    `rt` is the test module's worker runtime."""
    rt.settings = rt.settings.model_copy(update={"slice_seconds": 1e-6})
    handed = HandedSlices(request.module.SLICED_TASK)

    def send_task(name: str, kwargs: dict[str, Any], **options: Any) -> None:
        if name == handed.task:
            handed.append((kwargs, options))

    monkeypatch.setattr(app, "send_task", send_task)
    return handed
