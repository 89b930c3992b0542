"""Files on disk: written to a temp file, hashed as they stream, fsynced, renamed into place.

Layout under the storage dir: `files/<id[:2]>/<id>` for stored files and `tmp/` for
uploads in flight (same filesystem, so the final rename is atomic). A file is either
wholly in `files/` or not there at all; leftovers of a crash sit in `tmp/` (or in
`files/` without a metadata row) and are swept by age.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
import uuid
from pathlib import Path
from typing import IO

import structlog

from fm_common.errors import FMError, Unavailable

log = structlog.get_logger("evidence_service.storage")

READ_CHUNK = 256 * 1024
# Flush written bytes to disk every this many bytes while the upload still streams, so
# the final fsync (on the critical path) has little left to do.
SYNC_EVERY = 8 * 1024 * 1024


class InsufficientStorage(FMError):
    status_code, code, detail = 507, "INSUFFICIENT_STORAGE", "The file store is full."


def storage_error(exc: OSError) -> FMError:
    """The HTTP answer for a failed disk operation (the cause is logged, never shown)."""
    log.error("evidence.storage_error", error=repr(exc))
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("The file store is full; the upload was not kept.")
    return Unavailable("The file store failed; the upload was not kept. Retry later.")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TempFile:
    """An upload being written: sha256 and size follow every write. Blocking calls; a
    write may run in a worker thread while abort() is called from the event loop, so the
    two are serialized by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = open(path, "xb")
        self._sha = hashlib.sha256()
        self._lock = threading.Lock()
        self._unsynced = 0
        self.size = 0

    def write(self, data: bytes | list[bytes]) -> None:
        chunks = data if isinstance(data, list) else [data]
        with self._lock:
            if self._fh is None:
                raise OSError(errno.EBADF, "the upload was aborted")
            for chunk in chunks:
                self._fh.write(chunk)
                self._sha.update(chunk)
                self.size += len(chunk)
                self._unsynced += len(chunk)
            if self._unsynced >= SYNC_EVERY:
                self._fh.flush()
                os.fdatasync(self._fh.fileno())
                self._unsynced = 0

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def finish(self) -> None:
        """Flush and fsync the bytes (before the rename makes them visible)."""
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None

    def abort(self) -> None:
        """Drop the temp file; safe to call more than once, never raises."""
        with self._lock:
            try:
                if self._fh is not None:
                    self._fh.close()
            except OSError:
                pass
            self._fh = None
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("evidence.temp_unlink_failed", path=str(self.path), error=repr(exc))


class FileStore:
    """The evidence files of this service under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files_dir = root / "files"
        self.tmp_dir = root / "tmp"

    def ensure_dirs(self) -> None:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, file_id: str) -> Path:
        return self.files_dir / file_id[:2] / file_id

    def new_temp(self) -> TempFile:
        return TempFile(self.tmp_dir / f"{uuid.uuid4().hex}.part")

    def place(self, temp: TempFile, file_id: str) -> Path:
        """fsync the temp file, rename it to its final path and fsync the directories."""
        temp.finish()
        final = self.path_for(file_id)
        parent_existed = final.parent.exists()
        final.parent.mkdir(parents=True, exist_ok=True)
        if not parent_existed:
            _fsync_dir(self.files_dir)
        os.rename(temp.path, final)
        _fsync_dir(final.parent)
        return final

    def remove(self, file_id: str) -> None:
        """Delete a stored file; a missing file is fine (idempotent), never raises."""
        try:
            self.path_for(file_id).unlink(missing_ok=True)
        except OSError as exc:
            # Left for the orphan sweep; the metadata row is already gone.
            log.warning("evidence.unlink_failed", file_id=file_id, error=repr(exc))

    def open(self, file_id: str) -> IO[bytes] | None:
        """The stored file open for reading, or None when it is not on disk."""
        try:
            return open(self.path_for(file_id), "rb")
        except FileNotFoundError:
            return None

    def exists(self, file_id: str) -> bool:
        return self.path_for(file_id).is_file()

    def sweep_temp(self, older_than: float) -> int:
        """Remove temp files of uploads that died (crash, kill) more than `older_than` s ago."""
        cutoff = time.time() - older_than
        removed = 0
        for path in self.tmp_dir.glob("*.part"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
            except OSError:
                continue
        return removed

    def stored_ids(self, older_than: float) -> list[str]:
        """Ids of stored files last modified more than `older_than` seconds ago."""
        cutoff = time.time() - older_than
        ids = []
        for path in self.files_dir.glob("*/*"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    ids.append(path.name)
            except OSError:
                continue
        return ids
