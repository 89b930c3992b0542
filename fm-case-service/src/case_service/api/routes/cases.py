"""Public case routes (API.md "Cases"): thin handlers, one service call each."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from case_service.api.deps import (
    CleanupEnqueueDep,
    CurrentPrincipal,
    EvidenceDep,
    IdempotencyKeyDep,
    IfMatchDep,
    MakerDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
)
from case_service.domain.cases import flows, service
from case_service.domain.cases.views import CaseUIResponse, case_ui
from fm_common.contracts.case import (
    CaseCreateRequest,
    CaseDetail,
    CaseListResponse,
    CaseMessagesResponse,
    CaseSource,
    CaseState,
    CaseSummary,
    CaseTransitionRequest,
    CaseUpdateRequest,
)

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])

_ERR: dict[int | str, dict[str, Any]] = {401: {"description": "Not authenticated"}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **_ERR,
    404: {"description": "No such case of the caller"},
}

Limit = Annotated[int, Query(ge=1, le=100, description="Items per page")]
# Bounded so a huge number is a 422, not a database integer overflow.
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Number of items to skip")]


@router.get("", response_model=CaseListResponse, responses=_ERR)
async def list_cases(
    principal: CurrentPrincipal,
    session: ReadSessionDep,
    state: CaseState | None = None,
    source: CaseSource | None = None,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=r"^[^\x00]*$", description="Title/description text"),
    ] = None,
    include_archived: bool = False,
    include_empty: bool = True,
    team_id: Annotated[str | None, Query(description="Ignored: no teams self-hosted")] = None,  # noqa: ARG001
    limit: Limit = 50,
    offset: Offset = 0,
) -> CaseListResponse:
    """List the caller's cases, newest activity first."""
    return await service.list_cases(
        session,
        principal.user_id,
        state=state,
        source=source,
        q=q,
        include_archived=include_archived,
        include_empty=include_empty,
        limit=limit,
        offset=offset,
    )


@router.post(
    "",
    status_code=201,
    response_model=CaseSummary,
    responses={**_ERR, 422: {"description": "Invalid body or Idempotency-Key"}},
)
async def create_case(
    body: CaseCreateRequest,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> JSONResponse:
    """Open a case (state inquiry); a repeated Idempotency-Key returns the first answer."""
    status, answer, replayed = await service.open_case(
        session,
        principal.user_id,
        body,
        organization_id=settings.organization_id,
        idempotency_key=idempotency_key,
    )
    headers = {"Location": f"/api/v1/cases/{answer['case_id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(answer, status_code=status, headers=headers)


@router.get("/{case_id}", response_model=CaseDetail, responses=_NOT_FOUND)
async def get_case(
    case_id: str, principal: CurrentPrincipal, session: ReadSessionDep, response: Response
) -> CaseDetail:
    """Read one case (ETag is its version)."""
    detail = await service.get_case(session, principal.user_id, case_id)
    response.headers["ETag"] = f'"{detail.version}"'
    return detail


@router.put(
    "/{case_id}",
    response_model=CaseDetail,
    responses={**_NOT_FOUND, 409: {"description": "Stale If-Match version or invalid state"}},
)
async def update_case(
    case_id: str,
    body: CaseUpdateRequest,
    principal: CurrentPrincipal,
    session: SessionDep,
    if_match: IfMatchDep,
    response: Response,
) -> CaseDetail:
    """Change title/description; with If-Match, only when the version still matches."""
    detail = await service.update_case(session, principal.user_id, case_id, body, if_match=if_match)
    response.headers["ETag"] = f'"{detail.version}"'
    return detail


@router.delete(
    "/{case_id}",
    status_code=204,
    response_class=Response,
    responses={**_ERR, 503: {"description": "The case database is unavailable"}},
)
async def delete_case(
    case_id: str, principal: CurrentPrincipal, maker: MakerDep, send: CleanupEnqueueDep
) -> Response:
    """Delete the case and everything of it (idempotent; files/collection dropped later)."""
    await flows.delete_case(maker, send, principal.user_id, case_id)
    return Response(status_code=204)


@router.post(
    "/{case_id}/transition",
    response_model=CaseDetail,
    responses={**_NOT_FOUND, 409: {"description": "INVALID_TRANSITION (valid_next_states)"}},
)
async def transition_case(
    case_id: str, body: CaseTransitionRequest, principal: CurrentPrincipal, session: SessionDep
) -> CaseDetail:
    """Move the case along its state machine."""
    return await service.transition_case(session, principal.user_id, case_id, body)


@router.post("/{case_id}/archive", response_model=CaseDetail, responses=_NOT_FOUND)
async def archive_case(
    case_id: str, principal: CurrentPrincipal, session: SessionDep
) -> CaseDetail:
    """Hide the case from the default list."""
    return await service.archive_case(session, principal.user_id, case_id)


@router.get("/{case_id}/messages", response_model=CaseMessagesResponse, responses=_NOT_FOUND)
async def list_messages(
    case_id: str,
    principal: CurrentPrincipal,
    session: ReadSessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    include_debug: bool = False,  # noqa: ARG001 (reference parameter; no debug info)
) -> CaseMessagesResponse:
    """The conversation of the case, oldest first."""
    return await service.list_messages(
        session, principal.user_id, case_id, limit=limit, offset=offset
    )


@router.get("/{case_id}/ui", response_model=CaseUIResponse, responses=_NOT_FOUND)
async def get_case_ui(
    case_id: str, principal: CurrentPrincipal, session: ReadSessionDep, evidence: EvidenceDep
) -> Any:
    """The side-panel view of the case, shaped by its state."""
    return await case_ui(session, principal.user_id, case_id, evidence)
