"""The ORM base of the knowledge service; Alembic reads `Base.metadata` from here."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from fm_common.db import new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


# Register every table on Base.metadata (imported for its side effect).
from knowledge_service.domain.documents import models as _documents  # noqa: E402, F401
