"""The Celery app's reliability settings and task registry."""

from __future__ import annotations

import pytest

from job_worker.app import TASK_MODULES, app, settings


def test_every_task_module_is_imported() -> None:
    assert "job_worker.tasks.knowledge" in TASK_MODULES
    assert "job_worker.tasks.jobs" in TASK_MODULES
    names = set(app.tasks)
    for task in (
        "knowledge.ingest_document",
        "knowledge.index_evidence",
        "knowledge.unindex_evidence",
        "knowledge.delete_case_collection",
        "knowledge.reindex_collection",
        "knowledge.purge_orphans",
        "jobs.reap_stale",
    ):
        assert task in names


def test_tasks_are_acked_late_and_requeued_when_their_worker_dies() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.worker_max_memory_per_child == settings.max_memory_per_child_kb
    for name in ("knowledge.ingest_document", "knowledge.reindex_collection"):
        task = app.tasks[name]
        assert task.acks_late is True
        assert task.reject_on_worker_lost is True
        assert task.soft_time_limit < task.time_limit


def test_visibility_timeout_exceeds_the_longest_task() -> None:
    longest = max(app.tasks[n].time_limit or 0 for n in app.tasks if not n.startswith("celery."))
    assert app.conf.broker_transport_options["visibility_timeout"] > longest


def test_queues_and_routes() -> None:
    assert {q.name for q in app.conf.task_queues} == {"ingest", "agent", "maintenance"}
    routes = app.conf.task_routes
    assert routes["knowledge.ingest_document"] == {"queue": "ingest"}
    assert routes["knowledge.index_evidence"] == {"queue": "ingest"}
    assert routes["knowledge.delete_case_collection"] == {"queue": "maintenance"}
    assert routes["knowledge.unindex_evidence"] == {"queue": "maintenance"}


@pytest.mark.parametrize(
    "task", ["cases.purge_expired", "knowledge.purge_orphans", "jobs.reap_stale"]
)
def test_beat_schedules_the_cleanups(task: str) -> None:
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert task in scheduled
