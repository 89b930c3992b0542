"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, ...) through boto3.

A writer streams: received chunks are kept up to one part (`part_size`, 8 MiB), and each
full part is sent with UploadPart (read from the chunks themselves, never joined into a
copy) while the rest of the body still arrives, so memory per upload is one part
whatever the file's size. `commit()` completes the multipart upload,
which makes the object appear at its key at once (or, for a blob smaller than one part,
sends it with a single PutObject); `abort()` aborts it, and S3 keeps nothing of it.
Uploads a crash left open are aborted by `sweep_pending` (and by a bucket lifecycle
rule, which operators should also set; docs/operations.md).

Every boto error becomes an OSError: `BlobNotFound` for a missing key, otherwise
`StoreUnavailable` (down, timed out, credentials or bucket refused, 5xx), which the
services answer 503 with Retry-After.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import io
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from fm_common.blobs.base import (
    READ_CHUNK,
    BlobInfo,
    BlobNotFound,
    BlobReader,
    BlobStore,
    BlobWriter,
    StoreUnavailable,
    check_key,
    log,
)

PART_SIZE = 8 * 1024 * 1024
# S3 refuses parts under 5 MiB (all but the last).
MIN_PART_SIZE = 5 * 1024 * 1024
DOWNLOAD_CHUNK = 1024 * 1024
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
# Aborts of big uploads run here when the caller cannot wait (the event loop).
_BACKGROUND = ThreadPoolExecutor(max_workers=2, thread_name_prefix="blob-abort")


@contextlib.contextmanager
def _errors(action: str, key: str) -> Iterator[None]:
    """Boto's exceptions as the OSErrors the callers handle."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND:
            raise BlobNotFound(errno.ENOENT, f"no blob {key}") from None
        log.warning("blobs.s3_refused", action=action, key=key, code=code)
        raise StoreUnavailable(f"S3 {action} of {key} refused: {code}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        log.warning("blobs.s3_unreachable", action=action, key=key, error=repr(exc))
        raise StoreUnavailable(f"S3 {action} of {key} failed: {type(exc).__name__}") from exc


class S3Reader:
    """An object's body, read in a stream; errors mid-stream are StoreUnavailable."""

    def __init__(self, body: Any, key: str) -> None:
        self._body = body
        self._key = key

    def read(self, size: int = -1, /) -> bytes:
        with _errors("read", self._key):
            try:
                return bytes(self._body.read(None if size < 0 else size))
            except (OSError, ValueError) as exc:  # urllib3 errors under botocore
                raise StoreUnavailable(f"S3 read of {self._key} failed: {exc!r}") from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()


class _Chunks(io.RawIOBase):
    """Chunks read as one seekable file, without joining them: a part is sent from the
    chunks as they were received (no second copy of it in memory)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._starts = list(itertools.accumulate((len(c) for c in chunks), initial=0))
        self._size = self._starts[-1]
        self._pos = 0

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            index = bisect.bisect_right(self._starts, self._pos) - 1
            chunk = self._chunks[index]
            offset = self._pos - self._starts[index]
            n = min(len(view) - done, len(chunk) - offset)
            view[done : done + n] = chunk[offset : offset + n]
            done += n
            self._pos += n
        return done


class S3Writer(BlobWriter):
    def __init__(self, store: S3BlobStore, key: str) -> None:
        super().__init__(key)
        self.store = store
        # Received chunks not sent yet (at most one part's worth, plus one chunk).
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    @property
    def _full_key(self) -> str:
        return self.store.prefix + self.key

    def _write(self, chunks: list[bytes]) -> None:
        part_size = self.store.part_size
        for chunk in chunks:
            if self._pending_bytes + len(chunk) > part_size:
                # Fill this part up exactly; the rest of the chunk starts the next one.
                cut = part_size - self._pending_bytes
                self._pending.append(chunk[:cut])
                self._pending_bytes += cut
                chunk = chunk[cut:]
            if self._pending_bytes == part_size:
                self._flush_part()
            while len(chunk) >= part_size:
                self._pending, self._pending_bytes = [chunk[:part_size]], part_size
                self._flush_part()
                chunk = chunk[part_size:]
            if chunk:
                self._pending.append(chunk)
                self._pending_bytes += len(chunk)
        if self._pending_bytes == part_size:
            self._flush_part()

    def _flush_part(self) -> None:
        body, self._pending, self._pending_bytes = self._pending, [], 0
        self._send_part(body)

    def _send_part(self, chunks: list[bytes]) -> None:
        client, bucket = self.store.client, self.store.bucket
        with _errors("upload", self.key):
            if self._upload_id is None:
                created = client.create_multipart_upload(Bucket=bucket, Key=self._full_key)
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            sent = client.upload_part(
                Bucket=bucket,
                Key=self._full_key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=_Chunks(chunks),
            )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def _commit(self) -> None:
        client, bucket = self.store.client, self.store.bucket
        if self._upload_id is None:
            with _errors("put", self.key):
                client.put_object(Bucket=bucket, Key=self._full_key, Body=_Chunks(self._pending))
            self._pending, self._pending_bytes = [], 0
            return
        if self._pending:
            self._flush_part()
        with _errors("complete", self.key):
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=self._full_key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )

    def _abort(self) -> None:
        self._pending, self._pending_bytes = [], 0
        if self._upload_id is None:
            return
        with _errors("abort", self.key):
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self._full_key, UploadId=self._upload_id
            )

    def _abort_soon(self) -> None:
        if self._upload_id is None and not self._lock.locked():
            self._abort_locked()  # nothing was sent: nothing to wait for
        else:
            # After the part in flight (the lock), so S3 sees no part after the abort.
            _BACKGROUND.submit(self._abort_locked)


_SESSION: boto3.session.Session | None = None
_SESSION_LOCK = threading.Lock()


def _client(**kwargs: Any) -> Any:
    """An S3 client from one process-wide session: the session caches the parsed service
    model (making a client from a new session parses it again, ~0.3 s). Sessions are not
    thread-safe, hence the lock; the client is, and every thread shares it. Credentials
    given here win; without them the session's default chain applies (AWS_* variables,
    web identity / IRSA, instance profile)."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        return _SESSION.client("s3", **kwargs)


