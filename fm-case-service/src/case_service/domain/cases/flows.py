"""Deleting cases: the rows go at once, the evidence files and knowledge collection later.

The delete and an outbox row commit in one transaction, then `cases.cleanup_case` is
enqueued. If Redis is down the outbox row stays and the sweeper (this service's periodic
pass, and the worker's `cases.drain_cleanup_outbox`) enqueues it again: a cleanup is
retried until it succeeds, never forgotten.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from case_service.domain.cases.models import CleanupOutbox
from case_service.domain.cases.repository import CaseRepository
from case_service.domain.cases.service import now
from fm_common.errors import NotFound
from fm_common.jobs import enqueue

log = structlog.get_logger(__name__)

CLEANUP_TASK = "cases.cleanup_case"
CLEANUP_QUEUE = "maintenance"

Enqueue = Callable[[str, str], None]


def broker_enqueue(broker_url: str) -> Enqueue:
    """An enqueue function sending `cases.cleanup_case` to the real broker."""

    def _send(case_id: str, owner_id: str) -> None:
        enqueue(
            broker_url,
            CLEANUP_TASK,
            queue=CLEANUP_QUEUE,
            kwargs={"case_id": case_id, "owner_id": owner_id},
        )

    return _send


async def delete_case_rows(session: AsyncSession, owner_id: str, case_id: str) -> bool:
    """Delete the case and record its pending cleanup (same transaction); False if absent."""
    repo = CaseRepository(session)
    if not await repo.delete_case(owner_id, case_id):
        return False
    if await repo.get_outbox(case_id) is None:
        await repo.add_outbox(
            CleanupOutbox(
                id=str(uuid.uuid4()),
                case_id=case_id,
                owner_id=owner_id,
                attempts=0,
                created_at=now(),
            )
        )
    await session.flush()
    log.info("case.deleted", case_id=case_id, owner_id=owner_id)
    return True


async def enqueue_cleanups(
    maker: async_sessionmaker[AsyncSession], send: Enqueue, items: Sequence[tuple[str, str]]
) -> int:
    """Enqueue cleanups; mark the ones sent. A broker that is down leaves them pending."""
    sent: list[str] = []
    for case_id, owner_id in items:
        try:
            await asyncio.to_thread(send, case_id, owner_id)
        except Exception as exc:  # kombu/redis errors vary; the row stays for the sweeper
            log.warning("case.cleanup_enqueue_failed", case_id=case_id, error=repr(exc))
            break
        sent.append(case_id)
    if sent:
        async with maker() as session, session.begin():
            await CaseRepository(session).mark_enqueued(sent, now())
    return len(sent)


async def delete_case(
    maker: async_sessionmaker[AsyncSession], send: Enqueue, owner_id: str, case_id: str
) -> None:
    """DELETE /cases/{id}: idempotent; the case is gone even when cleanup must wait."""
    async with maker() as session, session.begin():
        deleted = await delete_case_rows(session, owner_id, case_id)
    if deleted:
        await enqueue_cleanups(maker, send, [(case_id, owner_id)])


async def sweep_outbox(
    maker: async_sessionmaker[AsyncSession],
    send: Enqueue,
    *,
    retry_after: timedelta,
    limit: int = 200,
    at: datetime | None = None,
) -> int:
    """Enqueue again every pending cleanup not enqueued within `retry_after`."""
    cutoff = (at or now()) - retry_after
    async with maker() as session:
        rows = await CaseRepository(session).list_outbox(enqueued_before=cutoff, limit=limit)
        items = [(r.case_id, r.owner_id) for r in rows]
    if not items:
        return 0
    count = await enqueue_cleanups(maker, send, items)
    log.info("case.outbox_swept", pending=len(items), enqueued=count)
    return count


async def run_sweeper(
    maker: async_sessionmaker[AsyncSession],
    send: Enqueue,
    *,
    every: float,
    retry_after: timedelta,
) -> None:
    """The service's periodic outbox pass (cancelled at shutdown)."""
    while True:
        await asyncio.sleep(every)
        try:
            await sweep_outbox(maker, send, retry_after=retry_after)
        except Exception as exc:  # a database hiccup must not kill the loop; logged loudly
            log.error("case.outbox_sweep_failed", error=repr(exc))


async def purge_expired(
    maker: async_sessionmaker[AsyncSession],
    send: Enqueue,
    *,
    retention: timedelta,
    batch: int = 100,
) -> int:
    """Delete resolved/closed cases that ended more than `retention` ago (like DELETE)."""
    cutoff = now() - retention
    purged = 0
    while True:
        async with maker() as session:
            expired = await CaseRepository(session).expired_case_ids(cutoff, batch)
        if not expired:
            break
        for case_id, owner_id in expired:
            async with maker() as session, session.begin():
                await delete_case_rows(session, owner_id, case_id)
        purged += len(expired)
        await enqueue_cleanups(maker, send, expired)
        if len(expired) < batch:
            break
    if purged:
        log.info("case.purged_expired", count=purged)
    return purged


class CleanupFailed(Exception):
    """A cleanup step failed; the outbox row keeps the case for the next attempt."""


async def run_cleanup(
    maker: async_sessionmaker[AsyncSession],
    *,
    case_id: str,
    owner_id: str,
    token_for: Callable[[str], Awaitable[str]],
    drop_files: Callable[[str, str], Awaitable[None]],
    drop_collection: Callable[[str, str], Awaitable[None]],
) -> None:
    """Drop the case's evidence files and knowledge collection, then its outbox row.

    `token_for(owner_id)` gives a service token acting for the owner; `drop_files` and
    `drop_collection` (case_id, token) call the evidence and knowledge internal routes
    (both idempotent). On any failure the attempt and error are recorded on the outbox
    row and CleanupFailed is raised for the caller to retry.
    """
    errors: list[str] = []
    try:
        token = await token_for(owner_id)
    except Exception as exc:  # auth down or refusing: recorded, retried
        errors.append(f"service token: {exc!r}")
    else:
        for name, step in (("evidence", drop_files), ("knowledge", drop_collection)):
            try:
                await step(case_id, token)
            except NotFound:
                # Nothing of this owner's is there (the routes are owner-scoped): done.
                log.warning("case.cleanup_not_found", case_id=case_id, service=name)
            except Exception as exc:  # one service down must not skip the other
                errors.append(f"{name}: {exc!r}")
    async with maker() as session, session.begin():
        repo = CaseRepository(session)
        row = await repo.get_outbox(case_id)
        if not errors:
            await repo.remove_outbox(case_id)
            log.info("case.cleanup_done", case_id=case_id)
            return
        if row is not None:
            row.attempts += 1
            row.last_error = "; ".join(errors)[:4000]
    log.warning("case.cleanup_failed", case_id=case_id, errors=errors)
    raise CleanupFailed("; ".join(errors))


async def mark_cleanup_failed(
    maker: async_sessionmaker[AsyncSession], case_id: str, error: str
) -> None:
    """Retries are used up: flag the outbox row (kept, and retried by the sweeper later)."""
    async with maker() as session, session.begin():
        row = await CaseRepository(session).get_outbox(case_id)
        if row is not None:
            row.failed_at = now()
            row.last_error = error[:4000]
    log.error("case.cleanup_gave_up", case_id=case_id, error=error)
