"""Every ORM model of the auth service (Alembic reads `Base.metadata` from here)."""

from auth_service.domain.users.models import Base, User

__all__ = ["Base", "User"]
