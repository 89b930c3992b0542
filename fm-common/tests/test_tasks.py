"""fm_common.tasks: how a service declares its tasks for the worker that hosts them."""

from __future__ import annotations

from typing import Any

import pytest

from fm_common.tasks import TASKS, record_job_failure, task


def test_a_task_is_declared_by_name_with_its_queue_and_give_up() -> None:
    def give_up(*_: Any) -> None: ...

    @task("tests.declared", queue="maintenance", give_up=give_up)
    def declared(ctx: Any, x: int) -> dict[str, Any]:
        return {"x": x}

    try:
        spec = TASKS["tests.declared"]
        assert (spec.name, spec.queue, spec.fn, spec.give_up) == (
            "tests.declared",
            "maintenance",
            declared,
            give_up,
        )
        assert declared(None, x=2) == {"x": 2}  # the function itself is left as it is
    finally:
        TASKS.pop("tests.declared", None)


def test_one_name_cannot_be_declared_by_two_tasks() -> None:
    @task("tests.twice", queue="maintenance")
    def first(ctx: Any) -> None:
        return None

    try:
        with pytest.raises(RuntimeError, match="declared twice"):

            @task("tests.twice", queue="ingest")
            def second(ctx: Any) -> None:
                return None

        assert TASKS["tests.twice"].fn is first
        assert TASKS["tests.twice"].give_up is record_job_failure
    finally:
        TASKS.pop("tests.twice", None)
