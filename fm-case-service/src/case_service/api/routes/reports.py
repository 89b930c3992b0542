"""Report routes: request a post-mortem (202 + job Location), list, read, poll the job."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from case_service.api.deps import (
    CurrentPrincipal,
    JobsDep,
    MakerDep,
    ReadSessionDep,
    SettingsDep,
)
from case_service.domain.reports import flows, service
from fm_common.contracts.case import (
    JobStatusResponse,
    Report,
    ReportCreated,
    ReportCreateRequest,
    ReportListResponse,
)

router = APIRouter(prefix="/api/v1/cases/{case_id}/reports", tags=["reports"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not authenticated"},
    404: {"description": "No such case (or report/job) of the caller"},
}


@router.post(
    "",
    status_code=202,
    response_model=ReportCreated,
    responses={**_NOT_FOUND, 503: {"description": "The job queue is unavailable"}},
)
async def request_report(
    case_id: str,
    principal: CurrentPrincipal,
    maker: MakerDep,
    jobs: JobsDep,
    settings: SettingsDep,
    body: ReportCreateRequest | None = Body(default=None),
) -> JSONResponse:
    """Queue a post-mortem; poll the job at Location."""
    created = await flows.request_report(
        maker,
        jobs,
        settings.redis_url,
        principal.user_id,
        case_id,
        body or ReportCreateRequest(),
        retry_after=settings.retry_after_seconds,
    )
    return JSONResponse(
        created.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/api/v1/cases/{case_id}/reports/jobs/{created.job_id}"},
    )


@router.get("", response_model=ReportListResponse, responses=_NOT_FOUND)
async def list_reports(
    case_id: str, principal: CurrentPrincipal, session: ReadSessionDep
) -> ReportListResponse:
    """The case's reports, newest first (without content)."""
    return await service.list_reports(session, principal.user_id, case_id)


@router.get("/jobs/{job_id}", response_model=JobStatusResponse, responses=_NOT_FOUND)
async def get_report_job(
    case_id: str, job_id: str, principal: CurrentPrincipal, session: ReadSessionDep, jobs: JobsDep
) -> JobStatusResponse:
    """The status of a report job: `{status, result?, error?}`."""
    return await service.get_report_job(session, jobs, principal.user_id, case_id, job_id)


@router.get("/{report_id}", response_model=Report, responses=_NOT_FOUND)
async def get_report(
    case_id: str, report_id: str, principal: CurrentPrincipal, session: ReadSessionDep
) -> Report:
    """One report with its markdown content."""
    return await service.get_report(session, principal.user_id, case_id, report_id)
