"""Per-collection BM25 indexes (bm25s) for hybrid search, persisted and versioned.

An index is built from the chunks of one Chroma collection, saved under
`data_dir/knowledge/bm25/<collection>/` and kept in memory. Every write to a collection
(ingest, delete, re-index) bumps its version in Redis (`fm:knowledge:cv:<collection>`);
a search compares the version and rebuilds the index only when the collection changed,
never per query. The worker rebuilds eagerly after an ingestion.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from knowledge_service.domain.vectors.store import VectorStore

log = structlog.get_logger("knowledge.bm25")

VERSION_PREFIX = "fm:knowledge:cv:"
# Bumped when tokenize() or chunk_terms() changes, so indexes saved by an older build
# are rebuilt.
TOKENIZER_VERSION = "3"
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9]|[A-Za-z0-9]{2,}")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def version_key(collection: str) -> str:
    return f"{VERSION_PREFIX}{collection}"


def _stopwords() -> frozenset[str]:
    try:
        from bm25s.stopwords import STOPWORDS_EN

        return frozenset(STOPWORDS_EN)
    except ImportError:  # pragma: no cover - bm25s always ships them
        return frozenset()


STOPWORDS = _stopwords()


def stem(word: str) -> str:
    """A light English suffix stripper (plurals, -ing, -ed), so "replicas" meets "replica"."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    if word.endswith("ing") and len(word) > 5:
        return word[:-3]
    if word.endswith("ed") and len(word) > 4:
        return word[:-2]
    return word


def tokenize(text: str) -> list[str]:
    """Stemmed lower-case words, plus the parts of CamelCase and dotted names (alerts)."""
    out: list[str] = []
    for word in _WORD.findall(text):
        lower = word.lower()
        if lower not in STOPWORDS:
            out.append(stem(lower))
        parts = [p for piece in re.split(r"[_.-]", word) for p in _CAMEL.findall(piece)]
        if len(parts) > 1:
            out.extend(stem(p.lower()) for p in parts if len(p) > 1 and p.lower() not in STOPWORDS)
    return out


def chunk_terms(text: str, metadata: dict[str, Any]) -> list[str]:
    """What BM25 indexes of a chunk: its text plus its document's title as a field of its
    own (a runbook's title is usually its alert name: the words that name the problem).
    The text already starts with its heading path; the title adds the name the uploader
    gave, once more, for every chunk of the document (ADR 0115)."""
    return tokenize(text) + tokenize(str(metadata.get("title") or ""))


