"""Orphan cleanup (beat): vectors, files and indexes whose document or case is gone.

Nothing younger than the grace period is touched, so an upload in progress (file
written, row not yet committed) is never mistaken for an orphan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from knowledge_service.config import Settings
from knowledge_service.domain.documents import repository as repo
from knowledge_service.domain.vectors.bm25 import Bm25Indexes
from knowledge_service.domain.vectors.store import VectorStore

log = structlog.get_logger("knowledge.cleanup")


def _old_files(folder: Path, known: set[str], cutoff: float) -> list[Path]:
    if not folder.is_dir():
        return []
    out = []
    for path in folder.iterdir():
        doc_id = path.name.split(".", 1)[0]
        if doc_id not in known and path.stat().st_mtime < cutoff:
            out.append(path)
    return out


def purge_orphans(
    settings: Settings,
    store: VectorStore,
    bm25: Bm25Indexes,
    db: Any,
    *,
    grace_seconds: float,
    now: float,
) -> dict[str, Any]:
    cutoff = now - grace_seconds
    cases = db(repo.case_collection_ids)
    known = db(repo.all_ids)
    collections = store.list_collections()
    dropped: list[str] = []
    changed: list[str] = []
    vectors = 0
    for name in collections:
        if name.endswith("-reindex"):
            continue
        if name.startswith("case_") and name[len("case_") :] not in cases:
            store.delete_collection(name)
            bm25.drop(name)
            dropped.append(name)
            continue
        orphan_ids: list[str] = []
        for page in store.iterate(name, include=("metadatas",), page=5000):
            for cid, meta in zip(page["ids"], page["metadatas"], strict=True):
                meta = meta or {}
                if meta.get("origin", "document") != "document":
                    continue
                if str(meta.get("document_id")) not in known:
                    orphan_ids.append(cid)
        if orphan_ids:
            # Re-check against the database: a document may have been created meanwhile.
            known |= db(
                lambda s, ids=orphan_ids: repo.existing_ids(s, [i.split(":")[0] for i in ids])
            )
            orphan_ids = [i for i in orphan_ids if i.split(":")[0] not in known]
        if orphan_ids:
            store.delete_ids(name, orphan_ids)
            vectors += len(orphan_ids)
            changed.append(name)
    files = _old_files(settings.files_dir, known, cutoff) + _old_files(
        settings.text_dir, known, cutoff
    )
    for path in files:
        path.unlink(missing_ok=True)
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
        "changed_collections": changed + dropped,
    }
    log.info("cleanup.orphans", **{k: v for k, v in result.items() if k != "changed_collections"})
    return result
