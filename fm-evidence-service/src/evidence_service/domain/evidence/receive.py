"""Receive a multipart upload as a stream: the file part goes straight to a temp file.

The request body is fed chunk by chunk to python-multipart's streaming parser; the file
part's bytes are hashed and written as they arrive (in batches, off the event loop), so
memory stays small whatever the size. Limits are enforced while reading: the declared
Content-Length first, then the running size (413 the moment it is crossed, the rest is
never read), the type of the first bytes (415 before the rest is stored), and NUL bytes
later in a text file. Any failure drops the temp file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from evidence_service.config import Settings
from evidence_service.domain.evidence.content import (
    Detected,
    EmptyFile,
    UnsupportedType,
    check_type,
    detect,
    sanitize_filename,
)
from evidence_service.domain.evidence.storage import FileStore, TempFile, storage_error
from fm_common.errors import BadRequest, PayloadTooLarge, Unprocessable

log = structlog.get_logger("evidence_service.receive")

WRITE_BATCH = 1024 * 1024
SAMPLE_BYTES = 64 * 1024
MAX_FIELDS = 16
MAX_HEADER_BYTES = 8192
FILE_FIELD = "file"


class ClientGone(BadRequest):
    code, detail = "CLIENT_DISCONNECTED", "The client disconnected before the upload ended."


@dataclass
class ReceivedFile:
    """A fully received file part, still in its temp file."""

    temp: TempFile
    filename: str
    content_type: str
    detected: Detected
    sample: bytes


@dataclass
class ReceivedForm:
    fields: dict[str, str]
    file: ReceivedFile


@dataclass
class _FilePart:
    temp: TempFile
    raw_filename: str
    retry_after: int = 5
    head: bytearray = field(default_factory=bytearray)
    sample: bytearray = field(default_factory=bytearray)
    # Chunks not yet written, kept as received (no copying into one buffer).
    pending: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0

    def queue(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_bytes += len(data)

    size: int = 0
    detected: Detected | None = None
    content_type: str = ""
    # The batch being written in a worker thread while the next one is parsed.
    inflight: asyncio.Future[None] | None = None

    @property
    def filename(self) -> str:
        return sanitize_filename(self.raw_filename)

    async def settle(self) -> None:
        """Wait for the batch in flight; its disk error surfaces here."""
        if self.inflight is not None:
            inflight, self.inflight = self.inflight, None
            try:
                await inflight
            except OSError as exc:
                raise storage_error(exc, self.retry_after) from exc

    def drop(self) -> None:
        """Abandon the upload: no error of a batch in flight goes unread; drop the file."""
        if self.inflight is not None:
            self.inflight.add_done_callback(_consume)
            self.inflight = None
        self.temp.abort(wait=False)


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


@dataclass
class _Form:
    """What has been parsed so far."""

    fields: dict[str, str] = field(default_factory=dict)
    done: ReceivedFile | None = None
    current: _FilePart | bytearray | None = None
    name: str = ""
    ended: bool = False


class _Events:
    """python-multipart callbacks turned into a list of events per fed chunk."""

    def __init__(self, boundary: bytes) -> None:
        self.events: list[tuple[str, Any]] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = bytearray()
        self._value = bytearray()
        self.oversized_header = False
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_bytes(self._field, d[s:e]),
            "on_header_value": lambda d, s, e: self._header_bytes(self._value, d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self.events.append(("headers", self._headers)),
            "on_part_data": lambda d, s, e: self.events.append(("data", bytes(d[s:e]))),
            "on_part_end": lambda: self.events.append(("part_end", None)),
            "on_end": lambda: self.events.append(("end", None)),
        }
        self.parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]

    def _part_begin(self) -> None:
        self._headers = []

    def _header_bytes(self, into: bytearray, data: bytes) -> None:
        # Part headers are small; a huge one is refused, never accumulated.
        if len(into) + len(data) > MAX_HEADER_BYTES or len(self._headers) > 16:
            self.oversized_header = True
            return
        into.extend(data)

    def _header_end(self) -> None:
        self._headers.append((bytes(self._field).lower(), bytes(self._value)))
        self._field.clear()
        self._value.clear()

    def feed(self, chunk: bytes) -> list[tuple[str, Any]]:
        self.events = []
        try:
            self.parser.write(chunk)
        except MultipartParseError as exc:
            raise BadRequest(
                "The multipart body is malformed.", code="MALFORMED_MULTIPART"
            ) from exc
        if self.oversized_header:
            raise BadRequest("A multipart part header is too large.", code="MALFORMED_MULTIPART")
        return self.events


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data request, or 415 for any other body."""
    ctype, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise UnsupportedType(
            "Send the upload as multipart/form-data with a 'file' part and a 'case_id' field.",
            code="MULTIPART_REQUIRED",
        )
    return boundary


