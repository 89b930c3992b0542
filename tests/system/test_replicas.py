"""Replicas that agree (issue 14): two instances of every service and of the worker, each
with its own empty data dir, sharing only PostgreSQL, Redis, Chroma and an S3 server
(moto's, standing in for AWS S3, MinIO, Ceph RGW), behind HAProxy (round-robin per
service; the services reach each other through it too), in enterprise mode
(FM_DEPLOYMENT=enterprise).

Every crossing is proven, not hoped for: each request carries its own X-Request-ID, which
the gateway and every service client pass on, and the balancer logs which instance served
each hop (fm_common.testing.balancer). A step that must cross replicas repeats its second
half until the balancer shows it on the other instance (round-robin: at most a few
tries) and then asserts the answer; were the replicas to disagree (a key, an idempotency
record, a BM25 index, a rate-limit count held per replica), that answer would be wrong.

Then one instance of each kind is killed (SIGKILL) and the journey passes again on the
ones left. Run time and how to run it: docs/testing.md "Replicas".
"""

from __future__ import annotations

import importlib.util
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fm_common.devstack import SERVICES, Stack

_NEEDED = (
    "gateway",
    "auth_service",
    "session_service",
    "case_service",
    "knowledge_service",
    "evidence_service",
    "agent_service",
    "job_worker",
)
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in _NEEDED),
    reason="a service of the whole system is not installed",
)

PASSWORD = "correct horse battery staple"
# Per user and window (FM_GATEWAY_RATE_LIMIT_PER_WINDOW), counted by every gateway
# replica together; high enough for the journey's own polling.
RATE_LIMIT = 150
WINDOW = 60
SQL_SERVICES = ("auth", "case", "evidence", "knowledge")
REPLICATED = (*SERVICES, "worker")


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class Replicas:
    """The stack, its balancer, a client of the gateway's front and the fake LLM."""

    stack: Stack
    balancer: Any
    gateway: httpx.Client
    fake: Any
    log_dir: Path
    blobs_shared: bool
    killed: set[str] = field(default_factory=set)

    def call(
        self, method: str, path: str, *, auth: dict[str, str] | None = None, **kw: Any
    ) -> tuple[httpx.Response, str]:
        """One request through the gateway's front with its own request id."""
        rid = f"rep-{uuid.uuid4().hex}"
        headers = {**(auth or {}), **kw.pop("headers", {}), "X-Request-ID": rid}
        return self.gateway.request(method, path, headers=headers, **kw), rid

    def served(self, rid: str, service: str) -> str:
        """The instance of `service` that served request `rid` (exactly one hop)."""
        hops = self.balancer.served(rid, service)
        assert hops, f"the balancer logged no {service} hop of {rid}"
        instances = {inst for _, inst in hops}
        assert len(instances) == 1, f"{rid} crossed several {service} instances: {hops}"
        return instances.pop()

    def alive(self, service: str) -> list[str]:
        return [n for n in self.stack.instances(service) if n not in self.killed]

    def worker_that_logged(self, event: str, key: str, value: str) -> list[str]:
        found = []
        for name in self.stack.instances("worker"):
            log = self.log_dir / f"{name}.log"
            for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
                if event in line and value in line:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if entry.get("event") == event and entry.get(key) == value:
                        found.append(name)
        return found


def _s3_env(request: pytest.FixtureRequest) -> dict[str, str] | None:
    """FM_STORAGE_* of a new bucket on the session's S3 server (fm_common.testing's moto
    server), or None where this checkout has no S3 blob storage."""
    if importlib.util.find_spec("fm_common.testing.s3_server") is None:
        return None
    server = request.getfixturevalue("s3_server")
    env: dict[str, str] = server.env(server.create_bucket())
    return env


