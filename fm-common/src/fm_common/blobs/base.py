"""The blob store interface, its errors and the writer every backend shares."""

from __future__ import annotations

import errno
import hashlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from fm_common.errors import FMError, Unavailable

log = structlog.get_logger("fm_common.blobs")

READ_CHUNK = 256 * 1024


class BlobNotFound(FileNotFoundError):
    """No blob under this key."""


class StoreUnavailable(OSError):
    """The store is down, timed out or refused the request (credentials, bucket, 5xx).
    Nothing was stored; retrying later may work."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EIO, message)


class InsufficientStorage(FMError):
    status_code, code, detail = 507, "INSUFFICIENT_STORAGE", "The file store is full."


def storage_error(exc: OSError, retry_after: int = 5) -> FMError:
    """The HTTP answer for a failed store operation (the cause is logged, never shown):
    507 when the disk is full, else 503 with Retry-After."""
    log.error("blobs.storage_error", error=repr(exc))
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("The file store is full; the upload was not kept.")
    return Unavailable(
        "The file store failed; the upload was not kept. Retry later.",
        code="STORAGE_UNAVAILABLE",
        retry_after=retry_after,
    )


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    # Seconds since the epoch of the last write.
    modified: float


class BlobReader(Protocol):
    """A stored blob open for reading (a file object or an S3 body)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def check_key(key: str) -> str:
    """A relative, slash-separated key without empty, `.` or `..` parts."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a blob key: {key!r}")
    return key


class BlobWriter(ABC):
    """One blob being written: sha256 and size follow every write; nothing is visible
    under `key` until `commit()`, and `abort()` drops everything written.

    Blocking calls. A write may run in a worker thread while `abort()` is called from
    the event loop: the two are serialized by a lock, and an abort that has network
    work to do (S3) does it in the background when called with `wait=False`.
    """

    def __init__(self, key: str) -> None:
        self.key = check_key(key)
        self.size = 0
        self._sha = hashlib.sha256()
        self._lock = threading.Lock()
        self._state = "open"  # open, committed, aborted

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def write(self, data: bytes | list[bytes]) -> None:
        chunks = data if isinstance(data, list) else [data]
        with self._lock:
            if self._state != "open":
                raise OSError(errno.EBADF, f"the upload was {self._state}")
            for chunk in chunks:
                self._sha.update(chunk)
                self.size += len(chunk)
            self._write(chunks)

    def commit(self) -> None:
        """Make the bytes durable and visible under `key`, atomically."""
        with self._lock:
            if self._state != "open":
                raise OSError(errno.EBADF, f"the upload was {self._state}")
            self._commit()
            self._state = "committed"

    def abort(self, *, wait: bool = True) -> None:
        """Drop the upload; a no-op once committed or aborted. Never raises: what it
        cannot remove is left to the store's sweep of stale uploads."""
        if self._state != "open":
            return
        if wait:
            self._abort_locked()
        else:
            self._abort_soon()

    def _abort_locked(self) -> None:
        with self._lock:
            if self._state != "open":
                return
            self._state = "aborted"
            try:
                self._abort()
            except OSError as exc:
                log.warning("blobs.abort_failed", key=self.key, error=repr(exc))

    def _abort_soon(self) -> None:
        # Local aborts are cheap: done now. S3 overrides this to use a thread.
        self._abort_locked()

    @abstractmethod
    def _write(self, chunks: list[bytes]) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _abort(self) -> None: ...


class BlobStore(ABC):
    """Blobs under one root (a directory, or a bucket and prefix)."""

    # For logs and the readiness check: `/data/evidence` or `s3://bucket/prefix/evidence/`.
    location: str

    @abstractmethod
    def begin(self, key: str) -> BlobWriter:
        """A writer for a new blob under `key` (replaces any blob there on commit)."""

    def put(self, key: str, data: bytes) -> None:
        """Store a small blob at once (atomically, like a committed writer)."""
        writer = self.begin(key)
        try:
            writer.write(data)
            writer.commit()
        finally:
            writer.abort()

    @abstractmethod
    def open(self, key: str) -> BlobReader:
        """The blob open for reading (the caller closes it); BlobNotFound when missing."""

    def read(self, key: str, max_bytes: int | None = None) -> bytes:
        """The blob's bytes (at most `max_bytes`); BlobNotFound when missing."""
        reader = self.open(key)
        try:
            if max_bytes is None:
                return b"".join(iter(lambda: reader.read(READ_CHUNK), b""))
            out = bytearray()
            while len(out) < max_bytes and (chunk := reader.read(min(READ_CHUNK, max_bytes))):
                out += chunk
            return bytes(out[:max_bytes])
        finally:
            reader.close()

    @abstractmethod
    def local_copy(self, key: str) -> AbstractContextManager[Path]:
        """A local file with the blob's bytes for code that needs a path (parsers): the
        file itself on disk, or a temp file streamed from S3 and removed on exit."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a blob; a missing one is fine."""

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

    @abstractmethod
    def list_blobs(self, prefix: str = "", older_than: float | None = None) -> list[BlobInfo]:
        """Stored blobs whose key starts with `prefix` (and, with `older_than`, last
        written more than that many seconds ago); uploads in flight are not listed."""

    @abstractmethod
    def pending(self) -> list[str]:
        """Keys of uploads begun and neither committed nor aborted (in flight, or left
        by a crash)."""

    @abstractmethod
    def sweep_pending(self, older_than: float) -> int:
        """Drop uploads begun more than `older_than` seconds ago and never finished (a
        crashed or killed process); how many."""

    @abstractmethod
    def check(self) -> None:
        """Raise OSError unless the store answers (the readiness check)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections (nothing to do for the local backend)."""


def iter_chunks(reader: BlobReader, size: int = READ_CHUNK) -> Iterator[bytes]:
    while chunk := reader.read(size):
        yield chunk