class UploadReceiver:
    """Reads one upload request body; `on_field` sees each text field when it ends."""

    def __init__(
        self,
        settings: Settings,
        store: FileStore,
        on_field: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.on_field = on_field

    @property
    def max_body_bytes(self) -> int:
        """The file's limit plus room for the form fields and the multipart framing."""
        overhead = MAX_FIELDS * (self.settings.max_field_bytes + 2 * MAX_HEADER_BYTES) + 65536
        return self.settings.max_file_bytes + overhead

    def check_declared_length(self, content_length: str | None) -> None:
        if content_length is None:
            return
        try:
            declared = int(content_length)
        except ValueError:
            raise BadRequest("Content-Length is not a number.") from None
        if declared > self.max_body_bytes:
            raise self._too_large()

    def _too_large(self) -> PayloadTooLarge:
        limit = self.settings.max_file_bytes
        return PayloadTooLarge(
            f"The file is larger than the limit of {limit} bytes ({limit / 1048576:.1f} MiB).",
            code="FILE_TOO_LARGE",
            extra={"max_file_bytes": limit},
        )

    async def receive(
        self, content_type: str | None, content_length: str | None, body: AsyncIterator[bytes]
    ) -> ReceivedForm:
        """Parse the whole body; the file is in a temp file the caller places or aborts."""
        self.check_declared_length(content_length)
        events = _Events(multipart_boundary(content_type))
        form = _Form()
        try:
            received = 0
            try:
                async for chunk in body:
                    # Bytes outside any part (preamble, epilogue) count too.
                    received += len(chunk)
                    if received > self.max_body_bytes:
                        raise self._too_large()
                    for kind, value in events.feed(chunk):
                        await self._event(form, kind, value)
            except ClientDisconnect:
                log.info("evidence.upload_disconnected")
                raise ClientGone() from None
            if not form.ended:
                raise BadRequest(
                    "The multipart body ended before its closing boundary.",
                    code="INCOMPLETE_MULTIPART",
                )
            if form.done is None:
                raise Unprocessable(
                    "The upload has no file: send the file in a multipart part named 'file'.",
                    code="FILE_REQUIRED",
                )
            return ReceivedForm(fields=form.fields, file=form.done)
        except BaseException:
            if isinstance(form.current, _FilePart):
                form.current.drop()
            if form.done is not None:
                form.done.temp.abort(wait=False)
            raise

    async def _event(self, form: _Form, kind: str, value: Any) -> None:
        if kind == "headers":
            form.name, filename = _disposition(value)
            if filename is not None and form.name == FILE_FIELD:
                if form.done is not None:
                    raise Unprocessable("Send exactly one file per upload.", code="ONE_FILE_ONLY")
                form.current = _FilePart(
                    self.store.new_temp(), filename, self.settings.retry_after_seconds
                )
            elif len(form.fields) >= MAX_FIELDS:
                raise Unprocessable("Too many form fields.", code="TOO_MANY_FIELDS")
            else:
                form.current = bytearray()
        elif kind == "data":
            if isinstance(form.current, _FilePart):
                await self._file_data(form.current, value)
            elif form.current is not None:
                form.current.extend(value)
                if len(form.current) > self.settings.max_field_bytes:
                    raise PayloadTooLarge(
                        f"The form field '{form.name}' is too large.", code="FIELD_TOO_LARGE"
                    )
        elif kind == "part_end":
            if isinstance(form.current, _FilePart):
                form.done = await self._file_end(form.current)
            elif form.current is not None:
                text = form.current.decode("utf-8", errors="replace")
                form.fields[form.name] = text
                if self.on_field is not None:
                    await self.on_field(form.name, text)
            form.current = None
        elif kind == "end":
            form.ended = True

    async def _file_data(self, part: _FilePart, data: bytes) -> None:
        part.size += len(data)
        if part.size > self.settings.max_file_bytes:
            raise self._too_large()
        if len(part.sample) < SAMPLE_BYTES:
            part.sample.extend(data[: SAMPLE_BYTES - len(part.sample)])
        if part.detected is None:
            part.head.extend(data)
            if len(part.head) >= self.settings.sniff_bytes:
                self._sniff(part, complete=False)
        else:
            if part.detected.kind == "text" and b"\x00" in data:
                raise UnsupportedType(
                    f"'{part.filename}' starts as text but contains binary data further on.",
                    code="UNSUPPORTED_FILE_TYPE",
                )
            part.queue(data)
        if part.pending_bytes >= WRITE_BATCH:
            await self._flush(part)

    async def _file_end(self, part: _FilePart) -> ReceivedFile:
        if part.detected is None:
            if part.size == 0:
                if not part.raw_filename.strip():
                    raise Unprocessable(
                        "The upload has no file: the 'file' part is empty and unnamed.",
                        code="FILE_REQUIRED",
                    )
                raise EmptyFile(f"'{part.filename}' is empty (0 bytes).")
            self._sniff(part, complete=True)
        await self._flush(part)
        await part.settle()
        assert part.detected is not None
        return ReceivedFile(
            temp=part.temp,
            filename=part.filename,
            content_type=part.content_type,
            detected=part.detected,
            sample=bytes(part.sample),
        )

    def _sniff(self, part: _FilePart, *, complete: bool) -> None:
        part.detected = detect(bytes(part.head[: self.settings.sniff_bytes]), complete=complete)
        name = part.filename
        part.content_type = check_type(
            name,
            part.detected,
            allowed_extensions=self.settings.allowed_extensions,
            allowed_image_types=self.settings.allowed_image_types,
            allow_no_extension=self.settings.allow_no_extension,
        )
        if part.detected.kind == "text" and b"\x00" in part.head:
            raise UnsupportedType(f"'{name}' contains binary data.")
        part.queue(bytes(part.head))
        part.head.clear()

    async def _flush(self, part: _FilePart) -> None:
        if not part.pending:
            return
        data, part.pending, part.pending_bytes = part.pending, [], 0
        # One batch in flight at a time: hashing and writing it overlaps with receiving
        # and parsing the next one, and batches still reach the file in order.
        await part.settle()
        part.inflight = asyncio.ensure_future(asyncio.to_thread(part.temp.write, data))


def _disposition(headers: list[tuple[bytes, bytes]]) -> tuple[str, str | None]:
    """(field name, filename or None) from a part's Content-Disposition."""
    for key, value in headers:
        if key == b"content-disposition":
            _, params = parse_options_header(value)
            name = params.get(b"name", b"").decode("utf-8", errors="replace")
            raw = params.get(b"filename")
            return name, None if raw is None else raw.decode("utf-8", errors="replace")
    raise BadRequest("A multipart part has no Content-Disposition.", code="MALFORMED_MULTIPART")
