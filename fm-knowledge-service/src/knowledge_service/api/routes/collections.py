"""Collections (admin): their embedding models, and re-indexing one for the configured model."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from fm_common.auth import AdminPrincipal
from fm_common.contracts.knowledge import CollectionList, ReindexAccepted
from knowledge_service.api.deps import RedisDep, SettingsDep, StoreDep
from knowledge_service.domain.collections import service
from knowledge_service.domain.collections.flows import request_reindex

router = APIRouter(prefix="/api/v1/knowledge/collections", tags=["knowledge"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid token"},
    403: {"description": "Needs the admin role"},
    503: {"description": "A dependency is down; retry after Retry-After"},
}


@router.get("", response_model=CollectionList, responses=ERRORS)
async def list_collections(
    _: AdminPrincipal,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> CollectionList:
    """Collections with the embedding model each holds and its chunk count (`current`
    false: searches skip it until it is re-indexed)."""
    return await asyncio.to_thread(service.list_collections, store, limit=limit, offset=offset)


@router.post(
    "/{collection}/reindex",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReindexAccepted,
    responses={
        **ERRORS,
        404: {"description": "No such collection"},
        409: {"description": "A re-index of this collection is already queued or running"},
    },
)
async def reindex_collection(
    response: Response,
    principal: AdminPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    redis: RedisDep,
    collection: Annotated[str, Path(min_length=1, max_length=210)],
) -> ReindexAccepted:
    """Rebuild a collection for the configured embedding model in the background (poll
    the job's Location)."""
    accepted = await request_reindex(
        redis=redis, store=store, settings=settings, principal=principal, collection=collection
    )
    response.headers["Location"] = accepted.job.location
    return accepted
