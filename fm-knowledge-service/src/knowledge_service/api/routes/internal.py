"""Service-to-service routes (never routed by the gateway): service tokens only (the
worker's case cleanup, acting for the case's owner); a user's own token is 403."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from fm_common.auth import ServicePrincipal
from knowledge_service.api.deps import BlobsDep, RedisDep, SessionDep, StoreDep
from knowledge_service.domain.documents import service

router = APIRouter(prefix="/internal/v1", tags=["internal"])


@router.delete(
    "/collections/case/{case_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        403: {"description": "Not a service token"},
        404: {"description": "The case's collection belongs to another user"},
    },
)
async def delete_case_collection(
    case_id: str,
    principal: ServicePrincipal,
    session: SessionDep,
    blobs: BlobsDep,
    store: StoreDep,
    redis: RedisDep,
) -> Response:
    """Drop a case's collection and documents (idempotent; the caller must own the case)."""
    await service.drop_case(session, case_id, principal.user_id, blobs, store, redis, strict=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
