"""Orphan cleanup (beat): vectors, files and indexes whose document or case is gone.

Nothing younger than the grace period is touched, so an upload in progress (file
written, row not yet committed) is never mistaken for an orphan.

Evidence chunks (`origin: evidence`, ids `evidence:<file_id>:<n>` in `case_<id>`) belong
to files of the evidence service, which normally takes them out through
`knowledge.unindex_evidence`; an unindex that failed for good leaves them behind. With an
`evidence_exists` callable, the files of those chunks are asked about (per owner, in
batches) and the chunks of files that are gone are removed. Evidence chunks carry no
timestamp, and none is needed: a file's chunks are written only after its row has
committed (ADR 0043), so "gone" can only mean deleted, never "not committed yet", and a
chunk of a deleted file must go whatever its age (an index task racing the delete takes
its own chunks back, ADR 0045). Only an answer of the evidence service deletes anything:
when it cannot be asked, nothing is.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from fm_common.blobs import BlobStore
from fm_common.errors import FMError, GatewayTimeout, Unauthorized, Unavailable
from knowledge_service.config import Settings
from knowledge_service.domain.documents.repository import (
    CaseCollectionRepository,
    DocumentRepository,
)
from knowledge_service.domain.vectors.bm25 import Bm25Indexes
from knowledge_service.domain.vectors.store import VectorStore

log = structlog.get_logger("knowledge.cleanup")

# (owner_id, file_ids) -> the ids among them that are still that owner's evidence files.
# Raises FMError when the evidence service cannot answer (down, credentials refused).
EvidenceExists = Callable[[str, list[str]], set[str]]
# File ids per question (the evidence service's limit, fm_common MAX_EXISTING_IDS).
EVIDENCE_BATCH = 500


def _old_files(blobs: BlobStore, known: set[str], older_than: float) -> list[str]:
    """Keys of originals and texts older than the grace period whose document is gone."""
    out = []
    for prefix in ("files/", "text/"):
        for blob in blobs.list_blobs(prefix, older_than):
            doc_id = blob.key.rsplit("/", 1)[-1].split(".", 1)[0]
            if doc_id not in known:
                out.append(blob.key)
    return out


def purge_orphans(
    settings: Settings,
    blobs: BlobStore,
    store: VectorStore,
    bm25: Bm25Indexes,
    db: Any,
    *,
    grace_seconds: float,
    now: float,
    evidence_exists: EvidenceExists | None = None,
) -> dict[str, Any]:
    """Delete what no document, case or evidence file owns any more; counts of each."""
    cutoff = now - grace_seconds
    cases = db(lambda s: CaseCollectionRepository(s).ids())
    known = db(lambda s: DocumentRepository(s).all_ids())
    collections = store.list_collections()
    dropped: list[str] = []
    changed: list[str] = []
    vectors = 0
    # owner -> file id -> (collection, chunk id) of its evidence chunks
    evidence: defaultdict[str, defaultdict[str, list[tuple[str, str]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for name in collections:
        if name.endswith("-reindex"):
            continue
        if name.startswith("case_") and name[len("case_") :] not in cases:
            store.delete_collection(name)
            bm25.drop(name)
            dropped.append(name)
            continue
        orphan_ids: list[str] = []
        case = name.startswith("case_")
        for page in store.iterate(name, include=("metadatas",), page=5000):
            for cid, meta in zip(page["ids"], page["metadatas"], strict=True):
                meta = meta or {}
                origin = meta.get("origin", "document")
                if (
                    origin == "evidence"
                    and case
                    and meta.get("owner_id")
                    and meta.get("document_id")
                ):
                    file_id = str(meta["document_id"])
                    evidence[str(meta["owner_id"])][file_id].append((name, cid))
                if origin != "document":
                    continue
                if str(meta.get("document_id")) not in known:
                    orphan_ids.append(cid)
        if orphan_ids:
            # Re-check against the database: a document may have been created meanwhile.
            known |= db(
                lambda s, ids=orphan_ids: DocumentRepository(s).existing_ids(
                    [i.split(":")[0] for i in ids]
                )
            )
            orphan_ids = [i for i in orphan_ids if i.split(":")[0] not in known]
        if orphan_ids:
            store.delete_ids(name, orphan_ids)
            vectors += len(orphan_ids)
            changed.append(name)
    swept = (
        _sweep_evidence(store, evidence, evidence_exists)
        if evidence_exists is not None
        else _evidence_result(0, 0, [], []) | {"evidence_check": "off"}
    )
    for name in swept.pop("changed"):
        if name not in changed:
            changed.append(name)
    files = _old_files(blobs, known, time.time() - cutoff)
    blobs.delete_many(files)
    # Uploads a killed service left unfinished (a temp file; an open S3 multipart upload).
    blobs.sweep_pending(grace_seconds)
    alive = set(collections) - set(dropped)
    indexes = 0
    if settings.bm25_dir.is_dir():
        for path in settings.bm25_dir.iterdir():
            if not path.name.startswith(".") and path.name not in alive:
                bm25.drop(path.name)
                indexes += 1
    result = {
        "collections_dropped": len(dropped),
        "vectors_deleted": vectors,
        "files_deleted": len(files),
        "indexes_dropped": indexes,
        **swept,
        "changed_collections": changed + dropped,
    }
    log.info("cleanup.orphans", **{k: v for k, v in result.items() if k != "changed_collections"})
    return result


def _sweep_evidence(
    store: VectorStore,
    evidence: Mapping[str, Mapping[str, list[tuple[str, str]]]],
    exists: EvidenceExists,
) -> dict[str, Any]:
    """Remove the chunks of evidence files the evidence service says are gone.

    Asked per owner (the evidence service answers for the user a service token acts
    for), `EVIDENCE_BATCH` ids at a time. An owner it cannot answer for is skipped (e.g.
    a user the auth service no longer knows); when it is down, times out or refuses our
    credentials, the rest of the pass is skipped. Nothing is deleted without an answer.
    """
    chunks = gone = 0
    skipped: list[str] = []
    changed: list[str] = []
    owners = list(evidence)
    for n, owner in enumerate(owners):
        files = evidence[owner]
        ids = sorted(files)
        for start in range(0, len(ids), EVIDENCE_BATCH):
            batch = ids[start : start + EVIDENCE_BATCH]
            try:
                present = exists(owner, batch)
            except FMError as exc:
                log.warning(
                    "cleanup.evidence_check_failed", owner_id=owner, error=exc.detail, code=exc.code
                )
                if isinstance(exc, Unavailable | GatewayTimeout | Unauthorized):
                    # Down, or our credentials refused: the same for every owner.
                    skipped += owners[n:]
                    return _evidence_result(chunks, gone, skipped, changed)
                skipped.append(owner)
                break
            by_collection: defaultdict[str, list[str]] = defaultdict(list)
            for file_id in batch:
                if file_id not in present:
                    gone += 1
                    for collection, cid in files[file_id]:
                        by_collection[collection].append(cid)
            for collection, cids in by_collection.items():
                store.delete_ids(collection, cids)
                chunks += len(cids)
                if collection not in changed:
                    changed.append(collection)
    return _evidence_result(chunks, gone, skipped, changed)


def _evidence_result(
    chunks: int, gone: int, skipped: list[str], changed: list[str]
) -> dict[str, Any]:
    if chunks:
        log.info("cleanup.evidence_orphans", chunks=chunks, files=gone)
    return {
        "evidence_check": "incomplete" if skipped else "done",
        "evidence_chunks_deleted": chunks,
        "evidence_files_gone": gone,
        "evidence_owners_skipped": len(set(skipped)),
        "changed": changed,
    }
