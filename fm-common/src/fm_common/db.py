"""SQL for the services that own tables: async engine, request-scoped session, Alembic,
and the base class of every repository.

SQLite (WAL, foreign keys, busy timeout) by default, PostgreSQL by URL; the same Alembic
migrations serve both. A service runs its migrations at start-up (`migrate`).
The persistence convention (docs/architecture.md "Inside a service"): `domain/base.py` holds
the service's `Base` (on `new_metadata()`), `domain/models.py` imports every model module
for Alembic, and each aggregate's `repository.py` is a `Repository[Row]` subclass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import structlog
from fastapi import Depends, FastAPI, Request
from sqlalchemy import MetaData, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import NullPool

log = structlog.get_logger("db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; for SQLite, the file's folder is created and WAL switched on."""
    if is_sqlite(url):
        db = make_url(url).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    return create_async_engine(url, **kwargs)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


_AFTER_COMMIT = "fm_after_commit"


def after_commit(session: AsyncSession, work: Callable[[], None]) -> None:
    """Run blocking `work` (deleting files, say) in a worker thread once the request's
    session has committed, before the response; dropped if it rolls back.

    For what may only happen once the rows are gone and must not hold the event loop (an
    object store's delete is a network round trip). `work` must not raise: the commit has
    happened, so what it raises is logged, not answered with an error.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(work)


async def session_dependency(request: Request) -> AsyncIterator[AsyncSession]:
    """Request-scoped session: commits when the handler succeeds, rolls back otherwise;
    then runs what `after_commit` queued.

    Needs `app.state.sessionmaker`. Services never commit; this does.
    """
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            session.info.pop(_AFTER_COMMIT, None)
            await session.rollback()
            raise
        for work in session.info.pop(_AFTER_COMMIT, []):
            try:
                await asyncio.to_thread(work)
            except Exception:
                log.exception("db.after_commit_failed", work=repr(work))


# The request session as a route dependency, committed BEFORE the response is sent.
# FastAPI runs the exit code of a plain `Depends(session_dependency)` after the response
# has gone out (dependency scope "request"), so a client could see a 2xx for a commit
# that then fails, or read before the write is visible. scope="function" closes it first.
DbSession = Annotated[AsyncSession, Depends(session_dependency, scope="function")]


RowT = TypeVar("RowT", bound=DeclarativeBase)


class Repository(Generic[RowT]):
    """The queries of one aggregate over a session it never commits (the session
    dependency or the flow that opened it does).

    A subclass names its row class and adds its own queries on `self.session`:

        class CaseRepository(Repository[Case]):
            model = Case

    `get_owned` is the read every user-facing lookup goes through: another owner's row is
    simply not found. It needs `id` and `owner_id` columns (rename them with
    `id_column` / `owner_column`).
    """

    model: type[RowT]
    id_column: ClassVar[str] = "id"
    owner_column: ClassVar[str] = "owner_id"

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, row_id: Any) -> RowT | None:
        """The row with this primary key (any owner: for internal and worker paths)."""
        return await self.session.get(self.model, row_id)

    async def get_owned(
        self, owner_id: str, row_id: str, *, for_update: bool = False
    ) -> RowT | None:
        """The row if it is `owner_id`'s, else None; `for_update` locks it (PostgreSQL)."""
        stmt = select(self.model).where(
            getattr(self.model, self.id_column) == row_id,
            getattr(self.model, self.owner_column) == owner_id,
        )
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, row: RowT) -> RowT:
        """Insert the row and flush, so a constraint it breaks raises here."""
        self.session.add(row)
        await self.session.flush()
        return row

    async def delete(self, row: RowT) -> None:
        await self.session.delete(row)
        await self.session.flush()


# The PostgreSQL advisory lock key every service's migrations take (any constant; a
# session-level lock, released when the migrating connection ends).
MIGRATION_LOCK = 0x464D4D49  # "FMMI"


def _alembic_config(script_location: Path, url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def migrate_sync(script_location: Path, url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` with the migrations in `script_location`."""
    from alembic import command

    command.upgrade(_alembic_config(script_location, url), revision)


async def migrate(script_location: Path, url: str, revision: str = "head") -> None:
    # Alembic's env runs its own event loop for the async driver, so keep it off ours.
    await asyncio.to_thread(migrate_sync, script_location, url, revision)


@contextlib.asynccontextmanager
async def open_database(
    app: FastAPI,
    migrations: Path,
    url: str,
    *,
    engine_factory: Callable[[str], AsyncEngine] = create_engine,
    sessionmaker_factory: Callable[[AsyncEngine], Any] = create_sessionmaker,
) -> AsyncIterator[AsyncEngine]:
    """A SQL service's database for the length of its lifespan: migrated to head, the
    engine and its sessionmaker on `app.state` (`engine`, `sessionmaker`, which
    `session_dependency` and `ping` read), the engine disposed on the way out."""
    await migrate(migrations, url)
    engine = engine_factory(url)
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker_factory(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def ping(engine: AsyncEngine) -> None:
    """The readiness check of a SQL service's database: one round trip."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def run_alembic_env(target_metadata: MetaData) -> None:
    """The body of every service's migrations/env.py (online and offline modes)."""
    from alembic import context

    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is set by fm_common.db.migrate"
    render_as_batch = is_sqlite(url)

    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=target_metadata,
            literal_binds=True,
            render_as_batch=render_as_batch,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(connection: Any) -> None:
        # Replicas starting at once on one PostgreSQL migrate one after the other: the
        # first upgrades, the others then find the database at head (ADR 0145).
        locked = connection.dialect.name == "postgresql"
        if locked:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=render_as_batch,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if locked:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()

    async def run_async() -> None:
        engine = create_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(do_run)
        finally:
            await engine.dispose()

    asyncio.run(run_async())
