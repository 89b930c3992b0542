"""The Chroma vector store: collections `global`, `user_<id>`, `case_<id>`.

Every collection records the embedding model that filled it (`embedding_model` in its
metadata) and refuses vectors of another. Vectors are always passed in: Chroma's default
embedding function would try to download a model. Synchronous (Chroma's HTTP client);
the service calls it from a thread, the worker directly.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx
import structlog

from fm_common.errors import Conflict, Unavailable

log = structlog.get_logger("knowledge.vectors")

GLOBAL_COLLECTION = "global"
MODEL_KEY = "embedding_model"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


class VectorStoreUnavailable(Unavailable):
    code = "VECTOR_STORE_UNAVAILABLE"
    detail = "The vector store is unavailable; retry later."


class ModelMismatch(Conflict):
    code = "EMBEDDING_MODEL_MISMATCH"
    detail = "The collection holds vectors of another embedding model; re-index it first."


def _safe(part: str) -> str:
    return _UNSAFE.sub("-", part)[:200]


def user_collection(user_id: str) -> str:
    return f"user_{_safe(user_id)}"


def case_collection(case_id: str) -> str:
    return f"case_{_safe(case_id)}"


def collection_for(scope: str, owner_id: str, case_id: str | None) -> str:
    if scope == "global":
        return GLOBAL_COLLECTION
    if scope == "case":
        assert case_id, "case scope needs a case id"
        return case_collection(case_id)
    return user_collection(owner_id)


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    content: str
    metadata: dict[str, Any]
    score: float  # cosine similarity, 1.0 is identical


def _is_down(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return True
    text = str(exc).lower()
    return "could not connect" in text or "connection refused" in text


class VectorStore:
    """Chroma over HTTP for one embedding model."""

    def __init__(self, chroma_url: str, model_name: str, retry_after: int = 5) -> None:
        parsed = urlparse(chroma_url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if parsed.scheme == "https" else 8000)
        self.ssl = parsed.scheme == "https"
        self.model_name = model_name
        self.retry_after = retry_after
        self._client: Any = None
        # Collection handles, so a search or an upsert costs one round trip, not two.
        # A handle whose collection was dropped (elsewhere) is evicted on NotFound.
        self._cols: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            try:
                self._client = chromadb.HttpClient(
                    host=self.host,
                    port=self.port,
                    ssl=self.ssl,
                    settings=ChromaSettings(anonymized_telemetry=False),
                )
            except Exception as exc:
                if _is_down(exc):
                    raise self._down(exc) from exc
                raise
        return self._client

    def _down(self, exc: BaseException) -> VectorStoreUnavailable:
        log.warning("vectors.unavailable", error=repr(exc))
        return VectorStoreUnavailable(retry_after=self.retry_after)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VectorStoreUnavailable:
            raise
        except Exception as exc:
            if _is_down(exc):
                raise self._down(exc) from exc
            raise

    def heartbeat(self) -> int:
        return int(self._call(lambda: self.client.heartbeat()))

    # -- collections ----------------------------------------------------------------
    def get_collection(self, name: str) -> Any | None:
        """The collection, or None when it does not exist."""
        from chromadb.errors import NotFoundError

        try:
            return self._call(lambda: self.client.get_collection(name, embedding_function=None))
        except NotFoundError:
            return None

    def _handle(self, name: str) -> Any | None:
        col = self._cols.get(name)
        if col is None:
            col = self.get_collection(name)
            if col is not None:
                with self._lock:
                    self._cols[name] = col
        return col

    def _evict(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._cols.pop(name, None)

    def _on_handle(self, name: str, op: Any, create: bool = False) -> Any:
        """Run `op(collection)` on the cached handle; refetch once if it went stale."""
        from chromadb.errors import NotFoundError

        for attempt in (1, 2):
            col = self.ensure_collection(name) if create else self._handle(name)
            if col is None:
                return None
            try:
                return self._call(op, col)
            except NotFoundError:
                self._evict(name)
                if attempt == 2:
                    if create:
                        raise
                    return None
        return None  # pragma: no cover

    def collection_model(self, name: str) -> str | None:
        col = self.get_collection(name)
        return None if col is None else (col.metadata or {}).get(MODEL_KEY)

    def ensure_collection(self, name: str, model_name: str | None = None) -> Any:
        """The collection for writing, created for this model; refuses another model's."""
        model = model_name or self.model_name
        cached = self._cols.get(name)
        if cached is not None and (cached.metadata or {}).get(MODEL_KEY) == model:
            return cached
        col = self._call(
            lambda: self.client.get_or_create_collection(
                name,
                metadata={MODEL_KEY: model},
                configuration={"hnsw": {"space": "cosine"}},
                embedding_function=None,
            )
        )
        recorded = (col.metadata or {}).get(MODEL_KEY)
        if recorded != model:
            raise ModelMismatch(
                f"Collection {name} holds vectors of {recorded!r}, not {model!r}; "
                "re-index it first."
            )
        with self._lock:
            self._cols[name] = col
        return col

    def delete_collection(self, name: str) -> bool:
        from chromadb.errors import NotFoundError

        self._evict(name)
        try:
            self._call(lambda: self.client.delete_collection(name))
        except NotFoundError:
            return False
        return True

    def list_collections(self) -> list[str]:
        cols = self._call(lambda: self.client.list_collections())
        return [c.name if hasattr(c, "name") else str(c) for c in cols]

    def rename_collection(self, old: str, new: str) -> None:
        self._evict(old, new)
        col = self.get_collection(old)
        if col is not None:
            self._call(lambda: col.modify(name=new))

    # -- chunks ---------------------------------------------------------------------
    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        model_name: str | None = None,
    ) -> None:
        if not ids:
            return
        if model_name is not None and model_name != self.model_name:
            col = self.ensure_collection(collection, model_name)
            self._evict(collection)
            self._call(
                lambda: col.upsert(
                    ids=list(ids),
                    embeddings=[list(e) for e in embeddings],
                    documents=list(documents),
                    metadatas=list(metadatas),
                )
            )
            return
        self._on_handle(
            collection,
            lambda col: col.upsert(
                ids=list(ids),
                embeddings=[list(e) for e in embeddings],
                documents=list(documents),
                metadatas=list(metadatas),
            ),
            create=True,
        )

    def delete_where(self, collection: str, where: dict[str, Any]) -> None:
        self._on_handle(collection, lambda col: col.delete(where=where))

    def delete_ids(self, collection: str, ids: Sequence[str]) -> None:
        if ids:
            self._on_handle(collection, lambda col: col.delete(ids=list(ids)))

    def delete_document(self, collection: str, document_id: str) -> None:
        self.delete_where(collection, {"document_id": document_id})

    def count(self, collection: str, where: dict[str, Any] | None = None) -> int:
        col = self.get_collection(collection)
        if col is None:
            return 0
        if where is None:
            return int(self._call(col.count))
        got = self._call(lambda: col.get(where=where, include=[]))
        return len(got["ids"])

    def fetch(self, collection: str, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """Text and metadata of the given chunks (those that still exist), by id."""
        col = self.get_collection(collection)
        if col is None or not ids:
            return {}
        got = self._call(lambda: col.get(ids=list(ids), include=["documents", "metadatas"]))
        return {
            cid: (doc or "", dict(meta or {}))
            for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        }

    def iterate(
        self,
        collection: str,
        *,
        include: Sequence[str] = ("documents", "metadatas"),
        where: dict[str, Any] | None = None,
        page: int = 2000,
    ) -> Iterator[dict[str, Any]]:
        """Pages of a collection: `{"ids", "documents", "metadatas", "embeddings"}`."""
        col = self.get_collection(collection)
        if col is None:
            return
        offset = 0
        while True:
            got = self._call(
                lambda off=offset: col.get(
                    where=where, include=list(include), limit=page, offset=off
                )
            )
            if not got["ids"]:
                return
            yield got
            if len(got["ids"]) < page:
                return
            offset += page

    def query(
        self,
        collection: str,
        embedding: Sequence[float],
        n_results: int,
        where: dict[str, Any] | None = None,
        content: bool = True,
    ) -> list[Hit]:
        """Nearest chunks of one collection; [] when it does not exist or is of another model.

        `content=False`: ids and scores only (texts and metadata empty). Reading the
        records is most of a query's time at 100,000 chunks; hybrid search takes them
        from its BM25 index, which holds the same chunks in memory (ADR 0165)."""
        col = self._handle(collection)
        if col is None:
            return []
        recorded = (col.metadata or {}).get(MODEL_KEY)
        if recorded != self.model_name:
            self._evict(collection)  # re-checked next time: a re-index may replace it
            log.warning(
                "vectors.model_mismatch",
                collection=collection,
                recorded=recorded,
                expected=self.model_name,
            )
            return []
        res = self._on_handle(
            collection,
            lambda c: c.query(
                query_embeddings=[list(embedding)],
                n_results=n_results,
                where=where or None,
                include=["documents", "metadatas", "distances"] if content else ["distances"],
            ),
        )
        if res is None:
            return []
        ids, dists = res["ids"][0], res["distances"][0]
        docs = res["documents"][0] if content else [""] * len(ids)
        metas = res["metadatas"][0] if content else [{}] * len(ids)
        hits = []
        for cid, doc, meta, dist in zip(ids, docs, metas, dists, strict=True):
            hits.append(Hit(cid, doc or "", dict(meta or {}), 1.0 - float(dist)))
        return hits
