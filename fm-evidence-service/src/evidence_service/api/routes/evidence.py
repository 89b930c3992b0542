"""/api/v1/evidence: upload, metadata, content, delete (API.md "Evidence")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Request, Response, status
from fastapi.responses import StreamingResponse

from evidence_service.api.deps import EvidenceServiceDep, UploadsDep
from evidence_service.domain.evidence.flows import queue_unindex
from evidence_service.domain.evidence.service import serving_type
from fm_common.auth import CurrentPrincipal
from fm_common.blobs import BlobReader
from fm_common.contracts.evidence import EvidenceFile, EvidenceText

router = APIRouter(prefix="/api/v1/evidence", tags=["evidence"])

READ_CHUNK = 256 * 1024

_ERROR = {"description": "Error", "content": {"application/json": {}}}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "case_id"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "case_id": {"type": "string"},
                        "description": {"type": "string", "maxLength": 2000},
                        "upload_source": {"type": "string", "default": "file_upload"},
                        "uploaded_at_turn": {"type": "integer", "minimum": 0, "default": 0},
                        "source_url": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EvidenceFile,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": EvidenceFile, "description": "A byte-identical file already exists "
              "in this case: that file, with duplicate_of"},
        400: _ERROR, 401: _ERROR, 404: _ERROR, 413: _ERROR, 415: _ERROR, 422: _ERROR,
        503: _ERROR, 507: _ERROR,
    },
)  # fmt: skip
async def upload_evidence(
    request: Request, response: Response, principal: CurrentPrincipal, uploads: UploadsDep
) -> EvidenceFile:
    """Upload a file to a case (multipart `file`, `case_id`, `description?`)."""
    result = await uploads.upload(
        principal,
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        request.stream(),
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return result.file


@router.get("/{file_id}", responses={401: _ERROR, 404: _ERROR})
async def get_evidence(
    file_id: str, principal: CurrentPrincipal, service: EvidenceServiceDep
) -> EvidenceFile:
    """An uploaded file's metadata."""
    return await service.get_file(principal, file_id)


@router.get("/{file_id}/text", responses={401: _ERROR, 404: _ERROR})
async def get_evidence_text(
    file_id: str, principal: CurrentPrincipal, service: EvidenceServiceDep
) -> EvidenceText:
    """The text the worker read from an image (OCR, with each word's box) or an office
    document: `ready`, `pending` (not read yet), `failed`, or `none` (a text file)."""
    return await service.get_text(principal, file_id)


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The bytes"},
        401: _ERROR,
        404: _ERROR,
    },
)
async def get_evidence_content(
    file_id: str, principal: CurrentPrincipal, service: EvidenceServiceDep
) -> StreamingResponse:
    """The file's bytes, as an attachment (never rendered inline)."""
    meta, handle, size = await service.open_content(principal, file_id)
    return StreamingResponse(
        _read(handle),
        media_type=serving_type(meta.content_type),
        headers={
            "Content-Length": str(size),
            "Content-Disposition": content_disposition(meta.filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
            "ETag": f'"{meta.content_hash}"',
        },
    )


@router.delete(
    "/{file_id}", status_code=status.HTTP_204_NO_CONTENT, responses={401: _ERROR, 404: _ERROR}
)
async def delete_evidence(
    file_id: str,
    request: Request,
    background: BackgroundTasks,
    principal: CurrentPrincipal,
    service: EvidenceServiceDep,
) -> None:
    """Delete a file (its metadata, its bytes and its indexed text)."""
    meta = await service.get_file(principal, file_id)
    if await service.delete_file(principal, file_id):
        # The session commits before the response (DbSession); background work runs after.
        background.add_task(
            queue_unindex,
            request.app.state.settings,
            request.app.state.sessionmaker,
            meta.file_id,
            meta.case_id,
            principal.user_id,
        )


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the UTF-8 name (RFC 6266 / 5987)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_"
                       for c in filename) or "download"  # fmt: skip
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def _read(handle: BlobReader) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)
