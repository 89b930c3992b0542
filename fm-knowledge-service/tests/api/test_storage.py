"""Where the stack keeps a document's files: the configured blob store (the data dir, or
with FM_TEST_STORAGE=s3 a bucket the service and the worker share, nothing on disk)."""

from __future__ import annotations

import uuid

from fm_common.blobs import open_blob_store
from knowledge_service.config import Settings

TEXT = b"# Disk pressure on node {tag}\n\nEvict the largest pods of node {tag} first.\n"


def _store(kstack, storage_env):  # type: ignore[no-untyped-def]
    settings = Settings(
        data_dir=kstack.data_dir,
        **{k.removeprefix("FM_").lower(): v for k, v in storage_env.items()},
    )
    return open_blob_store(settings, "knowledge")


def test_original_and_text_are_in_the_store_and_leave_with_the_document(  # type: ignore[no-untyped-def]
    kapi, kstack, storage_env
):
    user, tag = f"user-{uuid.uuid4()}", uuid.uuid4().hex[:8]
    body = TEXT.replace(b"{tag}", tag.encode())
    doc = kapi.ingest(user, "disk.md", body, title="Disk pressure")
    assert doc["status"] == "processed", doc
    assert tag in doc["content"]
    doc_id = doc["document_id"]
    store = _store(kstack, storage_env)
    assert store.read(f"files/{doc_id}") == body
    assert tag in store.read(f"text/{doc_id}.txt").decode()
    local = kstack.data_dir / "knowledge" / "files" / doc_id
    # On S3 the worker read the original from the bucket: nothing of it is on disk.
    assert local.is_file() == (not storage_env)
    assert kapi.delete(user, f"/api/v1/knowledge/documents/{doc_id}").status_code == 204
    assert not store.exists(f"files/{doc_id}")
    assert not store.exists(f"text/{doc_id}.txt")
