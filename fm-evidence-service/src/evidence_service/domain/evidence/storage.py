"""The evidence files in the service's blob store (fm_common.blobs: a local directory or
an S3 bucket, ADR 0141).

Layout: `files/<id[:2]>/<id>`. An upload is a blob writer opened under a new file id:
its bytes are hashed as they stream, and nothing is visible at the key until `place`
commits it (local: fsync and atomic rename; S3: the multipart upload completes). A
crash leaves an unfinished upload (swept by age by `sweep_temp`) or a stored file
without a metadata row (swept by the service's orphan sweep).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TypeAlias

import structlog

from fm_common.blobs import (
    BlobNotFound,
    BlobReader,
    BlobStore,
    BlobWriter,
    InsufficientStorage,
    storage_error,
)

log = structlog.get_logger("evidence_service.storage")

READ_CHUNK = 256 * 1024
FILES = "files/"

# An upload in flight: `write`, `sha256`, `size`, `commit` (through FileStore.place), `abort`.
TempFile: TypeAlias = BlobWriter

__all__ = ["READ_CHUNK", "FileStore", "InsufficientStorage", "TempFile", "storage_error"]


class FileStore:
    """The evidence files of this service in one blob store."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    @staticmethod
    def key_for(file_id: str) -> str:
        return f"{FILES}{file_id[:2]}/{file_id}"

    @staticmethod
    def file_id(temp: TempFile) -> str:
        """The id the upload was opened for (its key's last part)."""
        return temp.key.rsplit("/", 1)[-1]

    def new_temp(self) -> TempFile:
        """An upload of a new file (its id chosen now; visible only once placed)."""
        return self.blobs.begin(self.key_for(str(uuid.uuid4())))

    def place(self, temp: TempFile) -> str:
        """Make the upload durable and visible under its file id; the id."""
        temp.commit()
        return self.file_id(temp)

    def remove(self, file_id: str) -> None:
        """Delete a stored file; a missing file is fine (idempotent), never raises."""
        try:
            self.blobs.delete(self.key_for(file_id))
        except OSError as exc:
            # Left for the orphan sweep; the metadata row is already gone.
            log.warning("evidence.unlink_failed", file_id=file_id, error=repr(exc))

    def remove_many(self, file_ids: Iterable[str]) -> None:
        """Delete stored files (one request per 1000 on S3); never raises."""
        ids = list(file_ids)
        if not ids:
            return
        try:
            self.blobs.delete_many([self.key_for(i) for i in ids])
        except OSError as exc:
            log.warning("evidence.unlink_failed", count=len(ids), error=repr(exc))

    def open(self, file_id: str) -> BlobReader | None:
        """The stored file open for reading, or None when it is not stored."""
        try:
            return self.blobs.open(self.key_for(file_id))
        except BlobNotFound:
            return None

    def exists(self, file_id: str) -> bool:
        return self.blobs.exists(self.key_for(file_id))

    def sweep_temp(self, older_than: float) -> int:
        """Drop uploads that died (crash, kill) more than `older_than` s ago."""
        return self.blobs.sweep_pending(older_than)

    def stored_ids(self, older_than: float) -> list[str]:
        """Ids of stored files last written more than `older_than` seconds ago."""
        return [b.key.rsplit("/", 1)[-1] for b in self.blobs.list_blobs(FILES, older_than)]
