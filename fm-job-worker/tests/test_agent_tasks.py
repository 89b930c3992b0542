"""agent.* tasks run for real (Celery `apply`, the real task code, the agent's own flows)
against the real case service (SQLite, under uvicorn on a free port), real Redis, the
fake LLM provider (real SDKs over HTTP) and a small HTTP stand-in of the auth service's
service-token route and the knowledge search."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

import job_worker.runtime as runtime_mod
from case_service.config import Settings as CaseSettings
from case_service.main import create_app as create_case_app
from fm_common.contracts.agent import TURN_JOB_KIND, TurnResponse
from fm_common.jobs import new_job
from fm_common.testing.fake_llm import FakeLLMServer
from fm_common.testing.servers import AppServer
from fm_common.testing.tokens import TokenIssuer
from job_worker.app import app
from job_worker.config import Settings as WorkerSettings
from job_worker.runtime import Runtime

SECRET = "worker-agent-test-secret"
OWNER = "agent-task-owner"
RUNBOOK = "When orders logs 'remaining connection slots are reserved', lower the pool size."
QUERY = "orders logs remaining connection slots are reserved; why?"


class AuthAndKnowledge:
    """Issues service tokens (auth's internal route) and answers knowledge searches with
    one runbook passage; records the searches and who made them."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.searches: list[tuple[dict[str, Any], str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if self.path == "/internal/v1/service-token":
                    if body.get("client_secret") != SECRET:
                        self._send(401, {"detail": "bad credential", "code": "UNAUTHORIZED"})
                        return
                    token = issuer.token(
                        "worker", roles=["service"], on_behalf_of=body["on_behalf_of"], ttl=300
                    )
                    self._send(
                        200, {"access_token": token, "token_type": "bearer", "expires_in": 300}
                    )
                elif self.path == "/api/v1/knowledge/search":
                    outer.searches.append((body, self.headers.get("authorization")))
                    result = {
                        "document_id": "doc-1",
                        "title": "Orders pool runbook",
                        "chunk_id": "doc-1:0",
                        "content": RUNBOOK,
                        "score": 0.9,
                        "scope": "personal",
                    }
                    self._send(200, {"results": [result], "total_count": 1, "took_ms": 1.0})
                else:
                    self._send(404, {"detail": "Not found.", "code": "NOT_FOUND"})

            def do_GET(self) -> None:  # the evidence list of a post-mortem: none here
                self._send(404, {"detail": "Not found.", "code": "NOT_FOUND"})

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_llm: FakeLLMServer) -> FakeLLMServer:
    fake_llm.reset()
    return fake_llm


@pytest.fixture
def stand_in(token_issuer: TokenIssuer) -> Iterator[AuthAndKnowledge]:
    server = AuthAndKnowledge(token_issuer)
    yield server
    server.close()


@pytest.fixture
def case_service(sqlite_url, redis_url, token_issuer, data_dir, monkeypatch) -> Iterator[str]:
    monkeypatch.setenv("FM_CASE_DATABASE_URL", sqlite_url)
    settings = CaseSettings(
        database_url=sqlite_url,
        redis_url=redis_url,
        jwks_url=token_issuer.jwks_url,
        data_dir=data_dir,
        outbox_sweep_seconds=0,
    )
    server = AppServer(create_case_app(settings)).start()
    yield server.url
    server.stop()


@pytest.fixture
def worker(redis_url, stand_in, case_service, data_dir: Path, monkeypatch) -> Iterator[Runtime]:
    """The worker's runtime; the agent's settings come from FM_AGENT_* as in production."""
    for name, value in {
        "REDIS_URL": redis_url,
        "CASE_URL": case_service,
        "KNOWLEDGE_URL": stand_in.url,
        "EVIDENCE_URL": stand_in.url,
        "TURN_DEADLINE_SECONDS": "10",
        "PROVIDERS": "[]",
    }.items():
        monkeypatch.setenv(f"FM_AGENT_{name}", value)
    rt = Runtime(
        WorkerSettings(
            redis_url=redis_url,
            auth_url=stand_in.url,
            case_url=case_service,
            knowledge_url=stand_in.url,
            evidence_url=stand_in.url,
            service_client_secret=SECRET,
            data_dir=data_dir,
            max_retries=2,
        ),
        app,
    )
    runtime_mod.install(rt)
    yield rt
    runtime_mod.install(None)
    rt.runner.close()


