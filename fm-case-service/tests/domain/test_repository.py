"""The domain and repository layer on both backends: SQLite and a real PostgreSQL server.

The PostgreSQL runs are what proves the unique constraints and row locks hold under
real concurrency (separate connections racing), not only SQLite's serialized writers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import case_service
from case_service.domain.cases import flows, internal, service
from case_service.domain.cases.repository import CaseRepository
from case_service.storage import open_engine
from fm_common.contracts.case import (
    CaseCreateRequest,
    CaseState,
    CaseTransitionRequest,
    CaseUpdateRequest,
    TurnAppendRequest,
    TurnMessage,
)
from fm_common.db import create_sessionmaker, migrate
from fm_common.errors import Conflict, NotFound

MIGRATIONS = Path(case_service.__file__).parent / "migrations"
Maker = async_sessionmaker[AsyncSession]


@pytest.fixture(params=["sqlite", "postgres"])
async def maker(request: pytest.FixtureRequest) -> AsyncIterator[Maker]:
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("postgres_url")
    await migrate(MIGRATIONS, url)
    engine = open_engine(url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def tx(maker: Maker, fn, *args, **kwargs):
    async with maker() as session, session.begin():
        return await fn(session, *args, **kwargs)


def _turn(key: str, text: str = "q") -> TurnAppendRequest:
    return TurnAppendRequest(
        turn_key=key,
        user_message=TurnMessage(content=text),
        assistant_message=TurnMessage(content=f"answer to {text}"),
    )


async def _open(maker: Maker, owner: str, key: str | None = None, **body) -> dict:
    status, answer, _ = await tx(
        maker,
        service.open_case,
        owner,
        CaseCreateRequest(**body),
        organization_id="default",
        idempotency_key=key,
    )
    assert status == 201
    return answer


async def test_case_lifecycle_is_scoped_to_its_owner(maker: Maker):
    case = await _open(maker, "alice", title="db down", initial_message="help")
    cid = case["case_id"]
    with pytest.raises(NotFound):
        await tx(maker, service.get_case, "bob", cid)
    detail = await tx(
        maker, service.update_case, "alice", cid, CaseUpdateRequest(title="db up"), if_match=1
    )
    assert (detail.title, detail.version) == ("db up", 2)
    with pytest.raises(Conflict) as stale:
        await tx(maker, service.update_case, "alice", cid, CaseUpdateRequest(title="x"), if_match=1)
    assert stale.value.headers == {"x-expected-version": "1", "x-actual-version": "2"}
    moved = await tx(
        maker,
        service.transition_case,
        "alice",
        cid,
        CaseTransitionRequest(to_state=CaseState.INVESTIGATING),
    )
    assert moved.state == CaseState.INVESTIGATING
    listed = await tx(
        maker,
        service.list_cases,
        "alice",
        state=CaseState.INVESTIGATING,
        source=None,
        q="DB",
        include_archived=False,
        include_empty=True,
        limit=10,
        offset=0,
    )
    assert [c.case_id for c in listed.cases] == [cid]
    foreign = await tx(
        maker,
        service.list_cases,
        "bob",
        state=None,
        source=None,
        q=None,
        include_archived=True,
        include_empty=True,
        limit=10,
        offset=0,
    )
    assert foreign.total_count == 0


async def test_messages_and_turns_round_trip(maker: Maker):
    case = await _open(maker, "alice", initial_message="first")
    cid = case["case_id"]
    r1 = await tx(maker, service.append_turn, "alice", cid, _turn("turn-key-001", "one"))
    r2 = await tx(maker, service.append_turn, "alice", cid, _turn("turn-key-002", "two"))
    replay = await tx(maker, service.append_turn, "alice", cid, _turn("turn-key-001", "one"))
    assert (r1.turn_number, r2.turn_number) == (1, 2)
    assert replay.replayed
    assert replay.user_message_id == r1.user_message_id
    page = await tx(maker, service.list_messages, "alice", cid, limit=10, offset=0)
    assert [m.content for m in page.messages] == [
        "first",
        "one",
        "answer to one",
        "two",
        "answer to two",
    ]
    ctx = await tx(maker, internal.case_context, "alice", cid, history=2)
    assert [m.content for m in ctx.recent_messages] == ["two", "answer to two"]


async def test_racing_creates_with_one_key_make_one_case(maker: Maker):
    answers = await asyncio.gather(
        *(_open(maker, "alice", "race-key-pg-1", title="raced") for _ in range(6))
    )
    assert len({a["case_id"] for a in answers}) == 1
    listed = await tx(
        maker,
        service.list_cases,
        "alice",
        state=None,
        source=None,
        q=None,
        include_archived=True,
        include_empty=True,
        limit=50,
        offset=0,
    )
    assert listed.total_count == 1


async def test_racing_turns_get_distinct_numbers_and_one_key_stores_once(maker: Maker):
    case = await _open(maker, "alice")
    cid = case["case_id"]
    distinct = await asyncio.gather(
        *(tx(maker, service.append_turn, "alice", cid, _turn(f"turn-key-d{i}")) for i in range(5))
    )
    assert sorted(r.turn_number for r in distinct) == [1, 2, 3, 4, 5]
    same = await asyncio.gather(
        *(tx(maker, service.append_turn, "alice", cid, _turn("turn-key-same")) for _ in range(5))
    )
    assert len({r.turn_number for r in same}) == 1
    page = await tx(maker, service.list_messages, "alice", cid, limit=100, offset=0)
    assert page.total_count == 12


async def test_delete_writes_the_outbox_in_the_same_transaction(maker: Maker):
    case = await _open(maker, "alice", initial_message="x")
    cid = case["case_id"]
    sent: list[tuple[str, str]] = []

    def send(case_id: str, owner_id: str) -> None:
        sent.append((case_id, owner_id))

    await flows.delete_case(maker, send, "bob", cid)  # not bob's: nothing happens
    assert sent == []
    await flows.delete_case(maker, send, "alice", cid)
    assert sent == [(cid, "alice")]
    with pytest.raises(NotFound):
        await tx(maker, service.get_case, "alice", cid)

    async def outbox(session: AsyncSession):
        return await CaseRepository(session).get_outbox(cid)

    row = await tx(maker, outbox)
    assert row is not None
    assert row.last_enqueued_at is not None


async def test_expired_cases_are_found_by_end_date(maker: Maker):
    case = await _open(maker, "alice")
    cid = case["case_id"]
    await tx(
        maker,
        service.transition_case,
        "alice",
        cid,
        CaseTransitionRequest(to_state=CaseState.CLOSED),
    )

    async def expired(session: AsyncSession, cutoff: datetime):
        return await CaseRepository(session).expired_case_ids(cutoff, 10)

    assert await tx(maker, expired, datetime.now(UTC) - timedelta(days=1)) == []
    assert await tx(maker, expired, datetime.now(UTC) + timedelta(days=1)) == [(cid, "alice")]


async def test_racing_writes_with_one_version_let_exactly_one_win(maker: Maker):
    case = await _open(maker, "alice")
    cid = case["case_id"]

    async def write(i: int) -> str:
        try:
            await tx(
                maker,
                service.update_case,
                "alice",
                cid,
                CaseUpdateRequest(title=f"writer {i}"),
                if_match=1,
            )
        except Conflict:
            return "conflict"
        return "ok"

    outcomes = await asyncio.gather(*(write(i) for i in range(5)))
    assert sorted(outcomes) == ["conflict"] * 4 + ["ok"]
    detail = await tx(maker, service.get_case, "alice", cid)
    assert detail.version == 2
    assert detail.title.startswith("writer ")


async def test_migrations_match_the_models(maker: Maker):
    """Autogenerate finds nothing to change after the migrations ran (both backends)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from case_service.domain.models import Base

    def diff(connection) -> list:
        ctx = MigrationContext.configure(connection, opts={"compare_type": False})
        return compare_metadata(ctx, Base.metadata)

    async with maker() as session:
        conn = await session.connection()
        changes = await conn.run_sync(diff)
    assert changes == []
