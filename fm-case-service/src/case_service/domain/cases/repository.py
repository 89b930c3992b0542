"""Every query on cases, messages, turns, idempotency records and the cleanup outbox.

Each read of a case takes the owner: a case of another user is simply not found.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update

from case_service.domain.cases.models import (
    Case,
    CaseMessage,
    CaseTurn,
    CleanupOutbox,
    IdempotencyRecord,
)
from case_service.domain.reports.models import Report
from fm_common.db import Repository


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class CaseRepository(Repository[Case]):
    """`get_owned`, `add` (flushed) come from the base; a case's rows hang off it."""

    model = Case

    # ---- cases -------------------------------------------------------------------
    async def count_created_between(self, owner_id: str, start: datetime, end: datetime) -> int:
        stmt = select(func.count()).where(
            Case.owner_id == owner_id, Case.created_at >= start, Case.created_at < end
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def list_owned(
        self,
        owner_id: str,
        *,
        state: str | None,
        source: str | None,
        q: str | None,
        include_archived: bool,
        include_empty: bool,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Case], int]:
        conds = [Case.owner_id == owner_id]
        if state is not None:
            conds.append(Case.state == state)
        if source is not None:
            conds.append(Case.source == source)
        if not include_archived:
            conds.append(Case.archived_at.is_(None))
        if not include_empty:
            conds.append(Case.current_turn > 0)
        if q:
            pattern = f"%{_escape_like(q.lower())}%"
            conds.append(
                or_(
                    func.lower(Case.title).like(pattern, escape="\\"),
                    func.lower(Case.description).like(pattern, escape="\\"),
                )
            )
        total = int((await self.session.execute(select(func.count()).where(*conds))).scalar_one())
        stmt = (
            select(Case)
            .where(*conds)
            .order_by(Case.last_activity_at.desc(), Case.created_at.desc(), Case.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return (await self.session.execute(stmt)).scalars().all(), total

    async def delete_case(self, owner_id: str, case_id: str) -> bool:
        """Delete the case and everything stored with it; False when there was none."""
        case = await self.get_owned(owner_id, case_id, for_update=True)
        if case is None:
            return False
        await self.session.execute(delete(CaseMessage).where(CaseMessage.case_id == case_id))
        await self.session.execute(delete(CaseTurn).where(CaseTurn.case_id == case_id))
        await self.session.execute(delete(Report).where(Report.case_id == case_id))
        await self.session.execute(delete(Case).where(Case.id == case_id))
        return True

    async def expired_case_ids(self, cutoff: datetime, limit: int) -> Sequence[tuple[str, str]]:
        """(case_id, owner_id) of resolved/closed cases that ended before `cutoff`."""
        ended = func.coalesce(Case.closed_at, Case.resolved_at)
        stmt = (
            select(Case.id, Case.owner_id)
            .where(Case.state.in_(("resolved", "closed")), ended < cutoff)
            .order_by(ended)
            .limit(limit)
        )
        return [(r[0], r[1]) for r in (await self.session.execute(stmt)).all()]

    # ---- messages ----------------------------------------------------------------
    async def add_message(self, message: CaseMessage) -> CaseMessage:
        self.session.add(message)
        return message

    async def list_messages(
        self, case_id: str, *, limit: int, offset: int
    ) -> tuple[Sequence[CaseMessage], int]:
        total = int(
            (
                await self.session.execute(
                    select(func.count()).where(CaseMessage.case_id == case_id)
                )
            ).scalar_one()
        )
        stmt = (
            select(CaseMessage)
            .where(CaseMessage.case_id == case_id)
            .order_by(CaseMessage.seq)
            .limit(limit)
            .offset(offset)
        )
        return (await self.session.execute(stmt)).scalars().all(), total

    async def recent_messages(self, case_id: str, limit: int) -> list[CaseMessage]:
        stmt = (
            select(CaseMessage)
            .where(CaseMessage.case_id == case_id)
            .order_by(CaseMessage.seq.desc())
            .limit(limit)
        )
        rows = list((await self.session.execute(stmt)).scalars().all())
        rows.reverse()
        return rows

    # ---- turns -------------------------------------------------------------------
    async def get_turn(self, case_id: str, turn_key: str) -> CaseTurn | None:
        return await self.session.get(CaseTurn, (case_id, turn_key))

    async def add_turn(self, turn: CaseTurn) -> None:
        self.session.add(turn)

    # ---- idempotency -------------------------------------------------------------
    async def get_idempotency(self, owner_id: str, key: str) -> IdempotencyRecord | None:
        stmt = select(IdempotencyRecord).where(
            IdempotencyRecord.owner_id == owner_id, IdempotencyRecord.key == key
        )
        # populate_existing: after a lost race the row must be read fresh, not from cache.
        stmt = stmt.execution_options(populate_existing=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add_idempotency(self, record: IdempotencyRecord) -> None:
        self.session.add(record)

    # ---- cleanup outbox ----------------------------------------------------------
    async def add_outbox(self, row: CleanupOutbox) -> None:
        self.session.add(row)

    async def get_outbox(self, case_id: str) -> CleanupOutbox | None:
        stmt = select(CleanupOutbox).where(CleanupOutbox.case_id == case_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_outbox(
        self, *, enqueued_before: datetime, limit: int
    ) -> Sequence[CleanupOutbox]:
        stmt = (
            select(CleanupOutbox)
            .where(
                or_(
                    CleanupOutbox.last_enqueued_at.is_(None),
                    CleanupOutbox.last_enqueued_at < enqueued_before,
                )
            )
            .order_by(CleanupOutbox.created_at)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def mark_enqueued(self, case_ids: Sequence[str], at: datetime) -> None:
        if case_ids:
            await self.session.execute(
                update(CleanupOutbox)
                .where(CleanupOutbox.case_id.in_(list(case_ids)))
                .values(last_enqueued_at=at)
            )

    async def remove_outbox(self, case_id: str) -> None:
        await self.session.execute(delete(CleanupOutbox).where(CleanupOutbox.case_id == case_id))
