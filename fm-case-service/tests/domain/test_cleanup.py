"""Deleting a case: rows gone at once; files and collection dropped through the outbox.

Evidence and knowledge are small real HTTP servers here (the internal DELETE routes),
called through the real typed clients.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select, update

from case_service.domain.cases import flows
from case_service.domain.cases.models import Case, CleanupOutbox
from fm_common.clients.evidence import EvidenceClient
from fm_common.clients.knowledge import KnowledgeClient
from fm_common.testing.ports import free_port


class StandIn:
    """A tiny HTTP service answering every DELETE with `status`, recording the calls."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.calls: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_DELETE(self) -> None:
                outer.calls.append(("DELETE", self.path, self.headers.get("authorization")))
                body = b"" if outer.status == 204 else b'{"detail":"down","code":"DOWN"}'
                self.send_response(outer.status)
                if body:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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


@pytest.fixture
def evidence():
    s = StandIn()
    yield s
    s.close()


@pytest.fixture
def knowledge():
    s = StandIn()
    yield s
    s.close()


def queued(redis_url: str, queue: str) -> list[tuple[str, dict]]:
    client = redis.Redis.from_url(redis_url)
    try:
        out = []
        for raw in client.lrange(queue, 0, -1):
            msg = json.loads(raw)
            _args, kwargs, _ = json.loads(base64.b64decode(msg["body"]))
            out.append((msg["headers"]["task"], kwargs))
        return out
    finally:
        client.close()


async def outbox_rows(app) -> list[CleanupOutbox]:
    async with app.state.sessionmaker() as session:
        return list((await session.execute(select(CleanupOutbox))).scalars().all())


async def cleanup(app, case_id, owner_id, token, evidence_url, knowledge_url) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        ev = EvidenceClient(evidence_url, http, retries=0)
        kn = KnowledgeClient(knowledge_url, http, retries=0)

        async def token_for(_owner: str) -> str:
            return token

        async def drop_files(cid: str, tok: str) -> None:
            await ev.delete_case_files(cid, token=tok)

        async def drop_collection(cid: str, tok: str) -> None:
            await kn.delete_case_collection(cid, token=tok)

        await flows.run_cleanup(
            app.state.sessionmaker,
            case_id=case_id,
            owner_id=owner_id,
            token_for=token_for,
            drop_files=drop_files,
            drop_collection=drop_collection,
        )


async def test_delete_records_the_cleanup_and_enqueues_it(client, app, make_case, alice, redis_url):
    case = await make_case(alice, initial_message="hi")
    resp = await client.delete(f"/api/v1/cases/{case['case_id']}", headers=alice)
    assert resp.status_code == 204
    assert (await client.get(f"/api/v1/cases/{case['case_id']}", headers=alice)).status_code == 404
    [row] = await outbox_rows(app)
    assert (row.case_id, row.owner_id) == (case["case_id"], case["user_id"])
    assert row.last_enqueued_at is not None
    assert queued(redis_url, "maintenance") == [
        ("cases.cleanup_case", {"case_id": case["case_id"], "owner_id": case["user_id"]})
    ]


async def test_delete_with_broker_down_keeps_the_cleanup_for_the_sweeper(
    client, app, make_case, alice, redis_url
):
    case = await make_case(alice)
    dead = flows.broker_enqueue(f"redis://127.0.0.1:{free_port()}/0")
    await flows.delete_case(app.state.sessionmaker, dead, case["user_id"], case["case_id"])
    assert (await client.get(f"/api/v1/cases/{case['case_id']}", headers=alice)).status_code == 404
    [row] = await outbox_rows(app)
    assert row.last_enqueued_at is None
    assert queued(redis_url, "maintenance") == []

    live = flows.broker_enqueue(redis_url)
    sent = await flows.sweep_outbox(app.state.sessionmaker, live, retry_after=timedelta(minutes=5))
    assert sent == 1
    assert [k["case_id"] for _, k in queued(redis_url, "maintenance")] == [case["case_id"]]
    # Enqueued just now: the next sweep leaves it alone until retry_after passes.
    again = await flows.sweep_outbox(app.state.sessionmaker, live, retry_after=timedelta(minutes=5))
    assert again == 0


