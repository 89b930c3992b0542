"""Requesting a report when the job queue is down: 503, and nothing is left 'pending'."""

from __future__ import annotations

import pytest

from case_service.domain.reports import flows as reports
from fm_common.contracts.case import ReportCreateRequest
from fm_common.errors import Unavailable
from fm_common.jobs import JobStore
from fm_common.testing.ports import free_port


async def test_broker_down_fails_the_report_and_its_job(app, client, make_case, alice):
    case = await make_case(alice)
    jobs = JobStore(app.state.redis)
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(Unavailable) as err:
        await reports.request_report(
            app.state.sessionmaker,
            jobs,
            dead_broker,
            case["user_id"],
            case["case_id"],
            ReportCreateRequest(),
            retry_after=7,
        )
    assert err.value.headers["Retry-After"] == "7"
    listed = (await client.get(f"/api/v1/cases/{case['case_id']}/reports", headers=alice)).json()
    [report] = listed["reports"]
    assert report["status"] == "failed"
    assert "queue" in report["error"]
    job = await jobs.get(report["job_id"])
    assert job is not None
    assert job.status == "failed"
