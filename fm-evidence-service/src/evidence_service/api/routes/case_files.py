"""/api/v1/cases/{case_id}/uploaded-files: the case's files in the reference's shapes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from evidence_service.api.deps import EvidenceServiceDep
from fm_common.auth import CurrentPrincipal
from fm_common.contracts.evidence import UploadedFileDetailsResponse, UploadedFilesList

router = APIRouter(prefix="/api/v1/cases/{case_id}/uploaded-files", tags=["cases"])

_ERROR = {"description": "Error", "content": {"application/json": {}}}


@router.get("", responses={401: _ERROR, 404: _ERROR, 503: _ERROR})
async def list_uploaded_files(
    case_id: str,
    principal: CurrentPrincipal,
    service: EvidenceServiceDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Maximum number of files")] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="Files to skip")] = 0,
    sort_by: Literal["uploaded_at_turn", "filename", "size", "uploaded_at"] = "uploaded_at_turn",
    sort_order: Literal["asc", "desc"] = "desc",
) -> UploadedFilesList:
    """The case's uploaded files, a page at a time."""
    return await service.list_case_files(
        principal, case_id, limit=limit, offset=offset, sort_by=sort_by, sort_order=sort_order
    )


@router.get("/{file_id}", responses={401: _ERROR, 404: _ERROR})
async def get_uploaded_file_details(
    case_id: str, file_id: str, principal: CurrentPrincipal, service: EvidenceServiceDep
) -> UploadedFileDetailsResponse:
    """One uploaded file of the case, with the evidence derived from it."""
    return await service.get_case_file(principal, case_id, file_id)
