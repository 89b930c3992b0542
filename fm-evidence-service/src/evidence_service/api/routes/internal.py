"""/internal/v1/...: called by other services (never routed by the gateway).

Every route takes service tokens only (the worker's or the agent's, acting on behalf of
the user; a user's own token is 403 `SERVICE_ONLY`: issue 16, ADR 0135). All apply the
same ownership rules as the public routes.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from evidence_service.api.deps import EvidenceServiceDep
from fm_common.auth import ServicePrincipal
from fm_common.contracts.evidence import (
    AnalysisUpdate,
    DerivedEvidenceCreate,
    DerivedEvidenceSummary,
    EvidenceFile,
    ExistingFiles,
    ExistingFilesQuery,
    ExtractedText,
)

router = APIRouter(prefix="/internal/v1", tags=["internal"])

_ERROR = {"description": "Error", "content": {"application/json": {}}}


@router.delete(
    "/cases/{case_id}/files",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={401: _ERROR, 403: _ERROR, 503: _ERROR},
)
async def delete_case_files(
    case_id: str, principal: ServicePrincipal, service: EvidenceServiceDep
) -> None:
    """Delete every file of the caller's case (idempotent; used on case deletion)."""
    await service.delete_case_files(principal, case_id)


@router.put(
    "/evidence/{file_id}/analysis", responses={401: _ERROR, 403: _ERROR, 404: _ERROR, 422: _ERROR}
)
async def set_analysis(
    file_id: str, body: AnalysisUpdate, principal: ServicePrincipal, service: EvidenceServiceDep
) -> EvidenceFile:
    """The indexer reports a file's analysis status and summary."""
    return await service.set_analysis(principal, file_id, body)


@router.put(
    "/evidence/{file_id}/text",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={401: _ERROR, 403: _ERROR, 404: _ERROR, 413: _ERROR, 422: _ERROR},
)
async def set_text(
    file_id: str, body: ExtractedText, principal: ServicePrincipal, service: EvidenceServiceDep
) -> None:
    """The worker stores the text it read from an image (OCR, with word boxes) or an
    office document; GET /api/v1/evidence/{id}/text serves it."""
    await service.set_text(principal, file_id, body)


@router.post(
    "/evidence/{file_id}/derived",
    responses={401: _ERROR, 403: _ERROR, 404: _ERROR, 409: _ERROR, 422: _ERROR},
)
async def add_derived(
    file_id: str,
    body: DerivedEvidenceCreate,
    principal: ServicePrincipal,
    service: EvidenceServiceDep,
) -> DerivedEvidenceSummary:
    """The agent records what a turn concluded from the file (idempotent by evidence_id)."""
    return await service.add_derived(principal, file_id, body)


@router.post(
    "/evidence/existing",
    responses={
        401: _ERROR,
        403: {"description": "Not a service token", "content": {"application/json": {}}},
        422: _ERROR,
    },
)
async def existing_files(
    body: ExistingFilesQuery, principal: ServicePrincipal, service: EvidenceServiceDep
) -> ExistingFiles:
    """Which of these file ids are still files of the user the service token acts for."""
    return await service.existing_files(principal, body.file_ids)
