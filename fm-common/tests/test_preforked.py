"""`make run`'s Python processes forked from one pre-imported parent (ADR 0155): each
child is the process Popen would have started (own session, only its environment, its
output where it was sent, its exit code), and it starts with the libraries imported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fm_common import preforked

PROBE = """
    import gc, json, os, sys
    print(json.dumps({
        "argv": sys.argv[1:],
        "env": {k: os.environ.get(k) for k in ("FM_PROBE", "FM_SECRET_ELSEWHERE")},
        "session_leader": os.getsid(0) == os.getpid(),
        "cwd": os.getcwd(),
        "preloaded": [m for m in ("fastapi", "sqlalchemy", "celery") if m in sys.modules],
        "no_threads_libs": [m for m in ("numpy", "onnxruntime", "torch") if m in sys.modules],
        "frozen": gc.get_freeze_count(),
        "comm": open("/proc/self/comm").read().strip(),
    }))
    sys.exit(int(os.environ.get("FM_PROBE_EXIT", "0")))
"""


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    (tmp_path / "fm_probe_mod.py").write_text(textwrap.dedent(PROBE))
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FM_SECRET_ELSEWHERE"}
    env.update(extra)
    return env


def test_which_lines_are_forked() -> None:
    assert preforked.entry(["python", "-m", "auth_service"]) == ("module", "auth_service")
    assert preforked.entry(["celery", "-A", "job_worker.app", "worker"]) == ("script", "celery")
    assert preforked.entry(["redis-server", "--port", "1"]) is None
    # Chroma runs from its own environment (ADR 0156), not from this venv.
    assert preforked.entry(["/elsewhere/bin/chroma", "run"]) is None
    assert preforked.entry(["chroma", "run"]) is None


def test_a_forked_child_is_the_process_popen_would_have_started(
    probe_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setenv("FM_SECRET_ELSEWHERE", "not-for-this-child")
    log = probe_dir / "probe.log"
    with open(log, "ab") as out:
        proc = preforked.spawn(
            ["python", "-m", "fm_probe_mod", "--flag", "x"],
            env=_env(FM_PROBE="hello", FM_PROBE_EXIT="3"),
            cwd=probe_dir,
            stdout=out,
        )
    assert isinstance(proc, preforked.ForkedProcess)
    assert proc.wait(timeout=60) == 3
    assert proc.poll() == 3
    assert proc.returncode == 3
    seen = json.loads(log.read_text().strip().splitlines()[-1])
    assert seen["argv"] == ["--flag", "x"]
    # Only the environment it was given, not the supervisor's.
    assert seen["env"] == {"FM_PROBE": "hello", "FM_SECRET_ELSEWHERE": None}
    assert seen["session_leader"] is True
    assert seen["cwd"] == str(probe_dir)
    assert seen["comm"] == "fm_probe_mod"
    # Started from the fork server: the shared libraries already imported, the GC frozen,
    # and none of the libraries that start threads when imported.
    assert seen["preloaded"] == ["fastapi", "sqlalchemy", "celery"]
    assert seen["no_threads_libs"] == []
    assert seen["frozen"] > 10_000
    assert preforked.server_pids()


def test_a_piped_child_and_killpg(probe_dir: Path) -> None:
    (probe_dir / "fm_sleeper.py").write_text(
        "import sys, time\nprint('sleeping', flush=True)\ntime.sleep(120)\n"
    )
    proc = preforked.spawn(
        ["python", "-m", "fm_sleeper"], env=_env(), cwd=probe_dir, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"sleeping\n"
    assert proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    # devstack stops a child with its whole process group.
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    assert proc.stdout.read() == b""  # EOF: nothing else holds the pipe open
    proc.stdout.close()


def test_a_console_script_of_the_venv_is_forked(tmp_path: Path) -> None:
    log = tmp_path / "celery.log"
    with open(log, "ab") as out:
        proc = preforked.spawn(["celery", "--version"], env=_env(), cwd=tmp_path, stdout=out)
    assert isinstance(proc, preforked.ForkedProcess)
    assert proc.wait(timeout=60) == 0
    import celery

    assert celery.__version__ in log.read_text()


def test_shutdown_stops_the_fork_server_and_the_next_spawn_starts_one(tmp_path: Path) -> None:
    with open(tmp_path / "a.log", "ab") as out:
        preforked.spawn(["celery", "--version"], env=_env(), cwd=tmp_path, stdout=out).wait(60)
    (old,) = preforked.server_pids()
    preforked.shutdown()
    assert preforked.server_pids() == []
    assert not Path(f"/proc/{old}").exists()  # exited and reaped
    with open(tmp_path / "b.log", "ab") as out:
        proc = preforked.spawn(["celery", "--version"], env=_env(), cwd=tmp_path, stdout=out)
    assert proc.wait(60) == 0
    (new,) = preforked.server_pids()
    assert new != old


def test_prefork_off_runs_plain_processes(probe_dir: Path) -> None:
    preforked.shutdown()
    log = probe_dir / "plain.log"
    with open(log, "ab") as out:
        proc = preforked.spawn(
            [sys.executable, "-m", "fm_probe_mod"],
            env=_env(FM_DEVSTACK_PREFORK="0", FM_PROBE="plain"),
            cwd=probe_dir,
            stdout=out,
        )
    assert isinstance(proc, subprocess.Popen)
    assert proc.wait(timeout=60) == 0
    assert '"FM_PROBE": "plain"' in log.read_text()
    assert '"preloaded": []' in log.read_text()
    assert preforked.server_pids() == []  # no fork server was started for it