def use_provider(monkeypatch: pytest.MonkeyPatch, fake: FakeLLMServer) -> None:
    provider = {
        "name": "primary",
        "kind": "openai",
        "model": "primary-model",
        "api_key": "test-key",
        "base_url": fake.openai_base_url("primary"),
    }
    monkeypatch.setenv("FM_AGENT_PROVIDERS", json.dumps([provider]))


def new_case(case_url: str, issuer: TokenIssuer) -> str:
    resp = httpx.post(
        f"{case_url}/api/v1/cases", json={"title": "Orders 502s"}, headers=issuer.headers(OWNER)
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["case_id"])


def messages(case_url: str, issuer: TokenIssuer, case_id: str) -> list[dict[str, Any]]:
    resp = httpx.get(
        f"{case_url}/internal/v1/cases/{case_id}",
        params={"history": 50},
        headers=issuer.service_headers(OWNER),  # internal routes take service tokens only
    )
    assert resp.status_code == 200, resp.text
    return list(resp.json()["recent_messages"])


def queue_turn_job(rt: Runtime, case_id: str) -> str:
    job = new_job(TURN_JOB_KIND, OWNER, resource_id=case_id, payload={"case_id": case_id})
    rt.jobs.save(job)
    return job.job_id


def turn_kwargs(job_id: str, case_id: str) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "case_id": case_id,
        "owner_id": OWNER,
        "turn_key": f"turn-{job_id}",
        "turn": {"query": QUERY},
    }


def test_a_queued_turn_completes_and_its_job_holds_the_turn_response(
    worker, case_service, stand_in, token_issuer, fake, monkeypatch
):
    use_provider(monkeypatch, fake)
    case_id = new_case(case_service, token_issuer)
    job_id = queue_turn_job(worker, case_id)

    app.tasks["agent.run_turn"].apply(kwargs=turn_kwargs(job_id, case_id))

    job = worker.jobs.get(job_id)
    assert job is not None
    assert (job.status, job.error) == ("completed", None)
    response = TurnResponse.model_validate(job.result)
    assert response.turn_number == 1
    assert [c.title for c in response.citations] == ["Orders pool runbook"]
    assert response.investigation.provider == "primary"
    # The provider saw the question and the runbook the search found as the owner.
    [request] = fake.requests
    assert QUERY in request.text
    assert RUNBOOK in request.text
    [(search, auth)] = stand_in.searches
    assert search["case_id"] == case_id
    assert auth is not None
    claims = jwt.decode(auth.removeprefix("Bearer "), options={"verify_signature": False})
    assert (claims["roles"], claims["on_behalf_of"]) == (["service"], OWNER)
    stored = messages(case_service, token_issuer, case_id)
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", QUERY),
        ("assistant", response.agent_response),
    ]


def test_all_providers_down_fails_the_job_once_and_keeps_the_users_message(
    worker, case_service, token_issuer, fake, monkeypatch
):
    use_provider(monkeypatch, fake)
    fake.fail("*", 503)
    case_id = new_case(case_service, token_issuer)
    job_id = queue_turn_job(worker, case_id)

    app.tasks["agent.run_turn"].apply(kwargs=turn_kwargs(job_id, case_id))

    job = worker.jobs.get(job_id)
    assert job is not None
    assert job.status == "failed"
    assert job.result is None
    assert job.error is not None
    assert job.error.code == "LLM_UNAVAILABLE"
    assert "No language model provider answered" in job.error.message
    # Not retried by the worker: one attempt at the provider, the message stored once.
    assert len(fake.requests) == 1
    stored = messages(case_service, token_issuer, case_id)
    assert [(m["role"], m["content"]) for m in stored if m["role"] == "user"] == [("user", QUERY)]
    [note] = [m for m in stored if m["role"] == "assistant"]
    assert note["metadata"]["failed"] is True


