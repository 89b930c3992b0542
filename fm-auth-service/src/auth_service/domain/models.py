"""Every table of the auth service (imported by the Alembic env)."""

from auth_service.domain.base import Base
from auth_service.domain.users import models as _users

__all__ = ["Base"]
_ = (_users,)