@dataclass
class Bm25Index:
    version: str
    ids: list[str]
    documents: list[str]
    metadatas: list[dict[str, Any]]
    retriever: Any  # bm25s.BM25, None when the collection is empty
    positions: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.positions = {cid: pos for pos, cid in enumerate(self.ids)}

    def chunk(self, chunk_id: str) -> tuple[str, dict[str, Any]] | None:
        """The text and metadata of a chunk of this collection (at this version)."""
        pos = self.positions.get(chunk_id)
        return None if pos is None else (self.documents[pos], self.metadatas[pos])

    def search(
        self, query: str, k: int, keep: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[tuple[int, float]]:
        """(position, score) of the best chunks for `query`, best first."""
        if self.retriever is None or not self.ids:
            return []
        vocab = self.retriever.vocab_dict
        terms = [t for t in tokenize(query) if t in vocab]
        if not terms:
            return []
        depth = len(self.ids) if keep is not None else min(k, len(self.ids))
        docs, scores = self.retriever.retrieve([terms], k=depth, show_progress=False)
        out: list[tuple[int, float]] = []
        for pos, score in zip(docs[0].tolist(), scores[0].tolist(), strict=True):
            if score <= 0:
                break
            if keep is not None and not keep(self.metadatas[pos]):
                continue
            out.append((int(pos), float(score)))
            if len(out) >= k:
                break
        return out


class Bm25Indexes:
    """The BM25 index of every collection: in memory, on disk, rebuilt on change."""

    def __init__(self, root: Path, store: VectorStore, max_in_memory: int = 32) -> None:
        self.root = root
        self.store = store
        self.max_in_memory = max_in_memory
        self._mem: OrderedDict[str, Bm25Index] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, collection: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(collection, threading.Lock())

    def get(self, collection: str, version: str) -> Bm25Index:
        """The index of `collection` at `version` (memory, then disk, else rebuilt)."""
        cached = self._mem.get(collection)
        if cached is not None and cached.version == version:
            return cached
        with self._lock(collection):
            cached = self._mem.get(collection)
            if cached is not None and cached.version == version:
                return cached
            index = self._load(collection, version) or self.build(collection, version)
            self._remember(collection, index)
            return index

    def _remember(self, collection: str, index: Bm25Index) -> None:
        with self._guard:
            self._mem[collection] = index
            self._mem.move_to_end(collection)
            while len(self._mem) > self.max_in_memory:
                self._mem.popitem(last=False)

    def _dir(self, collection: str) -> Path:
        return self.root / collection

    def _load(self, collection: str, version: str) -> Bm25Index | None:
        path = self._dir(collection)
        try:
            meta = json.loads((path / "chunks.json").read_text())
        except (OSError, ValueError):
            return None
        if meta.get("version") != version or meta.get("tokenizer") != TOKENIZER_VERSION:
            return None
        retriever = None
        if meta["ids"]:
            import bm25s

            try:
                retriever = bm25s.BM25.load(str(path / "index"))
            except (OSError, ValueError) as exc:
                log.warning("bm25.load_failed", collection=collection, error=repr(exc))
                return None
        return Bm25Index(version, meta["ids"], meta["documents"], meta["metadatas"], retriever)

    def build(self, collection: str, version: str) -> Bm25Index:
        """Build from the collection's chunks in Chroma and persist it."""
        started = time.perf_counter()
        ids: list[str] = []
        documents: list[str] = []
        metadatas: list[dict[str, Any]] = []
        for page in self.store.iterate(collection, include=("documents", "metadatas")):
            ids.extend(page["ids"])
            documents.extend(d or "" for d in page["documents"])
            metadatas.extend(dict(m or {}) for m in page["metadatas"])
        retriever = None
        if ids:
            import bm25s

            retriever = bm25s.BM25()
            retriever.index(
                [
                    chunk_terms(d, m) or ["__empty__"]
                    for d, m in zip(documents, metadatas, strict=True)
                ],
                show_progress=False,
            )
        index = Bm25Index(version, ids, documents, metadatas, retriever)
        self._save(collection, index)
        log.info(
            "bm25.built",
            collection=collection,
            chunks=len(ids),
            version=version,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return index

    def _save(self, collection: str, index: Bm25Index) -> None:
        final = self._dir(collection)
        tmp = final.with_name(f".{collection}.{time.monotonic_ns()}")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            if index.retriever is not None:
                index.retriever.save(str(tmp / "index"))
            (tmp / "chunks.json").write_text(
                json.dumps(
                    {
                        "version": index.version,
                        "tokenizer": TOKENIZER_VERSION,
                        "ids": index.ids,
                        "documents": index.documents,
                        "metadatas": index.metadatas,
                    }
                )
            )
            old = final.with_name(f".{collection}.old.{time.monotonic_ns()}")
            if final.exists():
                final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            # The index still serves from memory; it is rebuilt next time it is needed.
            log.warning("bm25.save_failed", collection=collection, error=repr(exc))
            shutil.rmtree(tmp, ignore_errors=True)

    def drop(self, collection: str) -> None:
        with self._guard:
            self._mem.pop(collection, None)
        shutil.rmtree(self._dir(collection), ignore_errors=True)


async def bump_version(redis: Any, collection: str) -> str:
    """Mark a collection changed (its BM25 index is rebuilt on the next hybrid search)."""
    return str(await redis.incr(version_key(collection)))