def resolved_case_with_report(case_url: str, issuer: TokenIssuer) -> tuple[str, str, str]:
    """A case whose investigation names a root cause and a fix; a report requested."""
    headers = issuer.headers(OWNER)
    case_id = new_case(case_url, issuer)
    investigation = {
        "problem_statement": "Checkout returns 502 during the evening peak",
        "user_impact": "Orders failed for 20 minutes",
        "root_cause": {"root_cause_id": "rc-1", "description": "Pool of 80 per pod exhausted"},
        "solution": {"description": "Pool lowered to 20 per pod; pgbouncer restarted"},
        "hypotheses": [
            {
                "hypothesis_id": "h-1",
                "text": "Connection pool exhausted",
                "likelihood": 0.9,
                "state": "validated",
            }
        ],
    }
    turn = {
        "turn_key": "postmortem-setup-1",
        "user_message": {"content": "Checkout returns 502 since 18:00"},
        "assistant_message": {"content": "The pool is exhausted."},
        "investigation": investigation,
    }
    resp = httpx.post(
        f"{case_url}/internal/v1/cases/{case_id}/turns",
        json=turn,
        headers=issuer.service_headers(OWNER, client_id="agent"),  # service tokens only
    )
    assert resp.status_code == 200, resp.text
    resp = httpx.post(f"{case_url}/api/v1/cases/{case_id}/reports", json={}, headers=headers)
    assert resp.status_code == 202, resp.text
    return case_id, resp.json()["report_id"], resp.json()["job_id"]


def stored_report(case_url: str, issuer: TokenIssuer, case_id: str, report_id: str) -> Any:
    resp = httpx.get(
        f"{case_url}/api/v1/cases/{case_id}/reports/{report_id}", headers=issuer.headers(OWNER)
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_postmortem_without_a_provider_is_written_from_the_case_state(
    worker, case_service, token_issuer, fake
):
    case_id, report_id, job_id = resolved_case_with_report(case_service, token_issuer)
    kwargs = {"job_id": job_id, "case_id": case_id, "report_id": report_id, "owner_id": OWNER}

    app.tasks["agent.generate_postmortem"].apply(kwargs=kwargs)

    report = stored_report(case_service, token_issuer, case_id, report_id)
    assert report["status"] == "completed"
    content = report["content"]
    assert content.startswith("# Post-mortem: Orders 502s")
    root_cause = content.split("## Root cause", 1)[1].split("##", 1)[0]
    assert "Pool of 80 per pod exhausted" in root_cause
    resolution = content.split("## Resolution", 1)[1].split("##", 1)[0]
    assert "Pool lowered to 20 per pod; pgbouncer restarted" in resolution
    assert "Checkout returns 502 during the evening peak" in content
    assert fake.requests == []  # no provider was asked
    job = worker.jobs.get(job_id)
    assert job is not None
    assert job.status == "completed"
    assert job.result["provider"] is None


POSTMORTEM_MD = (
    "# Post-mortem: evening checkout outage\n\n## Summary\nWritten by the model: pool-7731.\n\n"
    "## Impact\nOrders failed.\n\n## Timeline\n- 18:00 502s began\n\n## Root cause\nThe pool "
    "was exhausted.\n\n## Resolution\nPool lowered.\n\n## Action items\n- [ ] Alert on pool use\n"
)


def test_a_postmortem_with_a_provider_stores_the_providers_markdown(
    worker, case_service, token_issuer, fake, monkeypatch
):
    use_provider(monkeypatch, fake)
    fake.script(POSTMORTEM_MD)
    case_id, report_id, job_id = resolved_case_with_report(case_service, token_issuer)
    kwargs = {"job_id": job_id, "case_id": case_id, "report_id": report_id, "owner_id": OWNER}

    app.tasks["agent.generate_postmortem"].apply(kwargs=kwargs)

    report = stored_report(case_service, token_issuer, case_id, report_id)
    assert report["status"] == "completed"
    assert report["content"] == POSTMORTEM_MD
    # The provider was given the case record (fenced) and asked for a post-mortem.
    [request] = fake.requests
    assert "TASK: postmortem" in request.text
    assert "Pool of 80 per pod exhausted" in request.text
    job = worker.jobs.get(job_id)
    assert job is not None
    assert (job.status, job.result["provider"]) == ("completed", "primary")
