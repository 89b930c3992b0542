"""Document metadata and case-collection ownership (vectors live in Chroma)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fm_common.db import utcnow
from knowledge_service.domain.base import Base


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_owner_scope", "owner_id", "scope"),
        Index("ix_documents_scope_created", "scope", "created_at"),
        Index("ix_documents_case_id", "case_id"),
        Index("ix_documents_status_updated", "status", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(16))
    case_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    collection: Mapped[str] = mapped_column(String(256))
    title: Mapped[str] = mapped_column(String(500))
    document_type: Mapped[str] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Tags as a list, and as ",a,b," for portable SQL filtering by tag.
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    tags_index: Mapped[str] = mapped_column(String(2000), default=",")
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    source_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="processing")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    embedding_model: Mapped[str | None] = mapped_column(String(300), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # The ingestion run (its job id) that took this document into its batch, and when.
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    preview: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class CaseCollection(Base):
    """Who owns `case_<case_id>`: claimed by the first upload or indexed evidence."""

    __tablename__ = "case_collections"

    case_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(100), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
