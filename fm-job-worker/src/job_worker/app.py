"""The Celery app of FaultMaven: worker and beat (`celery -A job_worker.app ...`).

Redis is broker and result store; queues `ingest`, `agent`, `maintenance`; JSON only.
Tasks are idempotent and acknowledged late (`acks_late`, `reject_on_worker_lost`), so a
task whose worker dies is redelivered; the visibility timeout exceeds the longest hard
time limit. Every module of `job_worker.tasks` is imported, so a task module registers
its tasks just by existing.
"""

from __future__ import annotations

import gc
import importlib
import os
import pkgutil
import sys
from typing import Any

import structlog
from celery import Celery, signals
from kombu import Exchange, Queue

from fm_common.jobs import QUEUES, broker_transport_options
from fm_common.logging import configure_logging
from fm_common.settings import load_settings
from job_worker.config import Settings

log = structlog.get_logger("worker.app")


def create_celery(settings: Settings) -> Celery:
    celery = Celery("faultmaven", broker=settings.redis_url, backend=settings.redis_url)
    transport = {"visibility_timeout": settings.visibility_timeout}
    # The same priority steps as every producer (fair ordering across users, ADR 0136).
    broker_transport = broker_transport_options(settings.visibility_timeout)
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_max_memory_per_child=settings.max_memory_per_child_kb,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_transport_options=broker_transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        result_expires=86400,
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES],
        task_default_queue="maintenance",
        task_soft_time_limit=settings.maintenance_soft_time_limit,
        task_time_limit=settings.maintenance_time_limit,
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            "cases-purge-expired": {
                "task": "cases.purge_expired",
                "schedule": float(settings.purge_cases_interval),
                "options": {"queue": "maintenance"},
            },
            "knowledge-purge-orphans": {
                "task": "knowledge.purge_orphans",
                "schedule": float(settings.purge_orphans_interval),
                "options": {"queue": "maintenance"},
            },
            "jobs-reap-stale": {
                "task": "jobs.reap_stale",
                "schedule": float(settings.reap_interval),
                "options": {"queue": "maintenance"},
            },
        },
    )
    celery.fm_settings = settings  # type: ignore[attr-defined]
    return celery


def import_task_modules() -> list[str]:
    """Import every module of job_worker.tasks (each registers its tasks on `app`)."""
    import job_worker.tasks as package

    names = []
    for info in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
        importlib.import_module(info.name)
        names.append(info.name)
    return names


settings = load_settings(Settings)
configure_logging("worker", settings.log_level, settings.log_format)
app = create_celery(settings)
TASK_MODULES = import_task_modules()


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
    from job_worker.runtime import preload_knowledge

    preload_knowledge()
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
        from fm_common.limits import limit_as

        cap = limit_as(settings.memory_limit_kb * 1024)
        log.info("worker.child_memory_capped", address_space_mb=cap // (1024 * 1024))
    from job_worker.runtime import reset_runtime

    reset_runtime()
    if "onnxruntime" in sys.modules:  # preloaded: a session of one thread, kept at one
        from job_worker.runtime import set_embedding_threads

        set_embedding_threads(threads)


@signals.worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    # Work this worker had in flight when it died is redone now rather than after the
    # visibility timeout.
    from fm_common.heartbeat import start_heartbeat
    from job_worker.tracking import recover_inflight

    # The gateway's /health reports the worker by this key (a dead worker is not healthy).
    start_heartbeat(settings.redis_url, "worker")
    hostname = getattr(sender, "hostname", None)
    if hostname:
        recovered = recover_inflight(app, hostname)
        log.info("worker.ready", hostname=hostname, recovered=recovered, modules=TASK_MODULES)


@signals.beat_init.connect
def _beat_started(**_: Any) -> None:
    from fm_common.heartbeat import start_heartbeat

    start_heartbeat(settings.redis_url, "beat")
