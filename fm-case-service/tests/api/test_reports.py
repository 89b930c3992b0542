"""Reports: POST 202 + job Location, list, read, the worker's store, the job route."""

from __future__ import annotations

import base64
import json

import redis
from fastapi import FastAPI

from case_service.config import Settings
from case_service.main import create_app
from fm_common.testing.ports import free_port


def queued_tasks(redis_url: str, queue: str) -> list[tuple[str, dict]]:
    """(task name, kwargs) of the Celery messages waiting in `queue` (kombu's Redis list)."""
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


async def test_request_report_queues_the_postmortem_job(client, make_case, alice, redis_url):
    case = await make_case(alice)
    cid = case["case_id"]
    resp = await client.post(f"/api/v1/cases/{cid}/reports", headers=alice)
    assert resp.status_code == 202
    body = resp.json()
    assert resp.headers["location"] == f"/api/v1/cases/{cid}/reports/jobs/{body['job_id']}"
    [(task, kwargs)] = queued_tasks(redis_url, "agent")
    assert task == "agent.generate_postmortem"
    assert kwargs == {
        "job_id": body["job_id"],
        "case_id": cid,
        "report_id": body["report_id"],
        "owner_id": case["user_id"],
    }
    job = await client.get(resp.headers["location"], headers=alice)
    assert job.status_code == 200
    assert job.json()["status"] == "queued"
    report = await client.get(f"/api/v1/cases/{cid}/reports/{body['report_id']}", headers=alice)
    assert report.json()["status"] == "pending"
    assert report.json()["content"] is None


async def test_stored_report_is_readable_and_completes_the_job(svc, client, make_case, alice):
    case = await make_case(alice)
    cid = case["case_id"]
    created = (await client.post(f"/api/v1/cases/{cid}/reports", headers=alice)).json()
    markdown = "# Post-mortem\n\nThe pool was exhausted."
    stored = await client.put(
        f"/internal/v1/cases/{cid}/reports/{created['report_id']}",
        json={"status": "completed", "content": markdown},
        headers=svc(alice),
    )
    assert stored.status_code == 200
    one = await client.get(f"/api/v1/cases/{cid}/reports/{created['report_id']}", headers=alice)
    assert (one.json()["status"], one.json()["content"]) == ("completed", markdown)
    listed = (await client.get(f"/api/v1/cases/{cid}/reports", headers=alice)).json()
    assert listed["total_count"] == 1
    assert "content" not in listed["reports"][0]
    job = (
        await client.get(f"/api/v1/cases/{cid}/reports/jobs/{created['job_id']}", headers=alice)
    ).json()
    assert job["status"] == "completed"
    assert job["result"]["report_id"] == created["report_id"]


async def test_failed_report_records_the_error(svc, client, make_case, alice):
    case = await make_case(alice)
    cid = case["case_id"]
    created = (await client.post(f"/api/v1/cases/{cid}/reports", headers=alice)).json()
    await client.put(
        f"/internal/v1/cases/{cid}/reports/{created['report_id']}",
        json={"status": "failed", "error": "no provider answered"},
        headers=svc(alice),
    )
    job = (
        await client.get(f"/api/v1/cases/{cid}/reports/jobs/{created['job_id']}", headers=alice)
    ).json()
    assert job["status"] == "failed"
    assert job["error"]["message"] == "no provider answered"


async def test_bad_report_requests_are_422_or_404(svc, client, make_case, alice):
    case = await make_case(alice)
    cid = case["case_id"]
    bad_type = await client.post(
        f"/api/v1/cases/{cid}/reports", json={"report_type": "novel"}, headers=alice
    )
    assert bad_type.status_code == 422
    missing = await client.get(f"/api/v1/cases/{cid}/reports/nope", headers=alice)
    assert (missing.status_code, missing.json()["code"]) == (404, "REPORT_NOT_FOUND")
    no_job = await client.get(f"/api/v1/cases/{cid}/reports/jobs/nope", headers=alice)
    assert no_job.status_code == 404
    bad_status = await client.put(
        f"/internal/v1/cases/{cid}/reports/nope", json={"status": "weird"}, headers=svc(alice)
    )
    assert bad_status.status_code == 422


async def test_report_request_with_redis_down_is_503_with_retry_after(
    sqlite_url, token_issuer, data_dir, alice
):
    import httpx

    dead = f"redis://127.0.0.1:{free_port()}/0"
    app: FastAPI = create_app(
        Settings(
            database_url=sqlite_url,
            redis_url=dead,
            jwks_url=token_issuer.jwks_url,
            data_dir=data_dir,
            outbox_sweep_seconds=0,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://case") as c:
            resp = await c.post("/api/v1/cases/any/reports", headers=alice)
    assert resp.status_code == 503
    assert int(resp.headers["retry-after"]) >= 1
    assert "Traceback" not in resp.text
