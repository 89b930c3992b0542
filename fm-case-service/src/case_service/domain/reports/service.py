"""Reports of a case: listed, read, stored back by the worker (internal route), and their
jobs. Requesting one (a job, a commit, then the broker) is in `flows.py`."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from case_service.domain.cases.service import load_case, now
from case_service.domain.reports.models import Report as ReportRow
from case_service.domain.reports.repository import ReportRepository
from fm_common.contracts.case import (
    JobStatusResponse,
    Report,
    ReportListResponse,
    ReportStoreRequest,
    ReportSummary,
)
from fm_common.errors import NotFound
from fm_common.jobs import JobStore

log = structlog.get_logger(__name__)

JOB_KIND = "postmortem"


def _summary(row: ReportRow) -> ReportSummary:
    return ReportSummary(
        report_id=row.id,
        case_id=row.case_id,
        report_type=row.report_type,  # type: ignore[arg-type]
        status=row.status,  # type: ignore[arg-type]
        job_id=row.job_id,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _full(row: ReportRow) -> Report:
    return Report(**_summary(row).model_dump(), content=row.content)


def report_not_found(report_id: str) -> NotFound:
    return NotFound(f"Report {report_id} was not found.", code="REPORT_NOT_FOUND")


async def list_reports(session: AsyncSession, owner_id: str, case_id: str) -> ReportListResponse:
    await load_case(session, owner_id, case_id)
    rows = await ReportRepository(session).list_for_case(case_id)
    return ReportListResponse(reports=[_summary(r) for r in rows], total_count=len(rows))


async def get_report(session: AsyncSession, owner_id: str, case_id: str, report_id: str) -> Report:
    await load_case(session, owner_id, case_id)
    row = await ReportRepository(session).get_in_case(case_id, report_id)
    if row is None:
        raise report_not_found(report_id)
    return _full(row)


async def store_report(
    session: AsyncSession,
    jobs: JobStore,
    owner_id: str,
    case_id: str,
    report_id: str,
    body: ReportStoreRequest,
) -> Report:
    """The worker stores a generated report (or its failure)."""
    await load_case(session, owner_id, case_id)
    row = await ReportRepository(session).get_in_case(case_id, report_id, for_update=True)
    if row is None:
        raise report_not_found(report_id)
    row.status = body.status
    if body.content is not None:
        row.content = body.content
    row.error = body.error if body.status == "failed" else None
    row.updated_at = now()
    await session.flush()
    if row.job_id and body.status in ("completed", "failed", "running"):
        fields: dict[str, Any] = {"status": body.status}
        if body.status == "completed":
            fields["result"] = {"report_id": report_id, "case_id": case_id, "status": "completed"}
            fields["progress"] = 1.0
        elif body.status == "failed":
            fields["error"] = {"message": body.error or "The report could not be generated."}
        await jobs.update(row.job_id, **fields)
    log.info("case.report_stored", case_id=case_id, report_id=report_id, status=body.status)
    return _full(row)


async def get_report_job(
    session: AsyncSession, jobs: JobStore, owner_id: str, case_id: str, job_id: str
) -> JobStatusResponse:
    await load_case(session, owner_id, case_id)
    record = await jobs.get_owned(job_id, owner_id)
    if record is None or record.kind != JOB_KIND or record.payload.get("case_id") != case_id:
        raise NotFound(f"Job {job_id} was not found.", code="JOB_NOT_FOUND")
    return JobStatusResponse(
        job_id=record.job_id,
        status=record.status,
        progress=record.progress,
        result=record.result,
        error=record.error.model_dump() if record.error else None,
    )