class S3BlobStore(BlobStore):
    """Blobs under `s3://<bucket>/<prefix>`."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = PART_SIZE,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self.location = f"s3://{bucket}/{prefix}"
        config = Config(
            region_name=region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=32,
            # Path-style URLs for MinIO/Ceph/moto endpoints (no wildcard DNS needed).
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # Checksums only where an operation needs one: stores that predate S3's
            # default CRC checksums (older MinIO, Ceph RGW) refuse them otherwise.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client = _client(
            endpoint_url=endpoint_url,
            config=config,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
        )
        self._closed = threading.Event()

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def begin(self, key: str) -> S3Writer:
        return S3Writer(self, key)

    def put(self, key: str, data: bytes) -> None:
        with _errors("put", key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def open(self, key: str) -> BlobReader:
        with _errors("get", key):
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        return S3Reader(got["Body"], key)

    def read(self, key: str, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            return super().read(key)
        if max_bytes <= 0:
            self.open(key).close()  # still BlobNotFound for a missing key
            return b""
        with _errors("get", key):
            got = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes=0-{max_bytes - 1}"
            )
        reader = S3Reader(got["Body"], key)
        try:
            return b"".join(iter(lambda: reader.read(READ_CHUNK), b""))[:max_bytes]
        finally:
            reader.close()

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        reader = self.open(key)
        fd, name = tempfile.mkstemp(prefix="fm-blob-")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    while chunk := reader.read(DOWNLOAD_CHUNK):
                        out.write(chunk)
                finally:
                    reader.close()
            yield path
        finally:
            path.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        try:
            with _errors("head", key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except BlobNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        with _errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_many(self, keys: Iterable[str]) -> None:
        todo = [self._key(k) for k in keys]
        for start in range(0, len(todo), 1000):  # S3's limit per DeleteObjects
            batch = todo[start : start + 1000]
            with _errors("delete", batch[0]):
                answer = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StoreUnavailable(f"S3 delete of {first.get('Key')} refused: {first}")

    def list_blobs(self, prefix: str = "", older_than: float | None = None) -> list[BlobInfo]:
        cutoff = None if older_than is None else time.time() - older_than
        out = []
        pages = self.client.get_paginator("list_objects_v2")
        with _errors("list", prefix or "/"):
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    modified = item["LastModified"].timestamp()
                    if cutoff is None or modified < cutoff:
                        key = item["Key"][len(self.prefix) :]
                        out.append(BlobInfo(key, int(item["Size"]), modified))
        return sorted(out, key=lambda b: b.key)

    def _uploads(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        pages = self.client.get_paginator("list_multipart_uploads")
        with _errors("list uploads", self.prefix or "/"):
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix):
                found += page.get("Uploads", [])
        return found

    def pending(self) -> list[str]:
        return sorted(u["Key"][len(self.prefix) :] for u in self._uploads())

    def sweep_pending(self, older_than: float) -> int:
        cutoff = time.time() - older_than
        removed = 0
        for upload in self._uploads():
            if upload["Initiated"].timestamp() >= cutoff or self._recent_part(upload, cutoff):
                continue
            with _errors("abort", upload["Key"]):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            removed += 1
        return removed

    def _recent_part(self, upload: dict[str, Any], cutoff: float) -> bool:
        """Whether a part of the upload was sent after `cutoff`: a long upload still in
        progress is not a leftover. (Also what keeps moto's server, which reports a fixed
        2010 date as every upload's Initiated, from losing uploads in flight.)"""
        pages = self.client.get_paginator("list_parts")
        with _errors("list parts", upload["Key"]):
            for page in pages.paginate(
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            ):
                if any(p["LastModified"].timestamp() >= cutoff for p in page.get("Parts", [])):
                    return True
        return False

    def check(self) -> None:
        try:
            with _errors("head bucket", self.bucket):
                self.client.head_bucket(Bucket=self.bucket)
        except BlobNotFound:
            raise StoreUnavailable(f"the bucket {self.bucket} does not exist") from None

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.client.close()
