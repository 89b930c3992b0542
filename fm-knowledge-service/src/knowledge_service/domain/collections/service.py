"""Collections: which exist, which model filled each, how many chunks each holds.

After `FM_EMBEDDING_MODEL` changes, searches skip every collection of the old model until
it is re-indexed (ADR 0050); this listing shows an admin which ones those are.
"""

from __future__ import annotations

import re

from fm_common.contracts.knowledge import CollectionList, KnowledgeCollection
from fm_common.errors import NotFound
from knowledge_service.domain.vectors.store import VectorStore

# The collections the service writes (ADR 0050); `<name>-reindex` is a re-index's work copy.
_NAME = re.compile(r"^(global|user_[A-Za-z0-9_-]{1,200}|case_[A-Za-z0-9_-]{1,200})$")
REINDEX_SUFFIX = "-reindex"


class CollectionNotFound(NotFound):
    code, detail = "COLLECTION_NOT_FOUND", "No such collection."


def is_collection_name(name: str) -> bool:
    return bool(_NAME.match(name)) and not name.endswith(REINDEX_SUFFIX)


def require_collection(store: VectorStore, name: str) -> None:
    """CollectionNotFound unless `name` is a knowledge collection that exists (or whose
    interrupted re-index left only its finished work copy, which a re-index completes)."""
    if not is_collection_name(name):
        raise CollectionNotFound()
    if store.get_collection(name) is None and store.get_collection(name + REINDEX_SUFFIX) is None:
        raise CollectionNotFound()


def list_collections(store: VectorStore, *, limit: int, offset: int) -> CollectionList:
    """A page of the collections (by name) with their recorded model and chunk count.

    Synchronous (Chroma's client): call it from a thread.
    """
    names = sorted(n for n in store.list_collections() if is_collection_name(n))
    page = []
    for name in names[offset : offset + limit]:
        model = store.collection_model(name)
        page.append(
            KnowledgeCollection(
                name=name,
                embedding_model=model,
                chunk_count=store.count(name),
                current=model == store.model_name,
            )
        )
    return CollectionList(
        embedding_model=store.model_name,
        collections=page,
        total_count=len(names),
        limit=limit,
        offset=offset,
        has_more=offset + len(page) < len(names),
    )
