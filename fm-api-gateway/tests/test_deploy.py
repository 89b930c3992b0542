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
    port = SERVICES[name][1]
    service = compose["services"][name]
    build = service["build"]
    assert build["context"] == ".."
    assert build["dockerfile"] == "faultmaven-deploy/Dockerfile"
    targets = {"gateway": "gateway", "knowledge": "embedder"}
    assert build["target"] == targets.get(name, "service")
    assert build["args"]["FM_PACKAGE"] == member
    assert build["args"]["FM_MODULE"] == package
    assert build["args"]["FM_PORT"] == str(port)
    assert (ROOT / member / "pyproject.toml").is_file()
    env = service["environment"]
    assert env[f"FM_{name.upper()}_PORT"] == str(port)
    assert env[f"FM_{name.upper()}_URL"] == f"http://{name}:{port}"
    assert env["FM_REDIS_URL"] == "redis://redis:6379/0"
    assert "faultmaven-data:/data" in service["volumes"]


def test_the_image_template_runs_the_module_and_needs_no_registry_frontend():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    # BuildKit fetches a `# syntax=` frontend from Docker Hub before building anything.
    assert "# syntax=" not in dockerfile
    assert 'CMD ["sh", "-c", "exec python -m \\"$FM_MODULE\\""]' in dockerfile
    assert 'uv sync --frozen --no-dev --no-install-workspace --package "$FM_PACKAGE"' in (
        dockerfile
    )
    stages = re.findall(r"^FROM \S+ AS (\w+)", dockerfile, re.M)
    # The dashboard and the model export come after `service`: even the legacy builder,
    # which builds every stage before its target, skips them for the plain services.
    assert stages == ["uv", "build", "service", "dashboard", "gateway", "models", "embedder"]
    # Every workspace member's pyproject and source is in the build stage.
    for member in sorted(p.parent.name for p in ROOT.glob("fm-*/pyproject.toml")):
        assert f"COPY {member}/pyproject.toml {member}/" in dockerfile
        assert f"COPY {member}/ {member}/" in dockerfile
    assert not list(ROOT.glob("fm-*/Dockerfile"))  # one template, no copies


def test_each_image_is_built_once(compose: dict):
    built = [s["image"] for s in compose["services"].values() if "build" in s]
    assert len(built) == len(set(built))
    beat = compose["services"]["beat"]
    assert beat["image"] == compose["services"]["worker"]["image"]
    assert beat["pull_policy"] == "never"


def test_torch_only_exports_the_model_and_its_index_is_a_build_argument(compose: dict):
    for name in ("knowledge", "worker"):
        build = compose["services"][name]["build"]
        assert build["target"] == "embedder"
        assert build["args"]["FM_TORCH_INDEX_URL"].startswith("${FM_TORCH_INDEX_URL:-https://")
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    runtime = dockerfile[dockerfile.index("AS service") : dockerfile.index("AS models")]
    assert not [line for line in runtime.splitlines() if "torch" in line and line[:1] != "#"]
    assert "--extra torch" in dockerfile[dockerfile.index("AS models") :]
    assert "FM_EMBEDDING_ONNX_DIR=/opt/faultmaven/models" in dockerfile


def test_the_gateway_is_published_on_loopback_by_default(compose: dict):
    gateway = compose["services"]["gateway"]
    assert gateway["ports"] == ["${FM_GATEWAY_PUBLISH:-127.0.0.1:8000}:8000"]
    subnet = compose["networks"]["faultmaven"]["ipam"]["config"][0]["subnet"]
    default_subnet = subnet.split(":-", 1)[1].rstrip("}")
    trusted = gateway["environment"]["FM_GATEWAY_TRUSTED_PROXIES"]
    assert trusted == "${FM_GATEWAY_TRUSTED_PROXIES:-" + default_subnet + "}"
    assert "${FM_GATEWAY_TLS_DIR:-./tls}:/tls:ro" in gateway["volumes"]


def test_the_build_context_leaves_out_data_secrets_and_node_modules():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in ("data", "**/data", "**/node_modules", "**/.venv", "**/.env", "**/*.pem"):
        assert pattern in ignored


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
