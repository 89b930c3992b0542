"""The process supervisor of `make run` and the system tests: ports and health."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fm_common.devstack import Stack, every_process_but, free_port_set, read_procfile
from fm_common.testing.servers import AppServer


def test_the_ports_of_a_stack_are_distinct() -> None:
    for _ in range(50):
        ports = Stack.free_ports()
        assert len(set(ports.values())) == len(ports)
    assert len(set(free_port_set(200))) == 200


def _health_app(service: str):  # type: ignore[no-untyped-def]
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy", "service": service}

    return app


def test_a_port_answered_by_another_service_is_not_taken_for_healthy(tmp_path: Path) -> None:
    server = AppServer(_health_app("knowledge")).start()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stack = Stack(data_dir=tmp_path, ports={"evidence": server.port})
        stack.procs["evidence"] = sleeper  # type: ignore[assignment]
        with pytest.raises(RuntimeError, match="answered by the knowledge service"):
            stack.wait_healthy(timeout=10)
        # Its own service answering is healthy.
        stack.ports["knowledge"] = server.port
        stack.procs = {"knowledge": sleeper}  # type: ignore[dict-item]
        stack.wait_healthy(timeout=10)
    finally:
        sleeper.kill()
        sleeper.wait()
        server.stop()


def test_a_dead_store_is_restarted_with_growing_backoff(tmp_path: Path) -> None:
    # Issue 16 item 4: a killed Redis took the whole `make run` down in 0.2 s.
    import signal
    import time

    from fm_common.devstack import Restarter, port_in_use

    stack = Stack(data_dir=tmp_path, ports=Stack.free_ports(), only={"redis"}, log_dir=tmp_path)
    stack.start(wait=False)
    try:
        restarter = Restarter(stack, base_delay=0.2)
        said: list[str] = []
        for round_ in (1, 2):
            first = stack.procs["redis"]
            first.send_signal(signal.SIGKILL)
            first.wait()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                said += restarter.tick()
                if stack.procs["redis"] is not first and port_in_use(stack.ports["redis"]):
                    break
                time.sleep(0.05)
            assert stack.procs["redis"] is not first, said
            assert stack.procs["redis"].poll() is None
            assert f"restart {round_})" in " ".join(said)
        # The second restart waited twice as long as the first (0.2 s, then 0.4 s).
        assert "restarting it in 0.2 s (restart 1)" in said[0]
        assert any("restarting it in 0.4 s (restart 2)" in line for line in said)
        assert sum("redis restarted" in line for line in said) == 2
    finally:
        stack.stop()


def test_each_process_gets_only_the_secrets_it_uses(tmp_path: Path) -> None:
    # Issue 16 item 10: the service client secret was in the gateway's environment.
    stack = Stack(
        data_dir=tmp_path,
        ports=Stack.free_ports(),
        extra_env={"FM_AGENT_PROVIDERS": '[{"api_key": "sk-test"}]'},
    )
    # Only the callers of other services' /internal routes and auth hold the service
    # client secret (ADR 0135); the gateway, case and session services never do.
    for name in ("gateway", "session", "case", "redis", "chroma"):
        assert "FM_SERVICE_CLIENT_SECRET" not in stack.process_env(name), name
    for name in ("auth", "worker", "agent", "evidence", "knowledge"):
        assert stack.process_env(name)["FM_SERVICE_CLIENT_SECRET"] == stack.service_secret
    assert "FM_AGENT_PROVIDERS" in stack.process_env("agent")
    assert "FM_AGENT_PROVIDERS" in stack.process_env("worker")
    assert "FM_AGENT_PROVIDERS" not in stack.process_env("gateway")
    # Everything else is shared as before.
    assert stack.process_env("gateway")["FM_REDIS_URL"] == stack.redis_url


def test_compose_gives_each_container_only_the_secrets_it_uses() -> None:
    # The env file reaches every container; each blanks the secrets it must not hold,
    # and only auth mounts the volume of the token signing key (ADR 0135). The same
    # holders as `make run` (SECRET_ENV), except beat, which loads the worker's settings
    # (the client secret) but runs no task (no provider or redaction key).
    import yaml

    from fm_common.devstack import ROOT, SECRET_ENV

    compose = yaml.safe_load((ROOT / "faultmaven-deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    secrets = (
        "FM_SERVICE_CLIENT_SECRET",
        "FM_AGENT_PROVIDERS",
        "FM_AGENT_REDACTION_KEY",
        "FM_AUTH_BOOTSTRAP_ADMIN_PASSWORD",
    )
    expected = {s: set(SECRET_ENV[s]) for s in secrets}
    expected["FM_SERVICE_CLIENT_SECRET"].add("beat")
    checked = 0
    for name, spec in services.items():
        if "env_file" not in spec:
            continue
        env = spec.get("environment") or {}
        for secret in secrets:
            held = env.get(secret) != ""
            assert held == (name in expected[secret]), (name, secret)
        mounts = [str(v) for v in spec.get("volumes") or []]
        assert any(m.startswith("auth-keys:") for m in mounts) == (name == "auth"), name
        checked += 1
    assert checked == 9
    assert services["auth"]["environment"]["FM_AUTH_SIGNING_KEY_PATH"].startswith("/keys/")


def test_replicas_get_their_own_port_data_dir_and_worker_name(tmp_path: Path) -> None:
    replicas = {"case": 2, "worker": 2}
    stack = Stack(data_dir=tmp_path, ports=Stack.free_ports(replicas), replicas=replicas)
    assert stack.instances("case") == ["case-1", "case-2"]
    assert stack.instances("auth") == ["auth"]
    ports = [stack.ports[n] for n in ("case", "case-1", "case-2")]
    assert len(set(ports)) == 3
    env = stack.instance_env("case-2")
    assert env["FM_DATA_DIR"] == str(tmp_path / "case-2")
    assert env["FM_CASE_PORT"] == str(stack.ports["case-2"])
    assert stack.url("case-2") == f"http://127.0.0.1:{stack.ports['case-2']}"
    # The others reach the case service through the balancer's front.
    assert stack.env()["FM_CASE_URL"] == f"http://127.0.0.1:{stack.ports['case']}"
    assert stack.instance_env("worker-1")["FM_WORKER_NAME"] == "worker-1"
    assert "FM_CASE_PORT" not in stack.instance_env("worker-1")
    assert stack.instance_env("auth") == {}  # one instance: as `make run` has it


def test_the_balancer_config_is_valid_haproxy(tmp_path: Path) -> None:
    from fm_common.testing.balancer import BalancerUnavailable, HAProxy

    replicas = {"case": 2, "gateway": 2}
    stack = Stack(data_dir=tmp_path, ports=Stack.free_ports(replicas), replicas=replicas)
    try:
        balancer = HAProxy(stack, log=tmp_path / "haproxy.log")
    except BalancerUnavailable as exc:
        pytest.skip(str(exc))
    text = balancer.render()
    assert f"server case-2 127.0.0.1:{stack.ports['case-2']} check" in text
    assert "frontend auth" not in text  # one instance: nothing in front of it
    (tmp_path / "haproxy.cfg").write_text(text)
    check = subprocess.run(
        [balancer.exe, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True
    )
    assert check.returncode == 0, check.stderr.decode()


def test_every_process_but_leaves_out_only_what_is_named() -> None:
    names = {spec.name for spec in read_procfile()}
    chosen = every_process_but("beat")
    assert chosen == names - {"beat"}
    assert {"redis", "chroma", "gateway", "worker"} <= chosen
    with pytest.raises(ValueError, match="not in the Procfile"):
        every_process_but("beet")
