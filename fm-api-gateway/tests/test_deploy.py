"""The container files describe the same system as the Procfile `make run` uses."""

from __future__ import annotations

import re

import pytest
import yaml

from fm_common.devstack import PROCFILE, SERVICES, read_procfile
from fm_common.settings import BaseServiceSettings
from gateway.config import Settings

ROOT = PROCFILE.parents[1]
DEPLOY = ROOT / "faultmaven-deploy"
PACKAGES = {
    "gateway": ("fm-api-gateway", "gateway"),
    "auth": ("fm-auth-service", "auth_service"),
    "session": ("fm-session-service", "session_service"),
    "case": ("fm-case-service", "case_service"),
    "knowledge": ("fm-knowledge-service", "knowledge_service"),
    "evidence": ("fm-evidence-service", "evidence_service"),
    "agent": ("fm-agent-service", "agent_service"),
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_every_procfile_process_is_a_compose_service(compose: dict):
    names = {spec.name for spec in read_procfile()}
    assert names <= set(compose["services"])


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_each_service_image_runs_its_module_on_its_port(name: str, compose: dict):
    member, package = PACKAGES[name]
    dockerfile = (ROOT / member / "Dockerfile").read_text()
    port = SERVICES[name][1]
    assert f'CMD ["python", "-m", "{package}"]' in dockerfile
    assert f"EXPOSE {port}" in dockerfile
    assert f"uv sync --frozen --no-dev --no-install-workspace --package {member}" in dockerfile
    service = compose["services"][name]
    assert service["build"]["dockerfile"] == f"{member}/Dockerfile"
    env = service["environment"]
    assert env[f"FM_{name.upper()}_PORT"] == str(port)
    assert env[f"FM_{name.upper()}_URL"] == f"http://{name}:{port}"
    assert env["FM_REDIS_URL"] == "redis://redis:6379/0"
    assert "faultmaven-data:/data" in service["volumes"]


def test_only_the_gateway_is_published(compose: dict):
    published = [n for n, s in compose["services"].items() if s.get("ports")]
    assert published == ["gateway"]


def test_redis_keeps_an_append_only_file(compose: dict):
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in compose["services"]["redis"]["volumes"]


def test_worker_and_beat_run_the_procfile_commands(compose: dict):
    procfile = {spec.name: spec.command for spec in read_procfile()}
    for name in ("worker", "beat"):
        command = compose["services"][name]["command"]
        assert command[:4] == procfile[name].split()[:4]


def test_env_example_lists_every_shared_and_gateway_setting():
    text = (DEPLOY / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?(FM_[A-Z0-9_]+)=", text, re.M))
    shared = {f"FM_{n.upper()}" for n in BaseServiceSettings.model_fields} - {
        "FM_HOST",
        "FM_PORT",
    }
    gateway = {
        f"FM_GATEWAY_{n.upper()}"
        for n in Settings.model_fields
        if n not in BaseServiceSettings.model_fields or n == "port"
    }
    assert shared - listed == set()
    assert gateway - listed == set()
