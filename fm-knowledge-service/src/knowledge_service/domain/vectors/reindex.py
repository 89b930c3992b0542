"""Re-index a collection for the configured embedding model.

The chunks' text lives in Chroma, so no original is needed: every chunk is embedded
again into `<name>-reindex` (created for the new model), the old collection is deleted
and the new one renamed into place. Redoing it after a crash resumes: a finished copy
whose original is gone is just renamed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from knowledge_service.domain.documents.repository import DocumentRepository
from knowledge_service.domain.vectors.embedder import Embedder
from knowledge_service.domain.vectors.store import MODEL_KEY, VectorStore

log = structlog.get_logger("knowledge.reindex")


def reindex(
    store: VectorStore,
    embedder: Embedder,
    db: Any,
    collection: str,
    batch_size: int,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    target = store.model_name
    temp = f"{collection}-reindex"
    current = store.collection_model(collection)
    if current is None:
        if store.collection_model(temp) == target:
            store.rename_collection(temp, collection)
            return {"collection": collection, "status": "resumed"}
        return {"collection": collection, "status": "missing"}
    if current == target:
        return {"collection": collection, "status": "current", "model": target}
    store.delete_collection(temp)
    total = max(1, store.count(collection))
    done = 0
    for page in store.iterate(collection, include=("documents", "metadatas"), page=512):
        texts = [d or "" for d in page["documents"]]
        metas = [dict(m or {}, **{MODEL_KEY: target}) for m in page["metadatas"]]
        vectors = embedder.encode(texts, batch_size=batch_size)
        store.upsert(temp, page["ids"], vectors, texts, metas, model_name=target)
        done += len(texts)
        if progress is not None:
            progress(min(0.99, done / total))
    store.delete_collection(collection)
    store.rename_collection(temp, collection)

    db(lambda s: DocumentRepository(s).set_embedding_model(collection, target))
    log.info("reindex.done", collection=collection, chunks=done, model=target, previous=current)
    return {"collection": collection, "status": "reindexed", "chunks": done, "model": target}
