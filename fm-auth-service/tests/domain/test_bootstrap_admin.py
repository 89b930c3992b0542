"""The first admin when several auth replicas start at once on one database (ADR 0145)."""

from __future__ import annotations

import pytest

from auth_service.domain.users import service
from auth_service.domain.users.passwords import PasswordHasher
from auth_service.domain.users.repository import UserRepository
from auth_service.main import MIGRATIONS
from fm_common.db import create_engine, create_sessionmaker, migrate

PASSWORD = "correct horse battery"


async def test_an_admin_created_by_another_replica_meanwhile_is_taken_as_it_is(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    await migrate(MIGRATIONS, postgres_url)
    engine = create_engine(postgres_url)
    maker = create_sessionmaker(engine)
    hasher = PasswordHasher(rounds=4)
    try:
        async with maker() as db:  # the other replica, first
            assert await service.bootstrap_admin(db, hasher, "admin", PASSWORD)
            await db.commit()
        # This replica looked before the other one's insert: it sees no admin, inserts,
        # and the unique index refuses the second row.
        real = UserRepository.by_username
        looks: list[str] = []

        async def stale_first(self: UserRepository, username: str):  # type: ignore[no-untyped-def]
            looks.append(username)
            return None if len(looks) == 1 else await real(self, username)

        monkeypatch.setattr(UserRepository, "by_username", stale_first)
        async with maker() as db:
            assert await service.bootstrap_admin(db, hasher, "admin", PASSWORD)
            await db.commit()
            # ... and with another password the account is still not made admin.
            looks.clear()
            assert not await service.bootstrap_admin(db, hasher, "admin", "another password!")
        assert len(looks) == 2
    finally:
        await engine.dispose()
