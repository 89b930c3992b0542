"""Every SQL query on users."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from auth_service.domain.users.models import User
from fm_common.db import Repository
from fm_common.errors import Conflict


class UserRepository(Repository[User]):
    """`get` by id comes from the base; a user owns itself, so there is no `get_owned`."""

    model = User

    async def by_username(self, username: str) -> User | None:
        result = await self.session.execute(
            select(User).where(User.username_key == username.lower())
        )
        return result.scalar_one_or_none()

    async def by_email(self, email: str) -> User | None:
        result = await self.session.execute(select(User).where(User.email_key == email.lower()))
        return result.scalar_one_or_none()

    async def taken(self, username: str, email: str | None) -> tuple[bool, bool]:
        """(username taken, email taken)."""
        conditions = [User.username_key == username.lower()]
        if email:
            conditions.append(User.email_key == email.lower())
        rows = (await self.session.execute(select(User).where(or_(*conditions)))).scalars().all()
        name_taken = any(u.username_key == username.lower() for u in rows)
        email_taken = bool(email) and any(u.email_key == (email or "").lower() for u in rows)
        return name_taken, email_taken

    async def add(self, row: User) -> User:
        """Insert a user; a concurrent insert of the same username or email is a 409."""
        try:
            return await super().add(row)
        except IntegrityError:
            await self.session.rollback()
            raise Conflict(
                "That username or email is already registered.", code="USER_EXISTS"
            ) from None
