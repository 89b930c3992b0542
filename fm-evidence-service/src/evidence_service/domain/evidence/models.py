"""The evidence_files table: one row per stored file (the bytes live on disk)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from evidence_service.domain.base import Base
from fm_common.db import utcnow


class EvidenceFileRow(Base):
    __tablename__ = "evidence_files"
    __table_args__ = (
        # Per-case dedupe: two uploads of the same bytes to one case store one file, even
        # when they race (the loser's insert fails here and it answers duplicate_of).
        UniqueConstraint("owner_id", "case_id", "content_hash", name="uq_evidence_case_hash"),
        Index("ix_evidence_files_owner_case", "owner_id", "case_id"),
        Index("ix_evidence_files_unindexed", "index_queued_at", "uploaded_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64), nullable=False)
    case_id: Mapped[str] = mapped_column(String(64), nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    source_type: Mapped[str] = mapped_column(String(20), nullable=False)
    upload_source: Mapped[str] = mapped_column(String(32), nullable=False)
    uploaded_at_turn: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    source_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    analysis_status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    uploaded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )
    # When knowledge.index_evidence was queued; NULL for a text file means "not yet" (the
    # queue was down): the re-queue loop picks it up.
    index_queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What the worker read from an image (OCR) or an office document, and for an image
    # where each word is (ADR 0111); NULL until it has.
    extracted_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    text_layout: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class EvidenceUnindexRow(Base):
    """Outbox of deleted text files whose chunks must leave their case's collection.

    Written in the delete's transaction; removed once knowledge.unindex_evidence has been
    handed to the broker. A row left behind (broker down) is re-queued by the service's
    re-queue loop.
    """

    __tablename__ = "evidence_unindex"

    file_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64), nullable=False)
    case_id: Mapped[str] = mapped_column(String(64), nullable=False)
    deleted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )


class DerivedEvidenceRow(Base):
    """What the agent concluded from a file in one turn (API.md "evidence link and
    details window"); written by the agent through the internal route, deleted with the
    file."""

    __tablename__ = "evidence_derived"
    __table_args__ = (Index("ix_evidence_derived_file", "file_id"),)

    evidence_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(36), nullable=False)
    owner_id: Mapped[str] = mapped_column(String(64), nullable=False)
    case_id: Mapped[str] = mapped_column(String(64), nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False)
    category: Mapped[str] = mapped_column(String(32), nullable=False)
    source_type: Mapped[str] = mapped_column(String(20), nullable=False)
    collected_at_turn: Mapped[int] = mapped_column(Integer, nullable=False)
    primary_purpose: Mapped[str | None] = mapped_column(Text, nullable=True)
    related_hypothesis_ids: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow
    )
