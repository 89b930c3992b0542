"""Celery beat (`celery -A job_worker.beat beat`): sends the scheduled tasks by name.

It runs no task, so it imports no task code (the services' domain code would cost it
~100 MB); the schedule is in `job_worker.celery_app`.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from fm_common.heartbeat import start_heartbeat
from fm_common.logging import configure_logging
from fm_common.settings import load_settings
from job_worker.celery_app import create_celery
from job_worker.config import Settings

settings = load_settings(Settings)
configure_logging("worker", settings.log_level, settings.log_format)
app = create_celery(settings)


@signals.beat_init.connect
def _beat_started(**_: Any) -> None:
    # The gateway's /health reports beat by this key.
    start_heartbeat(settings.redis_url, "beat")
