"""FaultMaven job worker: Celery tasks for ingestion, turns, post-mortems and cleanup."""
