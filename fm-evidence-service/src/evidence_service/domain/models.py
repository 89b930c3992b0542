"""The declarative base of every table of the evidence service (Alembic's target)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from fm_common.db import new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


# Import the models so Base.metadata knows every table.
from evidence_service.domain.evidence import models as _evidence_models  # noqa: E402, F401
