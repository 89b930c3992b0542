"""Celery task modules; every module here is imported by job_worker.app."""
