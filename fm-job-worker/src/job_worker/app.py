"""The Celery worker of FaultMaven (`celery -A job_worker.app worker`): the host of every
service's tasks.

Each service keeps its tasks beside its domain and declares them by name
(`fm_common.tasks.task`); this module imports those task modules (`TASK_MODULES`) and
registers every declared task on the app with the shared reliability
(`job_worker.base`). Beat runs `job_worker.beat`, which imports none of them.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import Any

import structlog
from celery import signals

from fm_common.heartbeat import start_heartbeat
from fm_common.limits import limit_as
from fm_common.logging import configure_logging
from fm_common.settings import load_settings
from fm_common.tasks import TASKS
from job_worker import runtime, tracking
from job_worker.base import register
from job_worker.celery_app import create_celery
from job_worker.config import Settings

log = structlog.get_logger("worker.app")

# Every module that declares tasks: the services' own, and the host's.
TASK_MODULES = (
    "knowledge_service.domain.ingest.tasks.documents",
    "knowledge_service.domain.ingest.tasks.evidence",
    "knowledge_service.domain.documents.tasks",
    "knowledge_service.domain.vectors.tasks",
    "case_service.domain.cases.tasks",
    "agent_service.domain.turns.tasks",
    "agent_service.domain.reports.tasks",
    "job_worker.reaper",
)


def import_task_modules() -> None:
    """Import every task module (each declares its tasks in fm_common.tasks.TASKS).

    With one OpenMP/BLAS thread: numpy, which the knowledge code imports, sizes its
    BLAS thread pool when it loads, and this process forks its children; with one
    thread no pool exists for the fork to break (as when the preload set it first).
    Each child sets its own count (`_child_started`)."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        for module in TASK_MODULES:
            importlib.import_module(module)
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


settings = load_settings(Settings)
configure_logging("worker", settings.log_level, settings.log_format)
app = create_celery(settings)
import_task_modules()
for _spec in TASKS.values():
    register(app, _spec, settings)


def child_threads(settings: Settings) -> int:
    """Embedding threads per child: the CPUs shared among the children, unless set."""
    return settings.torch_threads or max(1, (os.cpu_count() or 1) // settings.concurrency)


@signals.worker_init.connect
def _preload(sender: Any = None, **_: Any) -> None:
    # The main process loads the embedding model (and imports the knowledge code) once,
    # before the pool forks, so every child (and every replacement child) starts warm
    # and shares the weights copy-on-write; loading lazily cost each child ~5 s of CPU
    # on its first ingestion. No forward pass runs here, and the main process runs the
    # model with one thread (torch: one OpenMP thread; ONNX Runtime: a session with one
    # intra-op thread, which starts no pool), so no thread pool exists to be broken by
    # the fork; each child sets its own thread count.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not settings.preload_embedder or not _consumes(sender, "ingest"):
        return
    os.environ["OMP_NUM_THREADS"] = "1"
    from knowledge_service.worker import preload  # loaded by import_task_modules

    preload()
    # What the main process holds now is inherited by every child: out of the cyclic
    # collector's reach, whose passes would otherwise write to (and so copy) each page
    # of it in every child.
    gc.collect()
    gc.freeze()


def _consumes(worker: Any, queue: str) -> bool:
    try:
        names = set(worker.app.amqp.queues.consume_from)
    except AttributeError:  # not a consuming worker (or an older Celery)
        return True
    return not names or queue in names


@signals.worker_process_init.connect
def _child_started(**_: Any) -> None:
    # Share the CPUs among the children instead of every child using them all.
    threads = child_threads(settings)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when first imported
    if "torch" in sys.modules:  # preloaded by the main process
        import torch

        torch.set_num_threads(threads)
    if settings.memory_limit_kb:
        cap = limit_as(settings.memory_limit_kb * 1024)
        log.info("worker.child_memory_capped", address_space_mb=cap // (1024 * 1024))
    # The parent's resources (event loop, clients) are not this child's.
    runtime.install(None)
    if "onnxruntime" in sys.modules:  # preloaded: a session of one thread, kept at one
        from knowledge_service.worker import set_embedding_threads

        set_embedding_threads(threads)


@signals.worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    # The gateway's /health reports the worker by this key (a dead worker is not healthy).
    start_heartbeat(settings.redis_url, "worker")
    hostname = getattr(sender, "hostname", None)
    if hostname:
        # Work this worker had in flight when it died is redone now rather than after
        # the visibility timeout.
        redis = runtime.current(settings, app).redis
        recovered = tracking.recover_inflight(app, redis, hostname)
        log.info("worker.ready", hostname=hostname, recovered=recovered, modules=TASK_MODULES)
