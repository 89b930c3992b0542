"""The Celery app's configuration, shared by the worker (`job_worker.app`) and beat
(`job_worker.beat`).

Redis is broker and result store; queues `ingest`, `agent`, `maintenance`; JSON only.
Tasks are idempotent and acknowledged late (`acks_late`, `reject_on_worker_lost`), so a
task whose worker dies is redelivered; the visibility timeout exceeds the longest hard
time limit.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from fm_common.jobs import QUEUES, broker_transport_options
from job_worker.config import Settings


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
        # Beat keeps its schedule's state (when each entry last ran) and its leader lock
        # in Redis (celery-redbeat), not in a file: a new beat pod goes on where the old
        # one left off, and a second beat waits on the lock instead of sending every
        # task twice (ADR 0145).
        beat_scheduler="redbeat.RedBeatScheduler",
        redbeat_redis_url=settings.redis_url,
        redbeat_redis_options={},
        redbeat_key_prefix="fm:beat:",
        redbeat_lock_timeout=settings.beat_lock_timeout,
        beat_max_loop_interval=settings.beat_max_loop_interval,
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
    return celery