@pytest.fixture(scope="module")
def replicas(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: Any,
    fake_llm: Any,
) -> Iterator[Replicas]:
    from fm_common.testing.balancer import BalancerUnavailable, HAProxy

    if fake_llm is None:
        pytest.skip("fm_common.testing.fake_llm is not importable")
    root = tmp_path_factory.mktemp("replicas")
    replicas = dict.fromkeys(REPLICATED, 2)
    current, retired = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    env = {
        "FM_DEPLOYMENT": "enterprise",
        "FM_LOG_FORMAT": "json",
        "FM_WORKER_CONCURRENCY": "1",
        "HF_HUB_OFFLINE": "1",
        # One key for every auth replica, from the environment (as a secret would be),
        # and a retired one still listed in the JWKS.
        "FM_AUTH_SIGNING_KEY": _pem(current),
        "FM_AUTH_PREVIOUS_KEYS": _pem(retired),
        "FM_AUTH_BCRYPT_ROUNDS": "4",
        "FM_AUTH_REGISTRATIONS_PER_ADDRESS": "100000",
        "FM_AUTH_BOOTSTRAP_ADMIN_USERNAME": "admin",
        "FM_AUTH_BOOTSTRAP_ADMIN_PASSWORD": "correct horse battery",
        "FM_GATEWAY_PUBLIC_RATE_LIMIT_PER_WINDOW": "100000",
        "FM_GATEWAY_RATE_LIMIT_PER_WINDOW": str(RATE_LIMIT),
        "FM_AGENT_MAX_CONCURRENT_TURNS_PER_USER": "1",
        "FM_AGENT_PROVIDERS": json.dumps(
            [
                {
                    "name": "fake-openai",
                    "kind": "openai_compatible",
                    "model": "fake-model",
                    "api_key": "test-key",
                    "base_url": fake_llm.openai_base_url("replicas"),
                }
            ]
        ),
    }
    for name in SQL_SERVICES:
        env[f"FM_{name.upper()}_DATABASE_URL"] = postgres_server.create_database(f"fm_{name}")
    # Evidence files and knowledge originals in S3: without it each replica keeps them in
    # its own data dir, and the steps that cross replicas with files are left out.
    s3 = _s3_env(request)
    env.update(s3 or {})
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(replicas),
        log_dir=root / "logs",
        extra_env=env,
        replicas=replicas,
    )
    try:
        stack.balancer = HAProxy(stack, log=root / "logs" / "haproxy.log")
    except BalancerUnavailable as exc:
        pytest.skip(f"HAProxy UNAVAILABLE, replica tests skipped: {exc}")
    try:
        stack.start(timeout=600)
        with httpx.Client(base_url=stack.gateway_url, timeout=120) as gateway:
            yield Replicas(stack, stack.balancer, gateway, fake_llm, root / "logs", s3 is not None)
    except Exception:
        _dump_logs(root / "logs")
        raise
    finally:
        stack.stop()


@pytest.fixture
def rep(replicas: Replicas) -> Iterator[Replicas]:
    replicas.fake.reset()
    yield replicas
    replicas.fake.reset()


