"""Cases, their messages, stored turns, create idempotency records, cleanup outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from case_service.domain.base import Base, UTCDateTime


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(20))
    priority: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(20))
    organization_id: Mapped[str] = mapped_column(String(100))
    closure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    current_turn: Mapped[int] = mapped_column(Integer, default=0)
    turns_without_progress: Mapped[int] = mapped_column(Integer, default=0)
    # Messages stored so far: the next message's sequence number is message_count + 1.
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    investigation: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The client's free-form metadata (CaseCreateRequest.metadata), returned as given.
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_cases_owner_activity", "owner_id", "last_activity_at"),
        Index("ix_cases_owner_created", "owner_id", "created_at"),
        Index("ix_cases_state_ended", "state", "closed_at", "resolved_at"),
    )


class CaseMessage(Base):
    __tablename__ = "case_messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), ForeignKey("cases.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    turn_number: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    token_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("case_id", "seq", name="uq_case_messages_case_seq"),)


class CaseTurn(Base):
    """A stored agent turn; its key makes a repeated append a replay."""

    __tablename__ = "case_turns"

    case_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    turn_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    turn_number: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdempotencyRecord(Base):
    """The first answer to `POST /cases` with an Idempotency-Key, per user and key."""

    __tablename__ = "case_idempotency"

    owner_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CleanupOutbox(Base):
    """A deleted case whose evidence files and knowledge collection are still to drop.

    Written in the same transaction as the delete, removed by the worker once both
    services confirmed; a row left here is retried, never forgotten.
    """

    __tablename__ = "case_cleanup_outbox"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), unique=True)
    owner_id: Mapped[str] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
