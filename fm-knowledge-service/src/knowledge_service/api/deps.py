"""Annotated dependencies of the knowledge routes.

They are `async def` although they only read `app.state`: FastAPI runs a plain `def`
dependency in its thread pool, and each such hop is two thread wake-ups per request,
which on a busy machine cost milliseconds of search latency (bench/search_latency.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fm_common.blobs import BlobStore
from fm_common.db import DbSession
from knowledge_service.config import Settings
from knowledge_service.domain.search.service import SearchDeps
from knowledge_service.domain.vectors.store import VectorStore


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _maker(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.app.state.sessionmaker  # type: ignore[no-any-return]


async def _search_deps(request: Request) -> SearchDeps:
    return request.app.state.search_deps  # type: ignore[no-any-return]


async def _store(request: Request) -> VectorStore:
    return request.app.state.search_deps.store  # type: ignore[no-any-return]


async def _blobs(request: Request) -> BlobStore:
    return request.app.state.blobs  # type: ignore[no-any-return]


async def _redis(request: Request) -> Any:
    return request.app.state.redis


async def _http(request: Request) -> Any:
    return request.app.state.http


# Committed before the response is sent (see fm_common.db.DbSession).
SessionDep = DbSession
SessionMakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(_maker)]
SettingsDep = Annotated[Settings, Depends(_settings)]
SearchDepsDep = Annotated[SearchDeps, Depends(_search_deps)]
StoreDep = Annotated[VectorStore, Depends(_store)]
# Originals and extracted text (fm_common.blobs: the data dir or S3).
BlobsDep = Annotated[BlobStore, Depends(_blobs)]
RedisDep = Annotated[Any, Depends(_redis)]
HttpDep = Annotated[Any, Depends(_http)]
