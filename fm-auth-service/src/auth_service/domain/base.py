"""The declarative base of the auth service's tables."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from fm_common.db import new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()