async def test_cleanup_drops_files_and_collection_then_clears_the_outbox(
    client, app, make_case, alice, token_issuer, evidence, knowledge
):
    case = await make_case(alice)
    await client.delete(f"/api/v1/cases/{case['case_id']}", headers=alice)
    token = token_issuer.token("worker", roles=["service"], on_behalf_of=case["user_id"])
    await cleanup(app, case["case_id"], case["user_id"], token, evidence.url, knowledge.url)
    assert evidence.calls == [
        ("DELETE", f"/internal/v1/cases/{case['case_id']}/files", f"Bearer {token}")
    ]
    assert knowledge.calls == [
        ("DELETE", f"/internal/v1/collections/case/{case['case_id']}", f"Bearer {token}")
    ]
    assert await outbox_rows(app) == []


async def test_cleanup_with_a_service_down_keeps_the_row_and_succeeds_later(
    client, app, make_case, alice, token_issuer, evidence, knowledge
):
    case = await make_case(alice)
    await client.delete(f"/api/v1/cases/{case['case_id']}", headers=alice)
    token = token_issuer.token("worker", roles=["service"], on_behalf_of=case["user_id"])
    knowledge.status = 503
    with pytest.raises(flows.CleanupFailed, match="knowledge"):
        await cleanup(app, case["case_id"], case["user_id"], token, evidence.url, knowledge.url)
    [row] = await outbox_rows(app)
    assert row.attempts == 1
    assert "knowledge" in (row.last_error or "")
    assert len(evidence.calls) == 1  # the other service was still asked

    dead_url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(flows.CleanupFailed, match="evidence"):
        await cleanup(app, case["case_id"], case["user_id"], token, dead_url, knowledge.url)
    assert (await outbox_rows(app))[0].attempts == 2

    knowledge.status = 204
    await cleanup(app, case["case_id"], case["user_id"], token, evidence.url, knowledge.url)
    assert await outbox_rows(app) == []


async def test_purge_deletes_only_cases_ended_before_the_retention(
    client, app, make_case, alice, redis_url
):
    old = await make_case(alice, title="old")
    recent = await make_case(alice, title="recent")
    active = await make_case(alice, title="active")
    for c in (old, recent):
        await client.post(
            f"/api/v1/cases/{c['case_id']}/transition", json={"to_state": "closed"}, headers=alice
        )
    long_ago = datetime.now(UTC) - timedelta(days=40)
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Case)
            .where(Case.id.in_([old["case_id"], active["case_id"]]))
            .values(closed_at=long_ago, created_at=long_ago)
        )
    purged = await flows.purge_expired(
        app.state.sessionmaker, flows.broker_enqueue(redis_url), retention=timedelta(days=30)
    )
    assert purged == 1
    listed = (await client.get("/api/v1/cases", headers=alice)).json()
    assert sorted(c["title"] for c in listed["cases"]) == ["active", "recent"]
    assert [k["case_id"] for _, k in queued(redis_url, "maintenance")] == [old["case_id"]]


async def test_the_services_sweeper_enqueues_a_cleanup_the_broker_missed(
    sqlite_url, redis_url, token_issuer, data_dir
):
    import asyncio

    from case_service.config import Settings
    from case_service.main import create_app

    app = create_app(
        Settings(
            database_url=sqlite_url,
            redis_url=redis_url,
            jwks_url=token_issuer.jwks_url,
            data_dir=data_dir,
            outbox_sweep_seconds=0.2,
            outbox_retry_seconds=1,
        )
    )
    owner = "sweeper-owner"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://case") as c:
            case = (
                await c.post("/api/v1/cases", json={}, headers=token_issuer.headers(owner))
            ).json()
        dead = flows.broker_enqueue(f"redis://127.0.0.1:{free_port()}/0")
        # The delete's own enqueue fails (dead broker); only the sweeper can send it.
        await flows.delete_case(app.state.sessionmaker, dead, owner, case["case_id"])
        for _ in range(50):
            if queued(redis_url, "maintenance"):
                break
            await asyncio.sleep(0.1)
        assert queued(redis_url, "maintenance") == [
            ("cases.cleanup_case", {"case_id": case["case_id"], "owner_id": owner})
        ]
