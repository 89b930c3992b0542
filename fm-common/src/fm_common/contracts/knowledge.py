"""Wire models of the knowledge service (API.md "Knowledge").

Shared by the knowledge service (which serves them), the agent (which searches) and the
case service (which deletes a case's collection). Field names follow the reference
OpenAPI of the real extension (`KnowledgeBaseDocument`, `SearchRequest`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Scope = Literal["personal", "global", "case"]
DocumentStatus = Literal["processing", "processed", "failed"]
SearchMode = Literal["semantic", "hybrid"]
SCOPES: tuple[Scope, ...] = ("personal", "global", "case")


def split_tags(value: str | list[str] | None) -> list[str]:
    """Tags as a clean list from `"a, b"` or `["a", "b"]` (empty items dropped)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    out: list[str] = []
    for item in items:
        tag = str(item).strip()
        if tag and tag not in out:
            out.append(tag)
    return out


class JobRef(BaseModel):
    """The ingestion job of an upload; poll `location` for its status."""

    job_id: str
    status: str
    location: str


class DocumentAccepted(BaseModel):
    """202 answer of an upload: the document is stored and queued for processing."""

    document_id: str
    status: DocumentStatus = "processing"
    job: JobRef


class KnowledgeDocument(BaseModel):
    """KnowledgeBaseDocument of the reference API plus processing status and chunk count."""

    document_id: str
    title: str
    content: str = ""
    document_type: str
    category: str | None = None
    tags: list[str] = Field(default_factory=list)
    source_url: str | None = None
    description: str | None = None
    scope: Scope = "personal"
    case_id: str | None = None
    owner_id: str | None = None
    status: DocumentStatus = "processing"
    error: str | None = None
    chunk_count: int = 0
    filename: str | None = None
    content_type: str | None = None
    size_bytes: int = 0
    embedding_model: str | None = None
    metadata: dict[str, Any] | None = None
    verification_status: Literal["verified", "community", "experimental"] | None = "experimental"
    verification_level: int = 0
    verification_reason: str | None = None
    source_suggestion_id: str | None = None
    created_at: str
    updated_at: str


class DocumentPage(BaseModel):
    documents: list[KnowledgeDocument]
    total_count: int
    limit: int
    offset: int
    has_more: bool


class SearchRequest(BaseModel):
    """`POST /api/v1/knowledge/search`. `tags` is a comma-separated string or a list."""

    model_config = ConfigDict(extra="ignore")

    query: str = Field(min_length=1, max_length=4000)
    limit: int = Field(default=10, ge=1, le=100)
    scopes: list[Scope] | None = Field(
        default=None, description="Collections to search; default: personal, global and case"
    )
    case_id: str | None = Field(default=None, max_length=200)
    document_type: str | None = None
    category: str | None = None
    tags: list[str] | None = None
    similarity_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    mode: SearchMode = "semantic"

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must not be blank")
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> list[str] | None:
        if value is None:
            return None
        if not isinstance(value, str | list):
            raise ValueError("tags must be a string or a list of strings")
        return split_tags(value) or None


class SearchResult(BaseModel):
    document_id: str
    title: str
    chunk_id: str
    content: str
    score: float
    scope: Scope
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    results: list[SearchResult]
    total_count: int
    took_ms: float
    mode: SearchMode = "semantic"


class KnowledgeJob(BaseModel):
    """`GET /api/v1/knowledge/jobs/{job_id}`: an ingestion job's status and progress."""

    job_id: str
    kind: str
    status: Literal["queued", "running", "completed", "failed"]
    document_id: str | None = None
    progress: float = 0.0
    attempts: int = 0
    error: str | None = None
    error_code: str | None = None
    result: Any = None
    created_at: str
    updated_at: str


class KnowledgeCollection(BaseModel):
    """One Chroma collection, as an admin sees it to decide what needs re-indexing."""

    name: str
    embedding_model: str | None = Field(
        default=None, description="The model that filled it (recorded in its metadata)."
    )
    chunk_count: int = Field(ge=0)
    current: bool = Field(
        description="Filled by the configured embedding model; false means searches skip it "
        "until it is re-indexed."
    )


class CollectionList(BaseModel):
    """`GET /api/v1/knowledge/collections` (admin)."""

    embedding_model: str = Field(description="The configured embedding model.")
    collections: list[KnowledgeCollection]
    total_count: int
    limit: int
    offset: int
    has_more: bool


class ReindexAccepted(BaseModel):
    """202 answer of `POST /api/v1/knowledge/collections/{name}/reindex`."""

    collection: str
    embedding_model: str = Field(description="The model the collection is rebuilt for.")
    job: JobRef