def _dump_logs(log_dir: Path) -> None:
    for log in sorted(log_dir.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print(f"--- {log.name} (last lines)\n" + "\n".join(tail))  # noqa: T201


def _until_other(
    rep: Replicas, service: str, first: str, attempt: Callable[[], tuple[Any, str]]
) -> tuple[Any, str]:
    """Repeat `attempt` (returns (result, request id)) until `service` serves it on an
    instance other than `first`; returns that result and instance."""
    for _ in range(6):
        result, rid = attempt()
        served = rep.served(rid, service)
        if served != first:
            return result, served
    raise AssertionError(f"{service}: every attempt stayed on {first}")


def _register(rep: Replicas) -> dict[str, Any]:
    username = f"rep_{uuid.uuid4().hex[:10]}"
    resp, _ = rep.call(
        "POST", "/api/v1/auth/register", json={"username": username, "password": PASSWORD}
    )
    assert resp.status_code == 201, resp.text
    return {"username": username, **resp.json()}


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


# -- the steps of the journey (cross=True: each must be seen crossing replicas) ---------


def step_auth(rep: Replicas, *, cross: bool) -> dict[str, str]:
    user = _register(rep)
    login, rid = rep.call(
        "POST",
        "/api/v1/auth/login",
        json={"username": user["username"], "password": PASSWORD},
    )
    assert login.status_code == 200, login.text
    issuer = rep.served(rid, "auth")
    tokens = login.json()

    def refresh() -> tuple[Any, str]:
        nonlocal tokens
        resp, rid = rep.call(
            "POST", "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert resp.status_code == 200, resp.text
        tokens = resp.json()
        return resp, rid

    if cross:
        # A refresh token issued by one auth replica, rotated by the other.
        _, other = _until_other(rep, "auth", issuer, refresh)
        assert other != issuer
    else:
        refresh()
    # The access token the last replica issued: accepted by both gateways (each verifies
    # it with the JWKS it fetched from either auth replica).
    gateways = set()
    for _ in range(4):
        me, rid = rep.call("GET", "/api/v1/auth/me", auth=_bearer(tokens))
        assert me.status_code == 200, me.text
        assert me.json()["username"] == user["username"]
        gateways.add(rep.served(rid, "gateway"))
        # The balancer's header and its log name the same replica.
        assert me.headers["x-served-by"] == rep.served(rid, "gateway")
    assert gateways == set(rep.alive("gateway"))
    # The same key set on every auth replica: the current key and the retired one.
    jwks = []
    for name in rep.alive("auth"):
        resp = httpx.get(f"{rep.stack.url(name)}/api/v1/auth/.well-known/jwks.json")
        assert resp.status_code == 200, resp.text
        jwks.append(resp.json())
    assert all(j == jwks[0] for j in jwks)
    assert len({k["kid"] for k in jwks[0]["keys"]}) == 2
    return _bearer(tokens)


def step_case_idempotency(rep: Replicas, auth: dict[str, str], *, cross: bool) -> str:
    key = {"Idempotency-Key": f"rep-{uuid.uuid4().hex}"}
    body = {"title": None, "priority": "low"}
    created, rid = rep.call("POST", "/api/v1/cases", auth=auth, json=body, headers=key)
    assert created.status_code == 201, created.text
    first = rep.served(rid, "case")

    def again() -> tuple[Any, str]:
        resp, rid = rep.call("POST", "/api/v1/cases", auth=auth, json=body, headers=key)
        assert resp.status_code == 201, resp.text
        return resp, rid

    if cross:
        repeated, _ = _until_other(rep, "case", first, again)
    else:
        repeated, _ = again()
    assert repeated.json() == created.json()
    case_id = created.json()["case_id"]
    listed, _ = rep.call("GET", "/api/v1/cases?limit=50", auth=auth)
    assert [c["case_id"] for c in listed.json()["cases"]].count(case_id) == 1
    return case_id


def step_evidence(rep: Replicas, auth: dict[str, str], case_id: str, *, cross: bool) -> str:
    body = f"2026-12-05T03:00:00Z ERROR replica {uuid.uuid4().hex}\n".encode() * 200
    up, rid = rep.call(
        "POST",
        "/api/v1/evidence",
        auth=auth,
        files={"file": ("app.log", body, "text/plain")},
        data={"case_id": case_id},
    )
    assert up.status_code == 201, up.text
    stored_on = rep.served(rid, "evidence")
    file_id = up.json()["file_id"]

    def download() -> tuple[Any, str]:
        resp, rid = rep.call("GET", f"/api/v1/evidence/{file_id}/content", auth=auth)
        assert resp.status_code == 200, resp.text
        return resp, rid

    if cross:
        got, _ = _until_other(rep, "evidence", stored_on, download)
    else:
        got, _ = download()
    assert got.content == body
    return file_id


def _poll(rep: Replicas, path: str, auth: dict[str, str], done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + 240
    body: Any = None
    while time.monotonic() < deadline:
        resp, _ = rep.call("GET", path, auth=auth)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if done(body):
            return body
        time.sleep(1.0)
    raise AssertionError(f"{path} not done: {body}")


def step_knowledge(rep: Replicas, auth: dict[str, str], *, cross: bool) -> None:
    marker = f"zephyr{uuid.uuid4().hex[:8]}"
    runbook = (
        f"# {marker} queue backlog\n\nSymptom: the {marker} consumer lags and the queue "
        f"grows past 10k messages.\n\nFix: scale the {marker} consumers to 6 and purge "
        "the dead-letter queue.\n"
    ).encode()
    up, rid = rep.call(
        "POST",
        "/api/v1/knowledge/documents",
        auth=auth,
        files={"file": (f"{marker}.md", runbook, "text/markdown")},
        data={"title": f"{marker} runbook", "document_type": "runbook", "scope": "personal"},
    )
    assert up.status_code == 202, up.text
    written_by = rep.served(rid, "knowledge")
    doc_id = up.json()["document_id"]
    doc = _poll(
        rep,
        f"/api/v1/knowledge/documents/{doc_id}",
        auth,
        lambda b: b["status"] in ("processed", "failed"),
    )
    assert doc["status"] == "processed", doc

    def search() -> tuple[Any, str]:
        resp, rid = rep.call(
            "POST",
            "/api/v1/knowledge/search",
            auth=auth,
            json={"query": f"{marker} consumer lag backlog", "limit": 3, "mode": "hybrid"},
        )
        assert resp.status_code == 200, resp.text
        return resp, rid

    # Each knowledge replica ranks with its own BM25 index (a cache in its data dir,
    # rebuilt when the collection's version in Redis moves): both find the document
    # first, with the same hybrid scores (a stale index would score it differently).
    answers: dict[str, list[tuple[str, float]]] = {}
    for _ in range(6 if cross else 2):
        found, rid = search()
        served = rep.served(rid, "knowledge")
        hits = found.json()["results"]
        assert hits, f"no hit on {served}"
        assert hits[0]["document_id"] == doc_id, hits
        answers[served] = [(h["document_id"], round(h["score"], 4)) for h in hits]
        if len(answers) == len(rep.alive("knowledge")):
            break
    assert set(answers) == set(rep.alive("knowledge"))
    assert len({tuple(a) for a in answers.values()}) == 1, answers
    if cross:
        assert written_by in answers
        assert len(answers) == 2
        for name in answers:
            assert list((rep.stack.data_dir / name / "knowledge" / "bm25").iterdir()), name


def step_turn_retry(rep: Replicas, auth: dict[str, str], case_id: str, *, cross: bool) -> None:
    key = {"Idempotency-Key": f"rep-turn-{uuid.uuid4().hex}"}
    query = f"Why does the replica {uuid.uuid4().hex[:8]} time out?"
    first, rid = rep.call(
        "POST", f"/api/v1/cases/{case_id}/turns", auth=auth, data={"query": query}, headers=key
    )
    assert first.status_code == 200, first.text
    answered_by = rep.served(rid, "agent")
    calls = len(rep.fake.requests)

    def retry() -> tuple[Any, str]:
        resp, rid = rep.call(
            "POST", f"/api/v1/cases/{case_id}/turns", auth=auth, data={"query": query}, headers=key
        )
        assert resp.status_code == 200, resp.text
        return resp, rid

    if cross:
        again, _ = _until_other(rep, "agent", answered_by, retry)
    else:
        again, _ = retry()
    assert again.json()["turn_number"] == first.json()["turn_number"]
    assert again.json()["agent_response"] == first.json()["agent_response"]
    assert len(rep.fake.requests) == calls, "a retry reached the model again"


def step_rate_limit(rep: Replicas, *, cross: bool) -> None:
    # The limit counts in fixed windows: start early in one, so that every request of
    # this step falls into the same window.
    if time.time() % WINDOW > WINDOW / 3:
        time.sleep(WINDOW - time.time() % WINDOW + 0.5)
    auth = step_auth(rep, cross=False)  # a user of its own: nobody else spends its budget
    gateways = set()
    used = 0
    limited = None
    for _ in range(RATE_LIMIT + 5):
        resp, rid = rep.call("GET", "/api/v1/cases?limit=1", auth=auth)
        gateways.add(rep.served(rid, "gateway"))
        if resp.status_code == 429:
            limited = resp
            break
        assert resp.status_code == 200, resp.text
        used += 1
    assert limited is not None, f"no 429 after {used} requests"
    # step_auth's four /me calls count too: the budget ran out at RATE_LIMIT in all, over
    # both gateways together (counted per replica it would have taken twice as many).
    assert used == RATE_LIMIT - 4
    assert "retry-after" in limited.headers
    if cross:
        assert gateways == {"gateway-1", "gateway-2"}


def step_turn_cap(rep: Replicas, auth: dict[str, str], case_id: str, *, cross: bool) -> None:
    rep.fake.latency("replicas", 6.0)
    slow: dict[str, Any] = {}

    def long_turn() -> None:
        slow["resp"], slow["rid"] = rep.call(
            "POST",
            f"/api/v1/cases/{case_id}/turns",
            auth=auth,
            data={"query": "A slow question that keeps its slot"},
        )

    thread = threading.Thread(target=long_turn)
    thread.start()
    try:
        time.sleep(2.0)  # the slow turn has its slot and waits on the model
        refused = []
        for _ in range(4):
            resp, rid = rep.call(
                "POST",
                f"/api/v1/cases/{case_id}/turns",
                auth=auth,
                data={"query": "A second one at the same time"},
            )
            assert resp.status_code == 429, resp.text
            refused.append(rep.served(rid, "agent"))
            if not cross or len(set(refused)) == 2:
                break
    finally:
        thread.join(timeout=60)
        rep.fake.clear_faults()
    assert slow["resp"].status_code == 200, slow["resp"].text
    holder = rep.served(slow["rid"], "agent")
    if cross:
        # Refused by the replica that is not running the slow turn as well.
        assert set(refused) == {"agent-1", "agent-2"}, (holder, refused)


def step_delete(
    rep: Replicas, auth: dict[str, str], case_id: str, file_id: str | None
) -> list[str]:
    resp, _ = rep.call("DELETE", f"/api/v1/cases/{case_id}", auth=auth)
    assert resp.status_code == 204, resp.text
    gone, _ = rep.call("GET", f"/api/v1/cases/{case_id}", auth=auth)
    assert gone.status_code == 404
    deadline = time.monotonic() + 120
    workers: list[str] = []
    while time.monotonic() < deadline and not workers:
        workers = rep.worker_that_logged("case.cleanup_done", "case_id", case_id)
        time.sleep(0.5)
    assert len(workers) == 1, f"cleanup of {case_id} ran on {workers}"
    if file_id is not None:
        file, _ = rep.call("GET", f"/api/v1/evidence/{file_id}", auth=auth)
        assert file.status_code == 404
    return workers


def journey(rep: Replicas, *, cross: bool) -> list[str]:
    """The whole journey; returns the worker that cleaned the deleted case."""
    auth = step_auth(rep, cross=cross)
    case_id = step_case_idempotency(rep, auth, cross=cross)
    file_id = step_evidence(rep, auth, case_id, cross=cross) if rep.blobs_shared else None
    if rep.blobs_shared:
        step_knowledge(rep, auth, cross=cross)
    step_turn_retry(rep, auth, case_id, cross=cross)
    step_turn_cap(rep, auth, case_id, cross=cross)
    step_rate_limit(rep, cross=cross)
    return step_delete(rep, auth, case_id, file_id)


# -- the tests ---------------------------------------------------------------------------


def test_files_are_in_blob_storage_every_replica_shares(rep: Replicas) -> None:
    if not rep.blobs_shared:
        pytest.skip(
            "no S3 blob storage in this checkout (fm_common.testing.s3_server): evidence "
            "uploads, downloads and knowledge ingestion are left out of the journey"
        )
    assert rep.stack.extra_env["FM_STORAGE_URL"].startswith("s3://")


def test_the_journey_crosses_replicas(rep: Replicas) -> None:
    journey(rep, cross=True)


def test_the_journey_passes_with_one_replica_of_each_kind_killed(rep: Replicas) -> None:
    for name in REPLICATED:
        rep.stack.stop_process(f"{name}-1", sig=signal.SIGKILL)
        rep.killed.add(f"{name}-1")
    time.sleep(3)  # the balancer's health checks take the dead ones out (2 x 1 s)
    before = len(rep.balancer.lines())
    cleaned_by = journey(rep, cross=False)
    assert cleaned_by == ["worker-2"]
    # Every hop of the second journey was served by a survivor.
    after = rep.balancer.lines()[before:]
    assert after, "the balancer logged nothing"
    assert {inst for _, inst, *_ in after} <= {f"{name}-2" for name in SERVICES}, after


def test_after_the_journeys_the_replicas_data_dirs_hold_only_caches(rep: Replicas) -> None:
    """Every replica started with its own empty data dir; after both journeys nothing in
    any of them is authoritative: no SQLite file, no signing key, no stored file, only
    the knowledge replicas' BM25 indexes (a cache, ADR 0145)."""
    for name in REPLICATED:
        for inst in rep.stack.instances(name):
            assert rep.stack.instance_env(inst)["FM_DATA_DIR"] == str(rep.stack.data_dir / inst)
    kept = []
    for inst_dir in rep.stack.data_dir.iterdir():
        if inst_dir.name in ("redis", "chroma"):  # the shared stores' own dirs
            continue
        if inst_dir.is_file():  # beat's, which has the stores' dir: nothing of its own
            kept.append(inst_dir.name)
            continue
        for path in inst_dir.rglob("*"):
            relative = path.relative_to(inst_dir)
            if path.is_file() and relative.parts[:2] != ("knowledge", "bm25"):
                kept.append(f"{inst_dir.name}/{relative}")
    assert kept == []
    if rep.blobs_shared:
        assert list((rep.stack.data_dir / "knowledge-1" / "knowledge" / "bm25").iterdir())
