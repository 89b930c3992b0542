"""Blobs as files under one directory: written to a temp file, hashed as they stream,
fsynced, renamed into place.

Layout: `<root>/<key>` for stored blobs and `<root>/tmp/<uuid>.part` for uploads in
flight (same filesystem, so the final rename is atomic). A blob is either wholly at its
key or not there at all; a crash leaves at most a `.part` file, swept by age.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from fm_common.blobs.base import (
    BlobInfo,
    BlobNotFound,
    BlobReader,
    BlobStore,
    BlobWriter,
    check_key,
    log,
)

TMP = "tmp"
# Flush written bytes to disk every this many bytes while the upload still streams, so
# the final fsync (on the critical path) has little left to do.
SYNC_EVERY = 8 * 1024 * 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalWriter(BlobWriter):
    def __init__(self, store: LocalBlobStore, key: str) -> None:
        super().__init__(key)
        self.store = store
        self.path = store.tmp_dir / f"{uuid.uuid4().hex}.part"
        self._fh: IO[bytes] | None = open(self.path, "xb")
        self._unsynced = 0

    def _write(self, chunks: list[bytes]) -> None:
        assert self._fh is not None
        for chunk in chunks:
            self._fh.write(chunk)
            self._unsynced += len(chunk)
        if self._unsynced >= SYNC_EVERY:
            self._fh.flush()
            os.fdatasync(self._fh.fileno())
            self._unsynced = 0

    def _commit(self) -> None:
        """fsync the temp file, rename it to its final path and fsync the directories."""
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        final = self.store.path_for(self.key)
        created = []
        parent = final.parent
        while not parent.exists():
            created.append(parent)
            parent = parent.parent
        final.parent.mkdir(parents=True, exist_ok=True)
        for directory in reversed(created):
            _fsync_dir(directory.parent)
        os.rename(self.path, final)
        _fsync_dir(final.parent)

    def _abort(self) -> None:
        try:
            if self._fh is not None:
                self._fh.close()
        except OSError:
            pass
        self._fh = None
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("blobs.temp_unlink_failed", path=str(self.path), error=repr(exc))


class LocalBlobStore(BlobStore):
    """Blobs in a directory (FM_STORAGE_URL unset or a path)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / TMP
        self.location = str(self.root)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        check_key(key)
        if key == TMP or key.startswith(f"{TMP}/"):
            raise ValueError(f"{TMP}/ is the store's own")
        return self.root / key

    def begin(self, key: str) -> LocalWriter:
        self.path_for(key)
        return LocalWriter(self, key)

    def open(self, key: str) -> BlobReader:
        try:
            return open(self.path_for(key), "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise BlobNotFound(errno.ENOENT, f"no blob {key}") from None

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self.path_for(key)
        if not path.is_file():
            raise BlobNotFound(errno.ENOENT, f"no blob {key}")
        yield path

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    def list_blobs(self, prefix: str = "", older_than: float | None = None) -> list[BlobInfo]:
        cutoff = None if older_than is None else time.time() - older_than
        # The deepest directory the prefix names, walked; keys are then filtered by it.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        out = []
        for dirpath, dirnames, filenames in os.walk(base):
            if Path(dirpath) == self.root and TMP in dirnames:
                dirnames.remove(TMP)
            for name in filenames:
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if cutoff is None or stat.st_mtime < cutoff:
                    out.append(BlobInfo(key, stat.st_size, stat.st_mtime))
        return sorted(out, key=lambda b: b.key)

    def pending(self) -> list[str]:
        return sorted(p.name for p in self.tmp_dir.glob("*.part"))

    def sweep_pending(self, older_than: float) -> int:
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

    def check(self) -> None:
        if not self.tmp_dir.is_dir():
            raise OSError(errno.ENOENT, f"{self.tmp_dir} is missing")
