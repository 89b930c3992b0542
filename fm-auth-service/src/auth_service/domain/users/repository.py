"""Every SQL query on users."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.users.models import User
from fm_common.errors import Conflict


async def get(db: AsyncSession, user_id: str) -> User | None:
    return await db.get(User, user_id)


async def by_username(db: AsyncSession, username: str) -> User | None:
    result = await db.execute(select(User).where(User.username_key == username.lower()))
    return result.scalar_one_or_none()


async def by_email(db: AsyncSession, email: str) -> User | None:
    result = await db.execute(select(User).where(User.email_key == email.lower()))
    return result.scalar_one_or_none()


async def taken(db: AsyncSession, username: str, email: str | None) -> tuple[bool, bool]:
    """(username taken, email taken)."""
    conditions = [User.username_key == username.lower()]
    if email:
        conditions.append(User.email_key == email.lower())
    rows = (await db.execute(select(User).where(or_(*conditions)))).scalars().all()
    name_taken = any(u.username_key == username.lower() for u in rows)
    email_taken = bool(email) and any(u.email_key == (email or "").lower() for u in rows)
    return name_taken, email_taken


async def add(db: AsyncSession, user: User) -> User:
    """Insert a user; a concurrent insert of the same username or email is a 409."""
    db.add(user)
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        raise Conflict(
            "That username or email is already registered.", code="USER_EXISTS"
        ) from None
    return user
