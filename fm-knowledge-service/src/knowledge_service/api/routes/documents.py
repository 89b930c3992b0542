"""Knowledge documents: upload (202 + job), list, get, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status

from fm_common.auth import CurrentPrincipal
from fm_common.contracts.knowledge import (
    DocumentAccepted,
    DocumentPage,
    DocumentStatus,
    KnowledgeDocument,
    Scope,
    split_tags,
)
from knowledge_service.api.deps import (
    BlobsDep,
    HttpDep,
    RedisDep,
    SessionDep,
    SessionMakerDep,
    SettingsDep,
    StoreDep,
)
from knowledge_service.domain.documents import service
from knowledge_service.domain.documents.flows import UploadForm, upload_document

router = APIRouter(prefix="/api/v1/knowledge", tags=["knowledge"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid token"},
    404: {"description": "Not found (or not yours)"},
    503: {"description": "A dependency is down; retry after Retry-After"},
}


@router.post(
    "/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DocumentAccepted,
    responses={
        **ERRORS,
        403: {"description": "Global scope needs the admin role"},
        413: {"description": "File over the size limit"},
        415: {"description": "File type not accepted"},
        422: {"description": "Invalid form or empty file"},
        429: {"description": "Too many of the caller's documents wait for processing"},
    },
)
async def upload(
    response: Response,
    principal: CurrentPrincipal,
    maker: SessionMakerDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    redis: RedisDep,
    http: HttpDep,
    file: Annotated[UploadFile, File()],
    title: Annotated[str, Form(min_length=1, max_length=500)],
    document_type: Annotated[str, Form(min_length=1, max_length=64)],
    scope: Annotated[Scope, Form()] = "personal",
    case_id: Annotated[str | None, Form(min_length=1, max_length=200)] = None,
    category: Annotated[str | None, Form(max_length=200)] = None,
    tags: Annotated[str | None, Form(max_length=2000)] = None,
    description: Annotated[str | None, Form(max_length=5000)] = None,
    source_url: Annotated[str | None, Form(max_length=2000)] = None,
) -> DocumentAccepted:
    """Upload a document; it is processed in the background (poll the job's Location)."""
    form = UploadForm(
        title=title.strip() or title,
        document_type=document_type.strip(),
        scope=scope,
        case_id=case_id,
        category=category or None,
        tags=[t[:100] for t in split_tags(tags)][:50],
        description=description or None,
        source_url=source_url or None,
    )
    accepted = await upload_document(
        maker=maker,
        redis=redis,
        http=http,
        settings=settings,
        blobs=blobs,
        principal=principal,
        upload=file,
        form=form,
    )
    response.headers["Location"] = accepted.job.location
    return accepted


@router.get("/documents", response_model=DocumentPage, responses=ERRORS)
async def list_documents(
    principal: CurrentPrincipal,
    session: SessionDep,
    scope: Annotated[Scope | None, Query()] = None,
    document_type: Annotated[str | None, Query(max_length=64)] = None,
    tags: Annotated[str | None, Query(max_length=2000)] = None,
    q: Annotated[str | None, Query(max_length=500)] = None,
    case_id: Annotated[str | None, Query(max_length=200)] = None,
    state: Annotated[DocumentStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> DocumentPage:
    """Documents the caller may read: own personal and case ones, and global ones;
    `status` narrows to those still processing, processed or failed."""
    return await service.list_documents(
        session,
        principal,
        scope=scope,
        document_type=document_type,
        tags=split_tags(tags),
        q=q or None,
        case_id=case_id,
        status=state,
        limit=limit,
        offset=offset,
    )


@router.get("/documents/{document_id}", response_model=KnowledgeDocument, responses=ERRORS)
async def get_document(
    document_id: str, principal: CurrentPrincipal, session: SessionDep, blobs: BlobsDep
) -> KnowledgeDocument:
    """One document with its status, error, chunk count and extracted text."""
    return await service.get_document(session, principal, document_id, blobs)


@router.delete(
    "/documents/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**ERRORS, 403: {"description": "Global documents need the admin role"}},
)
async def delete_document(
    document_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    blobs: BlobsDep,
    store: StoreDep,
    redis: RedisDep,
) -> Response:
    """Delete a document; its passages are gone from every later search."""
    await service.delete_document(session, principal, document_id, blobs, store, redis)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
