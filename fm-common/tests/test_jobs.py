"""fm_common.jobs.SyncJobStore.start on a real Redis: a run begins its job, but never takes
a job another run has settled back to `running`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from fm_common.jobs import SyncJobStore, new_job
from fm_common.redis import create_sync_redis


@pytest.fixture
def store(redis_url: str) -> Iterator[SyncJobStore]:
    client = create_sync_redis(redis_url)
    yield SyncJobStore(client)
    client.close()


def test_a_queued_job_starts_running_with_its_attempts(store: SyncJobStore) -> None:
    job = store.save(new_job("ingest", "u1"))
    started = store.start(job.job_id, 2)
    assert started is not None
    assert (started.status, started.attempts) == ("running", 2)
    assert store.get(job.job_id) == started


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_a_job_another_run_settled_stays_settled(store: SyncJobStore, status: Any) -> None:
    job = store.save(new_job("ingest", "u1", status=status, progress=1.0, result={"ok": 1}))
    store.start(job.job_id, 1)
    after = store.get(job.job_id)
    assert after is not None
    assert (after.status, after.attempts, after.result) == (status, 1, {"ok": 1})


def test_an_unknown_job_is_none(store: SyncJobStore) -> None:
    assert store.start("no-such-job", 1) is None


def test_a_settle_racing_the_start_is_never_undone(store: SyncJobStore) -> None:
    """A batch completes the job while runs start it over and over: whatever the
    interleaving, once completed it stays completed."""
    jobs = [store.save(new_job("ingest", "u1")) for _ in range(40)]
    go = threading.Barrier(2)

    def settle() -> None:
        go.wait()
        for job in jobs:
            store.update(job.job_id, status="completed")

    settler = threading.Thread(target=settle)
    settler.start()
    go.wait()
    for _ in range(5):
        for job in jobs:
            store.start(job.job_id, 1)
    settler.join()
    for job in jobs:
        store.start(job.job_id, 2)
    statuses = {store.get(j.job_id).status for j in jobs}  # type: ignore[union-attr]
    assert statuses == {"completed"}
