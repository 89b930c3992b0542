"""Requesting a report: the job record, the pending row committed, then the generation
task (`agent.generate_postmortem`) handed to the broker; a broker that is down fails both
instead of leaving them pending."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from case_service.domain.cases.service import load_case, now
from case_service.domain.reports.models import Report as ReportRow
from case_service.domain.reports.repository import ReportRepository
from case_service.domain.reports.service import JOB_KIND
from fm_common.contracts.case import ReportCreated, ReportCreateRequest
from fm_common.errors import Unavailable
from fm_common.jobs import JobStore, enqueue

log = structlog.get_logger(__name__)

POSTMORTEM_TASK = "agent.generate_postmortem"
POSTMORTEM_QUEUE = "agent"


async def request_report(
    maker: async_sessionmaker[AsyncSession],
    jobs: JobStore,
    broker_url: str,
    owner_id: str,
    case_id: str,
    body: ReportCreateRequest,
    *,
    retry_after: int,
) -> ReportCreated:
    """Create a pending report and its job, commit, then enqueue the generation task."""
    report_id, job_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with maker() as session:
        await load_case(session, owner_id, case_id)  # 404 before any work
    # The job record first: a Redis that is down is a 503 before anything is stored.
    await jobs.create(
        JOB_KIND,
        owner_id,
        job_id=job_id,
        resource_id=report_id,
        payload={"case_id": case_id, "report_id": report_id, "report_type": body.report_type},
    )
    async with maker() as session, session.begin():
        await load_case(session, owner_id, case_id)
        at = now()
        await ReportRepository(session).add(
            ReportRow(
                id=report_id,
                case_id=case_id,
                owner_id=owner_id,
                report_type=body.report_type,
                status="pending",
                job_id=job_id,
                created_at=at,
                updated_at=at,
            )
        )
    kwargs: dict[str, Any] = {
        "job_id": job_id,
        "case_id": case_id,
        "report_id": report_id,
        "owner_id": owner_id,
    }
    try:
        await asyncio.to_thread(
            enqueue, broker_url, POSTMORTEM_TASK, queue=POSTMORTEM_QUEUE, kwargs=kwargs
        )
    except Exception as exc:  # broker errors vary (kombu/redis); never leave it "pending"
        log.error(
            "case.report_enqueue_failed", case_id=case_id, report_id=report_id, error=repr(exc)
        )
        message = "The job queue is unavailable; the report was not started."
        async with maker() as session, session.begin():
            row = await ReportRepository(session).get_in_case(case_id, report_id, for_update=True)
            if row is not None:
                row.status, row.error, row.updated_at = "failed", message, now()
        try:
            await jobs.update(job_id, status="failed", error={"message": message})
        except Exception as job_exc:  # Redis itself may be the broker that is down
            log.warning("case.report_job_update_failed", job_id=job_id, error=repr(job_exc))
        raise Unavailable(message, code="QUEUE_UNAVAILABLE", retry_after=retry_after) from exc
    log.info("case.report_requested", case_id=case_id, report_id=report_id, job_id=job_id)
    return ReportCreated(report_id=report_id, job_id=job_id, case_id=case_id)
