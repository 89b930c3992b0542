"""Search over the caller's knowledge."""

from __future__ import annotations

from fastapi import APIRouter

from fm_common.auth import CurrentPrincipal
from fm_common.contracts.knowledge import SearchRequest, SearchResponse
from knowledge_service.api.deps import SearchDepsDep, SessionMakerDep
from knowledge_service.domain.search import service

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge"])


@router.post(
    "/search",
    response_model=SearchResponse,
    responses={
        401: {"description": "Missing or invalid token"},
        404: {"description": "The case is not the caller's"},
        503: {"description": "The vector store is down; retry after Retry-After"},
    },
)
async def search(
    body: SearchRequest, principal: CurrentPrincipal, maker: SessionMakerDep, deps: SearchDepsDep
) -> SearchResponse:
    """Semantic (default) or hybrid search over personal, global and case knowledge."""
    return await service.search(maker, principal, body, deps)
