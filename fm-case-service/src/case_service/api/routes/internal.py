"""Internal routes (never routed by the gateway): the agent service and the worker.

They take service tokens only (the agent's or the worker's, acting on behalf of the user;
a user's own token is 403 SERVICE_ONLY: issue 16, a user's token on this port forged an
assistant message; ADR 0135) and scope every answer to that user.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from case_service.api.deps import JobsDep, ReadSessionDep, SessionDep
from case_service.domain.cases import internal as internal_service
from case_service.domain.cases import service
from case_service.domain.reports import service as reports_service
from fm_common.auth import ServicePrincipal
from fm_common.contracts.case import (
    CaseContext,
    Report,
    ReportStoreRequest,
    TurnAppendRequest,
    TurnAppendResult,
)

router = APIRouter(prefix="/internal/v1/cases/{case_id}", tags=["internal"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "Not a service token (SERVICE_ONLY)"},
    404: {"description": "No such case of the caller"},
}


@router.get("", response_model=CaseContext, responses=_NOT_FOUND)
async def get_case_context(
    case_id: str,
    principal: ServicePrincipal,
    session: ReadSessionDep,
    history: Annotated[int, Query(ge=0, le=200)] = 0,
) -> CaseContext:
    """The case, its state and its investigation (and its last `history` messages)."""
    return await internal_service.case_context(session, principal.user_id, case_id, history=history)


@router.post(
    "/turns",
    response_model=TurnAppendResult,
    responses={**_NOT_FOUND, 409: {"description": "INVALID_TRANSITION"}},
)
async def append_turn(
    case_id: str, body: TurnAppendRequest, principal: ServicePrincipal, session: SessionDep
) -> TurnAppendResult:
    """Store a user message, the answer and the investigation update in one transaction."""
    return await service.append_turn(session, principal.user_id, case_id, body)


@router.put("/reports/{report_id}", response_model=Report, responses=_NOT_FOUND)
async def store_report(
    case_id: str,
    report_id: str,
    body: ReportStoreRequest,
    principal: ServicePrincipal,
    session: SessionDep,
    jobs: JobsDep,
) -> Report:
    """The worker stores a generated report (status, markdown, error)."""
    return await reports_service.store_report(
        session, jobs, principal.user_id, case_id, report_id, body
    )
