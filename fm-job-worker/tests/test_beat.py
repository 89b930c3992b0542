"""Beat keeps its schedule state and its leader lock in Redis (celery-redbeat, ADR 0145):
real `celery beat` processes on a real Redis, no schedule file anywhere."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

LOCK = "fm:beat::lock"


def _beat(redis_url: str, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    celery = shutil.which("celery", path=str(Path(sys.executable).parent))
    assert celery is not None
    env = os.environ | {
        "FM_REDIS_URL": redis_url,
        "FM_DATA_DIR": str(cwd),
        "FM_WORKER_REAP_INTERVAL": "5",
        "FM_WORKER_BEAT_LOCK_TIMEOUT": "10",
        "FM_WORKER_BEAT_MAX_LOOP_INTERVAL": "1",
        "FM_LOG_FORMAT": "console",
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [celery, "-A", "job_worker.beat", "beat", "--loglevel", "INFO"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=20)


def test_one_beat_leads_from_redis_and_a_standby_takes_over(redis_url: str, tmp_path: Path):
    client = redis.Redis.from_url(redis_url)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _beat(redis_url, tmp_path, first_log)
    second = None
    try:
        _wait(lambda: client.exists(LOCK), 60, "the first beat takes the lock")
        # The schedule's state: each entry with when it last ran, in Redis.
        _wait(lambda: client.exists("fm:beat:jobs-reap-stale"), 30, "the entries in Redis")
        _wait(
            lambda: b"last_run_at" in (client.hget("fm:beat:jobs-reap-stale", "meta") or b""),
            30,
            "the reaper sent once",
        )
        holder = client.get(LOCK)
        second = _beat(redis_url, tmp_path, second_log)
        time.sleep(5)
        assert client.get(LOCK) == holder, "the standby took a held lock"
        assert "Acquired lock" not in second_log.read_text(errors="replace")
        # The leader dies without releasing the lock: the standby leads once it expires.
        _stop(first, signal.SIGKILL)
        _wait(
            lambda: "Acquired lock" in second_log.read_text(errors="replace"),
            40,
            "the standby takes over",
        )
        assert client.get(LOCK) not in (None, holder)
    finally:
        _stop(first)
        if second is not None:
            _stop(second)
    # No schedule file: nothing on local disk (beat's default is ./celerybeat-schedule).
    assert not list(tmp_path.glob("celerybeat-schedule*"))
