"""The Celery app's reliability settings and task registry."""

from __future__ import annotations

import pytest

from job_worker.app import TASK_MODULES, app, settings

# Every task the worker registered before the tasks moved beside their services, with
# its queue and (soft, hard) time limits: queued messages and beat schedules name them.
REGISTERED = {
    "knowledge.ingest_document": ("ingest", 900, 960),
    "knowledge.index_evidence": ("ingest", 900, 960),
    "knowledge.unindex_evidence": ("maintenance", 3000, 3300),
    "knowledge.delete_case_collection": ("maintenance", 3000, 3300),
    "knowledge.reindex_collection": ("maintenance", 3000, 3300),
    "knowledge.purge_orphans": ("maintenance", 3000, 3300),
    "knowledge.refresh_bm25": ("maintenance", 3000, 3300),
    "cases.cleanup_case": ("maintenance", 3000, 3300),
    "cases.purge_expired": ("maintenance", 3000, 3300),
    "cases.sweep_outbox": ("maintenance", 3000, 3300),
    "agent.run_turn": ("agent", 3000, 3300),
    "agent.generate_postmortem": ("agent", 3000, 3300),
    "jobs.reap_stale": ("maintenance", 3000, 3300),
}


def test_every_previously_registered_task_keeps_its_name_queue_and_limits() -> None:
    assert "knowledge_service.domain.ingest.tasks.documents" in TASK_MODULES
    assert "knowledge_service.domain.ingest.tasks.evidence" in TASK_MODULES
    assert "job_worker.reaper" in TASK_MODULES
    assert settings.ingest_time_limit == 960  # the defaults the table above was taken with
    names = {n for n in app.tasks if not n.startswith("celery.")}
    assert names == set(REGISTERED)
    for name, (queue, soft, hard) in REGISTERED.items():
        task = app.tasks[name]
        assert app.conf.task_routes[name] == {"queue": queue}, name
        assert (task.soft_time_limit, task.time_limit) == (soft, hard), name


def test_beat_imports_no_task_code() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, job_worker.beat as b; "
        "print(sorted(m for m in sys.modules if m.split('.')[0].endswith('_service')), "
        "len(b.app.conf.beat_schedule))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["[]", "3"]


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


PRELOAD_PROBE = """
import os
import sys
from types import SimpleNamespace

# ONNX Runtime's Python module keeps one timer thread of its own from its import on (no
# compute pool; forked children embed without it): the baseline the preload must keep.
os.environ["OMP_NUM_THREADS"] = "1"
import onnxruntime  # noqa: F401

baseline = len(os.listdir("/proc/self/task"))

from job_worker import app as worker_app

queues = sys.argv[1].split(",")
sender = SimpleNamespace(app=SimpleNamespace(
    amqp=SimpleNamespace(queues=SimpleNamespace(consume_from={q: None for q in queues}))))
worker_app._preload(sender=sender)
from knowledge_service.config import Settings
from knowledge_service.domain.vectors.embedder import embedder_for

embedder = embedder_for(Settings())
if getattr(embedder, "_session", None) is not None or getattr(embedder, "_model", None) is not None:
    import threading

    if embedder.backend == "onnx":
        loaded, threads = embedder._session is not None, embedder._session_threads
        assert "torch" not in sys.modules
    else:
        import torch

        loaded, threads = embedder._model is not None, torch.get_num_threads()
    # Nothing the fork would lose: no thread started, and the children's imports done.
    tasks = len(os.listdir("/proc/self/task"))
    assert tasks == baseline, (tasks, baseline, [t.name for t in threading.enumerate()])
    assert {"chromadb", "bm25s"} <= set(sys.modules)
    print(embedder.backend, "loaded" if loaded else "imported", threads)
else:
    print("skipped")
"""


def _run_preload(queues: str, **extra_env: str) -> str:
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", **extra_env}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run(
        [sys.executable, "-c", PRELOAD_PROBE, queues],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def test_a_worker_consuming_ingest_loads_the_model_before_forking_with_one_thread() -> None:
    # One intra-op thread in the main process: no thread pool exists for the fork to break.
    assert _run_preload("ingest,maintenance") == "onnx loaded 1"


def test_the_torch_backend_preloads_with_one_openmp_thread() -> None:
    pytest.importorskip("torch", reason="the torch backend needs the `torch` extra")
    assert _run_preload("ingest,maintenance", FM_EMBEDDING_BACKEND="torch") == "torch loaded 1"


def test_a_worker_not_consuming_ingest_does_not_load_the_model() -> None:
    assert _run_preload("agent") == "skipped"


def test_children_share_the_cpus() -> None:
    import os

    from job_worker.app import child_threads

    cpus = os.cpu_count() or 1
    assert child_threads(settings.model_copy(update={"concurrency": 1})) == cpus
    assert child_threads(settings.model_copy(update={"concurrency": cpus * 4})) == 1
    assert child_threads(settings.model_copy(update={"torch_threads": 3})) == 3


def test_importing_the_task_modules_starts_no_thread_for_the_fork_to_lose() -> None:
    # numpy sizes its BLAS thread pool as it loads; the task modules load it with one
    # thread, so the main process forks its children with no pool running.
    import os
    import subprocess
    import sys

    probe = (
        "import os, sys, job_worker.app; "
        "print(len(os.listdir('/proc/self/task')), 'numpy' in sys.modules, "
        "os.environ.get('OMP_NUM_THREADS'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "True", "None"]
