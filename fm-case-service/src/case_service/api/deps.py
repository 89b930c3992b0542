"""Dependency aliases of the case service's routes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, TypeAlias

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from case_service.config import Settings
from case_service.domain.cases.flows import Enqueue
from fm_common.auth import CurrentPrincipal
from fm_common.clients.evidence import EvidenceClient
from fm_common.db import DbSession
from fm_common.errors import Unprocessable
from fm_common.jobs import JobStore

# Committed before the response is sent (see fm_common.db.DbSession).
SessionDep: TypeAlias = DbSession


async def read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for routes that only read (SQLite: no write lock; see storage.py)."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    async with maker() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(read_session, scope="function")]

IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_-]{8,255}$"
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_maker(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.app.state.sessionmaker  # type: ignore[no-any-return]


def get_jobs(request: Request) -> JobStore:
    return JobStore(request.app.state.redis)


def get_cleanup_enqueue(request: Request) -> Enqueue:
    return request.app.state.cleanup_enqueue  # type: ignore[no-any-return]


def get_evidence(request: Request) -> EvidenceClient:
    """The evidence client (no retries: it only decorates a view, which must stay fast)."""
    settings: Settings = request.app.state.settings
    return EvidenceClient(
        settings.evidence_url,
        request.app.state.http,
        retries=0,
        retry_after=settings.retry_after_seconds,
    )


def if_match_version(
    if_match: Annotated[str | None, Header(alias="If-Match", max_length=64)] = None,
) -> int | None:
    """`If-Match: <version>` (also `"3"` or `W/"3"`); absent means no version check."""
    if if_match is None or if_match.strip() == "*":
        return None
    m = _ETAG.match(if_match)
    if m is None:
        raise Unprocessable(
            "If-Match must be the case version, a whole number.", code="INVALID_IF_MATCH"
        )
    return int(m.group(1))


SettingsDep = Annotated[Settings, Depends(get_settings)]
MakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_maker)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
CleanupEnqueueDep = Annotated[Enqueue, Depends(get_cleanup_enqueue)]
IfMatchDep = Annotated[int | None, Depends(if_match_version)]
EvidenceDep = Annotated[EvidenceClient, Depends(get_evidence)]
IdempotencyKeyDep = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=255,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="8-255 chars of [A-Za-z0-9_-]; a repeat returns the first answer",
    ),
]

__all__ = [
    "CleanupEnqueueDep",
    "CurrentPrincipal",
    "EvidenceDep",
    "IdempotencyKeyDep",
    "IfMatchDep",
    "JobsDep",
    "MakerDep",
    "ReadSessionDep",
    "SessionDep",
    "SettingsDep",
]
