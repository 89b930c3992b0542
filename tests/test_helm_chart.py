"""The Helm chart (faultmaven-deploy/helm/faultmaven), rendered by Helm's own Go SDK
(helm-python-sdk binds libhelm_c, Helm v4) and checked three ways: `helm lint --strict`,
every manifest against the Kubernetes schemas of the oldest and newest supported
versions (kubernetes-validate, strict: unknown fields fail), and every setting each
process needs wired into its container, by building that process's own Settings classes
from the container's environment as `FM_ENVIRONMENT=production` would at start.

No cluster runs here: what a real install adds is listed in docs/operations.md
"Enterprise" ("What was not run").
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import redis
import yaml
from pydantic_settings import BaseSettings

from fm_common.heartbeat import heartbeat_key, start_heartbeat
from fm_common.settings import PLACEHOLDER_SECRETS, BaseServiceSettings

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "faultmaven-deploy" / "helm" / "faultmaven"
RELEASE = "fm"
PREFIX = f"{RELEASE}-faultmaven-"
# Chart.yaml's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())

HTTP = ("gateway", "auth", "session", "case", "knowledge", "evidence", "agent")
PORTS = dict(zip(HTTP, range(8000, 8007), strict=True))
COMPONENTS = (*HTTP, "worker", "beat")

# The Settings classes each process builds (the worker hosts the knowledge, case and
# agent tasks and loads their settings; beat loads the worker's).
PROCESS_SETTINGS = {
    "gateway": ("gateway.config",),
    "auth": ("auth_service.config",),
    "session": ("session_service.config",),
    "case": ("case_service.config",),
    "knowledge": ("knowledge_service.config",),
    "evidence": ("evidence_service.config",),
    "agent": ("agent_service.config",),
    "worker": (
        "job_worker.config",
        "knowledge_service.config",
        "case_service.config",
        "agent_service.config",
    ),
    "beat": ("job_worker.config",),
    "migrate-auth": ("auth_service.config",),
    "migrate-case": ("case_service.config",),
    "migrate-knowledge": ("knowledge_service.config",),
    "migrate-evidence": ("evidence_service.config",),
}
# The databases whose URL each process reads (its own SQL, or the worker's tasks').
DATABASES = {
    "auth": {"AUTH"},
    "case": {"CASE"},
    "knowledge": {"KNOWLEDGE"},
    "evidence": {"EVIDENCE"},
    "worker": {"KNOWLEDGE", "CASE"},
    "migrate-auth": {"AUTH"},
    "migrate-case": {"CASE"},
    "migrate-knowledge": {"KNOWLEDGE"},
    "migrate-evidence": {"EVIDENCE"},
}
# Who holds which secret (ADR 0135): the callers of /internal routes and auth; the agent's
# keys where the agent's code runs; the object store where files are read and written.
# A migrations container has its service's settings (they are validated the same way).
SERVICE_CLIENT = {
    *("auth", "agent", "evidence", "knowledge", "worker", "beat"),
    *("migrate-auth", "migrate-knowledge", "migrate-evidence"),
}
SERVICE_CALLERS = {"agent", "evidence", "knowledge", "worker", "beat"}
AGENT_SECRETS = {"agent", "worker"}
STORAGE = {"evidence", "knowledge", "worker", "migrate-knowledge", "migrate-evidence"}
PEER_URLS = (
    "redis_url",
    "chroma_url",
    "gateway_url",
    "auth_url",
    "session_url",
    "case_url",
    "knowledge_url",
    "evidence_url",
    "agent_url",
)
SECRET_NAMES = re.compile(
    r"(SECRET|PASSWORD|USERNAME|REDACTION_KEY|PROVIDERS|DATABASE_URL|REDIS_URL|ACCESS_KEY_ID)"
)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name=RELEASE, namespace="faultmaven", is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(files.items()):
        if path.endswith(".txt"):
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return render()


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The objects of one kind by component (their name without the release prefix)."""
    return {
        d["metadata"]["name"].removeprefix(PREFIX): d
        for d in docs
        if d["kind"] == kind and d["metadata"]["name"].startswith(PREFIX)
    }


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict]]:
    """(process name, container, pod spec) of every container the chart runs."""
    for kind in ("Deployment", "Job"):
        for obj in (d for d in docs if d["kind"] == kind):
            pod = obj["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield container["name"], container, pod


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def secret_ref(entry: dict[str, Any]) -> tuple[str, str] | None:
    ref = entry.get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def stand_in(name: str, entry: dict[str, Any]) -> str:
    """The value a container would see: plain values as rendered, a secret's as a
    stand-in that is no placeholder (the secret's name and key: checkable below)."""
    ref = secret_ref(entry)
    if ref is None:
        return str(entry["value"])
    if name == "FM_AGENT_PROVIDERS":
        return "[]"
    return f"{ref[0]}.{ref[1]}"


def test_lint_is_clean() -> None:
    report = helm.lint(str(CHART), strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


VARIANTS = {
    "defaults": None,
    "rotation, bootstrap admin, IAM role for S3, fixed replicas": {
        "auth": {"previousKeys": [{"existingSecret": "old-key", "key": "signing_key.pem"}]},
        "secrets": {"bootstrapAdmin": {"existingSecret": "faultmaven-admin"}},
        "storage": {"s3": {"existingSecret": "", "endpointUrl": "https://minio.example"}},
        "serviceAccountName": "faultmaven",
        "gateway": {"autoscaling": {"enabled": False}},
        "worker": {"autoscaling": {"enabled": False}},
        "migrations": {"enabled": False},
        "ingress": {"enabled": False},
    },
}


REFUSED = {
    "local storage": ({"storage": {"url": "file:///data"}}, "/storage/url"),
    "a secret inline": ({"redis": {"url": "redis://:pw@redis:6379/0"}}, "'url' not allowed"),
    "an empty secret name": (
        {"secrets": {"serviceClient": {"existingSecret": ""}}},
        "/secrets/serviceClient/existingSecret",
    ),
    "a misspelt key": ({"ingres": {"enabled": False}}, "'ingres' not allowed"),
    "no Chroma": ({"chroma": {"url": ""}}, "/chroma/url"),
    "no worker child": ({"worker": {"concurrency": 0}}, "/worker/concurrency"),
    "a variable that is no setting": ({"agent": {"env": {"PATH": "/tmp"}}}, "PATH"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_values_that_cannot_work_are_refused(case: str) -> None:
    # values.schema.json, checked by Helm before anything renders (install, upgrade, lint).
    values, where = REFUSED[case]
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        render(values)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_is_valid_kubernetes(variant: str, kube_version: str) -> None:
    docs = render(VARIANTS[variant])
    assert len(docs) > 20
    for doc in docs:
        # Raises on a schema error: an unknown field, a wrong type, a missing required one.
        kubernetes_validate.validate(doc, kube_version, strict=True)


def test_the_chart_has_the_enterprise_shape(manifests: list[dict[str, Any]]) -> None:
    deployments = of_kind(manifests, "Deployment")
    assert set(deployments) == set(COMPONENTS)
    assert set(of_kind(manifests, "Service")) == set(HTTP)
    for name, service in of_kind(manifests, "Service").items():
        assert service["spec"]["ports"][0]["port"] == PORTS[name]
    hpas = of_kind(manifests, "HorizontalPodAutoscaler")
    assert set(hpas) == {"gateway", "agent", "knowledge", "worker"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == PREFIX + name
        assert hpa["spec"]["minReplicas"] >= 2
        # The HPA owns the replica count: the Deployment leaves it unset.
        assert "replicas" not in deployments[name]["spec"]
    assert set(of_kind(manifests, "PodDisruptionBudget")) == set(COMPONENTS) - {"beat"}
    beat = deployments["beat"]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"] == {"type": "Recreate"}
    for name in ("auth", "session", "case", "evidence"):
        assert deployments[name]["spec"]["replicas"] >= 2
        assert deployments[name]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert not [d for d in manifests if d["kind"] == "Secret"], "secrets are never rendered"

    (ingress,) = (d for d in manifests if d["kind"] == "Ingress")
    (tls,) = ingress["spec"]["tls"]
    assert tls["secretName"]
    assert tls["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": PREFIX + "gateway", "port": {"number": 8000}}


def test_migrations_run_before_install_and_upgrade(manifests: list[dict[str, Any]]) -> None:
    (job,) = (d for d in manifests if d["kind"] == "Job")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert set(hooks) == {"pre-install", "pre-upgrade"}
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    commands = {c["name"]: c["command"] for c in pod["containers"]}
    assert commands == {
        f"migrate-{svc}": ["python", "-m", "fm_common.migrate", f"{svc}_service"]
        for svc in ("auth", "case", "knowledge", "evidence")
    }
    images = {c["name"]: c["image"] for c in pod["containers"]}
    assert images["migrate-auth"].startswith("faultmaven/auth-service:")
    assert images["migrate-knowledge"].startswith("faultmaven/knowledge-service:")
    # The command is the module the image holds (tested in fm-common/tests/test_migrate.py).
    from fm_common.migrate import SQL_SERVICES

    assert {cmd[-1] for cmd in commands.values()} == set(SQL_SERVICES)


def test_probes_and_resources(manifests: list[dict[str, Any]]) -> None:
    deployments = of_kind(manifests, "Deployment")
    for name in HTTP:
        (c,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert c["ports"] == [{"name": "http", "containerPort": PORTS[name], "protocol": "TCP"}]
        assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
        if name == "gateway":
            # Its /health is the whole system's (503 with auth down): not its liveness.
            assert c["livenessProbe"]["tcpSocket"] == {"port": "http"}
        else:
            assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert "command" not in c, "the image's CMD runs python -m $FM_MODULE"
    (worker,) = deployments["worker"]["spec"]["template"]["spec"]["containers"]
    assert worker["command"][:4] == ["celery", "-A", "job_worker.app", "worker"]
    assert "inspect ping" in " ".join(worker["livenessProbe"]["exec"]["command"])
    (beat,) = deployments["beat"]["spec"]["template"]["spec"]["containers"]
    assert beat["command"][:4] == ["celery", "-A", "job_worker.beat", "beat"]
    assert "fm:health:beat" in " ".join(beat["livenessProbe"]["exec"]["command"])
    for process, c, _ in containers(manifests):
        resources = c["resources"]
        assert resources["requests"]["cpu"], process
        assert resources["requests"]["memory"], process
        assert resources["limits"]["memory"], process


def test_no_secret_is_inline(manifests: list[dict[str, Any]]) -> None:
    seen = set()
    for process, c, _ in containers(manifests):
        for name, entry in env_of(c).items():
            if SECRET_NAMES.search(name):
                seen.add(name)
                assert secret_ref(entry), f"{process}: {name} is inline, not a secret reference"
    assert {"FM_SERVICE_CLIENT_SECRET", "FM_REDIS_URL", "FM_AGENT_REDACTION_KEY"} <= seen


def test_each_secret_reaches_only_its_users(manifests: list[dict[str, Any]]) -> None:
    holders: dict[str, set[str]] = {}
    for process, c, _ in containers(manifests):
        for name in env_of(c):
            holders.setdefault(name, set()).add(process)
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if "/keys/current" in mounts:
            holders.setdefault("signing key", set()).add(process)
    assert holders["FM_SERVICE_CLIENT_SECRET"] == SERVICE_CLIENT
    assert holders["FM_AGENT_REDACTION_KEY"] == AGENT_SECRETS
    assert holders["FM_AGENT_PROVIDERS"] == AGENT_SECRETS
    assert holders["FM_STORAGE_S3_SECRET_ACCESS_KEY"] == STORAGE
    assert holders["signing key"] == {"auth", "migrate-auth"}
    for db in ("AUTH", "CASE", "KNOWLEDGE", "EVIDENCE"):
        assert holders[f"FM_{db}_DATABASE_URL"] == {p for p, d in DATABASES.items() if db in d}


def _settings(module: str) -> type[BaseServiceSettings]:
    import importlib

    cls = importlib.import_module(module).Settings
    assert issubclass(cls, BaseServiceSettings)
    return cls


def _env_names(cls: type[BaseSettings], field: str) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "FM_")
    return {f"{prefix}{field}".upper(), f"FM_{field}".upper()}


@pytest.mark.parametrize("process", PROCESS_SETTINGS)
def test_every_required_setting_is_wired(
    process: str, manifests: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, pod = next((c, pod) for name, c, pod in containers(manifests) if name == process)
    env = env_of(c)
    values = {name: stand_in(name, entry) for name, entry in env.items()}
    assert values["FM_ENVIRONMENT"] == "production"
    assert values["FM_DEPLOYMENT"] == "enterprise"
    assert values["FM_DATA_DIR"] == "/data"

    for name in [k for k in os.environ if k.startswith("FM_")]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)

    for module in PROCESS_SETTINGS[process]:
        cls = _settings(module)
        for field, info in cls.model_fields.items():
            if info.is_required():
                assert _env_names(cls, field) & set(values), f"{module}: {field} has no value"
        # As at start: production refuses a placeholder secret (an empty service client
        # secret in the worker and beat, the agent's redaction key).
        settings = cls()
        for field in PEER_URLS:
            assert getattr(settings, field) != cls.model_fields[field].default, (
                f"{process}: {module}.{field} is not wired (the default points at localhost)"
            )
        if getattr(settings, "deployment", None) is not None:  # FM_DEPLOYMENT's setting
            assert settings.deployment == "enterprise"

    for db in DATABASES.get(process, set()):
        cls = _settings(f"{db.lower()}_service.config")
        url = cls().effective_database_url
        assert url == f"faultmaven-postgresql.{db.lower()}-url", f"{process}: {db} is SQLite"
    if process in SERVICE_CALLERS or process in ("auth", "migrate-auth"):
        secret = values.get("FM_SERVICE_CLIENT_SECRET", "")
        assert secret not in PLACEHOLDER_SECRETS, f"{process} has no service client secret"
    if process in AGENT_SECRETS:
        agent = _settings("agent_service.config")()
        assert secret_ref(env["FM_AGENT_REDACTION_KEY"])
        assert agent.redaction_key.get_secret_value() not in PLACEHOLDER_SECRETS
        assert json.loads(values["FM_AGENT_PROVIDERS"]) == []
    if process in STORAGE:
        assert values["FM_STORAGE_URL"].startswith("s3://")
        assert values["FM_STORAGE_S3_REGION"]
        assert secret_ref(env["FM_STORAGE_S3_ACCESS_KEY_ID"])
        assert secret_ref(env["FM_STORAGE_S3_SECRET_ACCESS_KEY"])
    else:
        assert "FM_STORAGE_URL" not in values
    if process in ("auth", "migrate-auth"):
        auth = _settings("auth_service.config")()
        key_path = auth.signing_key_path
        assert key_path is not None, "auth would generate its own key"
        mount = next(m for m in c["volumeMounts"] if Path(m["mountPath"]) == key_path.parent)
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "faultmaven-signing-key"
        assert [i["path"] for i in volume["secret"]["items"]] == [key_path.name]
    if process == "gateway":
        assert values["FM_GATEWAY_PUBLIC_URL"].startswith("https://")
        assert values["FM_GATEWAY_TRUSTED_PROXIES"]


def test_previous_keys_are_mounted_where_auth_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(VARIANTS["rotation, bootstrap admin, IAM role for S3, fixed replicas"])
    deployments = of_kind(docs, "Deployment")
    pod = deployments["auth"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = env_of(c)
    for name in [k for k in os.environ if k.startswith("FM_")]:
        monkeypatch.delenv(name)
    for name, entry in env.items():
        monkeypatch.setenv(name, stand_in(name, entry))
    auth = _settings("auth_service.config")()
    (previous,) = auth.previous_key_paths
    mount = next(m for m in c["volumeMounts"] if Path(m["mountPath"]) == previous.parent)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "old-key"
    assert auth.bootstrap_admin_username == "faultmaven-admin.username"
    # With the pods' identity for S3, no key pair is wired anywhere.
    for process, container, _ in containers(docs):
        names = set(env_of(container))
        assert "FM_STORAGE_S3_ACCESS_KEY_ID" not in names, process
        if process in STORAGE:
            assert env_of(container)["FM_STORAGE_S3_ENDPOINT_URL"]["value"] == (
                "https://minio.example"
            )
    assert deployments["gateway"]["spec"]["replicas"] == 2
    assert set(of_kind(docs, "HorizontalPodAutoscaler")) == {"agent", "knowledge"}
    assert not [d for d in docs if d["kind"] in ("Job", "Ingress")]


def test_beats_liveness_probe_reads_its_own_heartbeat(
    manifests: list[dict[str, Any]], redis_url: str
) -> None:
    """The probe's command, run as the kubelet would, against the key beat keeps fresh."""
    (beat,) = of_kind(manifests, "Deployment")["beat"]["spec"]["template"]["spec"]["containers"]
    command = [
        sys.executable if part == "python" else part
        for part in beat["livenessProbe"]["exec"]["command"]
    ]

    def probe(hostname: str) -> int:
        env = {**os.environ, "FM_REDIS_URL": redis_url, "HOSTNAME": hostname}
        return subprocess.run(command, env=env, timeout=60, check=False).returncode

    assert probe(socket.gethostname()) == 1, "no heartbeat yet"
    stop = start_heartbeat(redis_url, "beat", interval=0.2)
    try:
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 10
        while not client.exists(heartbeat_key("beat")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert probe(socket.gethostname()) == 0
        assert probe("another-pod") == 1, "another pod's beat is not this one alive"
    finally:
        stop.set()
