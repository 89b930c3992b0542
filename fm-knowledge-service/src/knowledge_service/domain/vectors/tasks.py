"""Vector maintenance tasks (queue `maintenance`): re-index a collection for the
configured model, and rebuild a collection's BM25 index after changes."""

from __future__ import annotations

from typing import Any

from fm_common.tasks import TaskContext, task
from knowledge_service.domain.vectors.bm25 import version_key
from knowledge_service.domain.vectors.reindex import reindex
from knowledge_service.worker import BM25_PENDING, knowledge


@task("knowledge.reindex_collection", queue="maintenance")
def reindex_collection(ctx: TaskContext, collection: str) -> dict[str, Any]:
    """Rebuild a collection with the configured embedding model (after a model change)."""
    k = knowledge(ctx.host)
    result = reindex(
        k.store, k.embedder, k.db, collection, k.settings.embed_batch_size, ctx.progress
    )
    k.collection_changed(collection)
    return result


@task("knowledge.refresh_bm25", queue="maintenance")
def refresh_bm25(ctx: TaskContext, collection: str) -> dict[str, Any]:
    """Rebuild a collection's BM25 index at its current version (debounced after changes)."""
    redis = ctx.host.redis
    k = knowledge(ctx.host)
    # Cleared first: a change during the build schedules another refresh.
    redis.delete(f"{BM25_PENDING}{collection}")
    raw = redis.get(version_key(collection))
    version = raw.decode() if raw else "0"
    if k.store.get_collection(collection) is None:
        k.bm25.drop(collection)
        return {"collection": collection, "status": "dropped"}
    index = k.bm25.get(collection, version)
    return {"collection": collection, "version": version, "chunks": len(index.ids)}
