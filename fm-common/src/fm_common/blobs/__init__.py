"""Blob storage behind one interface: a local directory (the default) or an S3 bucket.

A service stores its files (evidence, knowledge originals and their extracted text)
through a `BlobStore` made by `open_blob_store(settings, "<area>")`: under
`<FM_STORAGE_URL or FM_DATA_DIR>/<area>/` on disk, or under `s3://bucket/prefix/<area>/`
(ADR 0141). Keys are relative, slash-separated (`files/ab/<id>`).

The interface is synchronous, like the clients under it (file I/O, boto3): async code
calls it through `asyncio.to_thread`, the worker directly. Errors are OSErrors, so the
callers' existing handling holds for both backends: `BlobNotFound` (a FileNotFoundError)
for a missing key, `StoreUnavailable` (EIO) for a store that is down or refusing, and
the disk's own errors (ENOSPC: full) from the local backend. `storage_error` turns them
into the HTTP answer (507 for a full disk, 503 with Retry-After otherwise).
"""

from __future__ import annotations

from fm_common.blobs.base import (
    BlobInfo,
    BlobNotFound,
    BlobReader,
    BlobStore,
    BlobWriter,
    InsufficientStorage,
    StoreUnavailable,
    storage_error,
)
from fm_common.blobs.local import LocalBlobStore

__all__ = [
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobWriter",
    "InsufficientStorage",
    "LocalBlobStore",
    "StoreUnavailable",
    "open_blob_store",
    "storage_error",
]


def open_blob_store(settings: object, area: str, *, local_root: object = None) -> BlobStore:
    """The store of one area (`evidence`, `knowledge`) as the settings choose it.

    `local_root` overrides the local directory (a service's legacy `*_STORAGE_DIR`); it is
    ignored when the store is S3.
    """
    from pathlib import Path

    from fm_common.settings import BaseServiceSettings

    assert isinstance(settings, BaseServiceSettings)
    location = settings.storage_location
    if location.scheme == "s3":
        from fm_common.blobs.s3 import S3BlobStore

        secret = settings.storage_s3_secret_access_key
        return S3BlobStore(
            bucket=location.bucket,
            prefix=f"{location.prefix}{area}/",
            endpoint_url=settings.storage_s3_endpoint_url,
            region=settings.storage_s3_region,
            access_key_id=settings.storage_s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )
    root = Path(local_root) if local_root is not None else location.path / area  # type: ignore[arg-type]
    return LocalBlobStore(root)
