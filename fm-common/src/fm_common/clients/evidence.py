"""Typed client of the evidence service (port 8005).

Uploads stream: the multipart body is produced chunk by chunk from bytes, a binary file
object or an async iterator of bytes, so a large file never sits whole in memory.
Downloads stream too (`open_content`). Every call carries the caller's bearer token
(the user's, or a worker's service token acting on behalf of the user): the evidence
service scopes every file to that user.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any

import httpx

from fm_common.clients.base import ServiceClient, log
from fm_common.contracts.evidence import (
    AnalysisStatus,
    AnalysisUpdate,
    DerivedEvidenceCreate,
    DerivedEvidenceSummary,
    EvidenceFile,
    EvidenceText,
    ExistingFiles,
    ExistingFilesQuery,
    ExtractedText,
    TextLayout,
    UploadedFileDetailsResponse,
    UploadedFilesList,
    UploadSource,
)
from fm_common.errors import GatewayTimeout, PayloadTooLarge, Unavailable

UploadBody = bytes | IO[bytes] | AsyncIterable[bytes]
CHUNK = 256 * 1024


def _quote(value: str) -> str:
    # The escaping browsers apply to multipart parameter values (WHATWG HTML).
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _known_size(body: UploadBody) -> int | None:
    if isinstance(body, bytes | bytearray | memoryview):
        return len(body)
    if hasattr(body, "fileno") and hasattr(body, "tell"):
        try:
            return os.fstat(body.fileno()).st_size - body.tell()  # type: ignore[union-attr]
        except (OSError, ValueError):
            return None
    return None


async def _chunks(body: UploadBody) -> AsyncIterator[bytes]:
    if isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]
    elif hasattr(body, "read"):
        while True:
            chunk = await asyncio.to_thread(body.read, CHUNK)  # type: ignore[union-attr]
            if not chunk:
                break
            yield chunk
    else:
        async for chunk in body:  # type: ignore[union-attr]
            if chunk:
                yield bytes(chunk)


class MultipartUpload:
    """A streaming multipart/form-data body: text fields first, then the one file part."""

    def __init__(
        self,
        fields: dict[str, str],
        filename: str,
        body: UploadBody,
        content_type: str = "application/octet-stream",
    ) -> None:
        self.boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"'
            f"\r\n\r\n".encode()
            + value.encode()
            + b"\r\n"
            for name, value in fields.items()
        )
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{_quote(filename)}"\r\nContent-Type: {content_type}\r\n\r\n'
        ).encode()
        self.head = head
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.body = body
        size = _known_size(body)
        self.content_length = None if size is None else len(head) + size + len(self.tail)

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": f"multipart/form-data; boundary={self.boundary}"}
        if self.content_length is not None:
            headers["Content-Length"] = str(self.content_length)
        return headers

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        async for chunk in _chunks(self.body):
            yield chunk
        yield self.tail


class EvidenceClient(ServiceClient):
    """Uploads, metadata, streamed content and deletion of evidence files."""

    service = "evidence"

    async def upload(
        self,
        case_id: str,
        body: UploadBody,
        filename: str,
        *,
        description: str | None = None,
        upload_source: UploadSource = "file_upload",
        uploaded_at_turn: int | None = None,
        source_url: str | None = None,
        content_type: str = "application/octet-stream",
        token: str | None = None,
        timeout: float | None = None,
    ) -> EvidenceFile:
        """Store a file in a case (streamed). A byte-identical file already in the case is
        returned with `duplicate_of` set instead of a second copy.

        Raises NotFound (no such case of this user), PayloadTooLarge, Unprocessable (empty
        file), an FMError 415 (type not accepted), Unavailable.
        """
        fields = {"case_id": case_id, "upload_source": upload_source}
        if description is not None:
            fields["description"] = description
        if uploaded_at_turn is not None:
            fields["uploaded_at_turn"] = str(uploaded_at_turn)
        if source_url is not None:
            fields["source_url"] = source_url
        multipart = MultipartUpload(fields, filename, body, content_type)
        try:
            resp = await self.request(
                "POST",
                "/api/v1/evidence",
                token=token,
                content=multipart.__aiter__(),
                headers=multipart.headers,
                timeout=timeout,
            )
        except httpx.WriteError as exc:
            # The service stops reading once a limit is crossed and closes the connection.
            raise PayloadTooLarge("The evidence service refused the upload.") from exc
        return EvidenceFile.model_validate_json(resp.content)

    async def get(self, file_id: str, *, token: str | None = None) -> EvidenceFile:
        return await self.get_model(f"/api/v1/evidence/{file_id}", EvidenceFile, token=token)

    @asynccontextmanager
    async def open_content(
        self, file_id: str, *, token: str | None = None
    ) -> AsyncIterator[httpx.Response]:
        """The content response, streaming: `async for chunk in resp.aiter_bytes()`."""
        url = f"{self.base_url}/api/v1/evidence/{file_id}/content"
        request = self.http.build_request("GET", url, headers=self._headers(token, None))
        try:
            resp = await self.http.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            log.warning("client.unavailable", service=self.service, url=url, error=repr(exc))
            raise Unavailable(
                "The evidence service is unavailable.",
                code="EVIDENCE_UNAVAILABLE",
                retry_after=self.retry_after,
            ) from exc
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(
                "The evidence service did not answer in time.", code="EVIDENCE_TIMEOUT"
            ) from exc
        try:
            if not resp.is_success:
                await resp.aread()
                self._check(resp)
            yield resp
        finally:
            await resp.aclose()

    async def read_content(
        self, file_id: str, *, max_bytes: int | None = None, token: str | None = None
    ) -> bytes:
        """The file's bytes; at most `max_bytes` of them when given (a prefix)."""
        parts: list[bytes] = []
        size = 0
        async with self.open_content(file_id, token=token) as resp:
            async for chunk in resp.aiter_bytes():
                parts.append(chunk)
                size += len(chunk)
                if max_bytes is not None and size >= max_bytes:
                    break
        data = b"".join(parts)
        return data if max_bytes is None else data[:max_bytes]

    async def list_case_files(
        self,
        case_id: str,
        *,
        limit: int = 50,
        offset: int = 0,
        sort_by: str = "uploaded_at_turn",
        sort_order: str = "desc",
        token: str | None = None,
    ) -> UploadedFilesList:
        params: dict[str, Any] = {
            "limit": limit,
            "offset": offset,
            "sort_by": sort_by,
            "sort_order": sort_order,
        }
        return await self.get_model(
            f"/api/v1/cases/{case_id}/uploaded-files",
            UploadedFilesList,
            params=params,
            token=token,
        )

    async def get_case_file(
        self, case_id: str, file_id: str, *, token: str | None = None
    ) -> UploadedFileDetailsResponse:
        return await self.get_model(
            f"/api/v1/cases/{case_id}/uploaded-files/{file_id}",
            UploadedFileDetailsResponse,
            token=token,
        )

    async def delete(self, file_id: str, *, token: str | None = None) -> None:
        """Delete one file (404 when it is not the caller's or does not exist)."""
        await self.request("DELETE", f"/api/v1/evidence/{file_id}", token=token)

    async def delete_case_files(self, case_id: str, *, token: str | None = None) -> None:
        """Delete every file of the caller's case; idempotent (internal route)."""
        await self.request("DELETE", f"/internal/v1/cases/{case_id}/files", token=token)

    async def set_analysis(
        self,
        file_id: str,
        analysis_status: AnalysisStatus,
        *,
        summary: str | None = None,
        token: str | None = None,
    ) -> EvidenceFile:
        """The indexer reports a file's analysis status (and summary) (internal route)."""
        body = AnalysisUpdate(analysis_status=analysis_status, summary=summary)
        return await self.send_model(
            "PUT",
            f"/internal/v1/evidence/{file_id}/analysis",
            EvidenceFile,
            json=body.model_dump(mode="json"),
            token=token,
        )

    async def set_text(
        self,
        file_id: str,
        text: str,
        *,
        layout: TextLayout | None = None,
        token: str | None = None,
    ) -> None:
        """The worker stores the text it read from an image or office document."""
        body = ExtractedText(text=text, layout=layout)
        await self.request(
            "PUT",
            f"/internal/v1/evidence/{file_id}/text",
            json=body.model_dump(mode="json"),
            token=token,
        )

    async def add_derived(
        self, file_id: str, body: DerivedEvidenceCreate, *, token: str | None = None
    ) -> DerivedEvidenceSummary:
        """Record what a turn concluded from the file (internal route; idempotent by
        evidence_id)."""
        return await self.send_model(
            "POST",
            f"/internal/v1/evidence/{file_id}/derived",
            DerivedEvidenceSummary,
            json=body.model_dump(mode="json"),
            token=token,
        )

    async def read_text(self, file_id: str, *, token: str | None = None) -> EvidenceText:
        """The text read from an image or office document (status ready, pending,
        failed, or none for a text file)."""
        return await self.get_model(f"/api/v1/evidence/{file_id}/text", EvidenceText, token=token)

    async def wait_text(
        self,
        file_id: str,
        *,
        timeout: float,
        interval: float = 0.25,
        token: str | None = None,
    ) -> EvidenceText:
        """read_text until it is no longer pending or `timeout` seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await self.read_text(file_id, token=token)
            if found.status != "pending" or loop.time() + interval > deadline:
                return found
            await asyncio.sleep(interval)
            interval = min(1.0, interval * 1.5)

    async def existing(self, file_ids: list[str], *, token: str | None = None) -> ExistingFiles:
        """Which of `file_ids` (at most MAX_EXISTING_IDS) are still files of the user the
        service token acts for (internal route, service tokens only)."""
        body = ExistingFilesQuery(file_ids=file_ids)
        return await self.send_model(
            "POST",
            "/internal/v1/evidence/existing",
            ExistingFiles,
            json=body.model_dump(mode="json"),
            token=token,
        )
