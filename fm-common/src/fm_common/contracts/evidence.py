"""Wire models of the evidence service (API.md "Evidence", reference schemas).

Two vocabularies meet here, as in the reference API:
- `source_type` on an uploaded file (POST/GET /api/v1/evidence, AttachmentResult) is the
  data type classified from the content: logs | metrics | configuration | code | text |
  image.
- `source_type` in the case's `uploaded-files` list (UploadedFileMetadata) is the
  provenance (file_upload | paste | screenshot | ...), which EvidenceFile calls
  `upload_source`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SourceType = Literal["logs", "metrics", "configuration", "code", "text", "image"]
UploadSource = Literal[
    "file_upload",
    "paste",
    "screenshot",
    "page_capture",
    "page_injection",
    "agent_generated",
    "conversion_source",
]
AnalysisStatus = Literal["pending", "processing", "completed", "failed"]

# Data types whose text the knowledge service indexes into the case's collection.
TEXT_SOURCE_TYPES: frozenset[str] = frozenset({"logs", "metrics", "configuration", "code", "text"})
# Everything indexed: text as it is, images through OCR (the worker), office documents
# (source_type "text", content type below) through their readers.
INDEXED_SOURCE_TYPES: frozenset[str] = TEXT_SOURCE_TYPES | {"image"}
# Office documents the evidence service accepts (their type sniffed from the ZIP).
OFFICE_CONTENT_TYPES: dict[str, str] = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
}


def text_is_extracted(source_type: str, content_type: str | None) -> bool:
    """True when a file's text is not its bytes but what the worker reads from them (OCR
    of an image, an office document's text): GET /api/v1/evidence/{id}/text serves it."""
    return source_type == "image" or (content_type or "") in OFFICE_CONTENT_TYPES.values()


# The Celery task that indexes an uploaded file (implemented by the knowledge service's
# worker tasks); kwargs: {file_id, case_id, owner_id}.
INDEX_TASK = "knowledge.index_evidence"
INDEX_QUEUE = "ingest"
# Takes a deleted file's chunks back out of the case's collection (same kwargs).
UNINDEX_TASK = "knowledge.unindex_evidence"
UNINDEX_QUEUE = "maintenance"


class EvidenceFile(BaseModel):
    """An uploaded file's metadata: the answer of POST and GET /api/v1/evidence[/{id}]."""

    file_id: str
    filename: str
    size_bytes: int = Field(ge=0)
    content_type: str
    content_hash: str = Field(description="sha256 of the bytes, hex")
    source_type: SourceType
    case_id: str
    uploaded_at: datetime
    duplicate_of: str | None = Field(
        default=None,
        description="Set when a byte-identical file already existed in this case: its id "
        "(then file_id is that existing file too).",
    )
    description: str | None = None
    upload_source: UploadSource = "file_upload"
    uploaded_at_turn: int = Field(default=0, ge=0)
    analysis_status: AnalysisStatus = "pending"
    summary: str | None = None
    source_metadata: dict[str, Any] | None = None


class UploadedFileMetadata(BaseModel):
    """One row of GET /api/v1/cases/{case_id}/uploaded-files (reference schema)."""

    file_id: str
    filename: str
    size_bytes: int = Field(ge=0)
    size_display: str
    uploaded_at_turn: int = Field(ge=0)
    uploaded_at: datetime
    source_type: str = Field(description="Provenance: file_upload | paste | screenshot | ...")
    analysis_status: AnalysisStatus
    summary: str | None = None
    source_metadata: dict[str, Any] | None = None
    # How many evidence items the agent derived from this file (API.md: the extension
    # shows the evidence link when it is above 0).
    evidence_count: int = Field(default=0, ge=0)


class UploadedFilesList(BaseModel):
    files: list[UploadedFileMetadata]
    total_count: int
    limit: int
    offset: int
    has_more: bool = False


EvidenceCategory = Literal[
    "SYMPTOM_EVIDENCE",
    "CAUSAL_EVIDENCE",
    "SYMPTOM_ABSENCE_EVIDENCE",
    "CAUSAL_ABSENCE_EVIDENCE",
    "OTHER",
]
# DerivedEvidenceSummary.source_type: the evidence kind (SourceType) in capitals.
DerivedSourceType = Literal["LOGS", "METRICS", "CONFIGURATION", "CODE", "TEXT", "IMAGE"]


def derived_source_type(source_type: str) -> DerivedSourceType:
    upper = source_type.upper()
    return upper if upper in DERIVED_SOURCE_TYPES else "TEXT"  # type: ignore[return-value]


DERIVED_SOURCE_TYPES = frozenset({"LOGS", "METRICS", "CONFIGURATION", "CODE", "TEXT", "IMAGE"})


class DerivedEvidenceSummary(BaseModel):
    """What the agent took from a file in one turn (reference schema)."""

    evidence_id: str
    summary: str = Field(max_length=500)
    category: str
    collected_at_turn: int
    source_type: str
    primary_purpose: str | None = None
    related_hypothesis_ids: list[str] = Field(default_factory=list)


class DerivedEvidenceCreate(BaseModel):
    """POST /internal/v1/evidence/{file_id}/derived: the agent records what a turn
    concluded from the file; idempotent by `evidence_id` (a replayed turn writes once)."""

    model_config = ConfigDict(extra="forbid")

    evidence_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    summary: str = Field(min_length=1, max_length=500)
    category: EvidenceCategory = "OTHER"
    source_type: DerivedSourceType
    collected_at_turn: int = Field(ge=0)
    primary_purpose: str | None = Field(default=None, max_length=200)
    related_hypothesis_ids: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=20
    )


class UploadedFileDetailsResponse(BaseModel):
    """GET /api/v1/cases/{case_id}/uploaded-files/{file_id} (reference schema)."""

    file_id: str
    filename: str
    size_bytes: int
    size_display: str
    uploaded_at_turn: int
    uploaded_at: datetime
    upload_source: str
    evidence_count: int = Field(ge=0)
    derived_evidence: list[DerivedEvidenceSummary] = Field(default_factory=list)
    summary: str | None = None
    content_type: str | None = None
    content_hash: str | None = None


class AnalysisUpdate(BaseModel):
    """PUT /internal/v1/evidence/{file_id}/analysis: the indexer reports its progress."""

    model_config = ConfigDict(extra="forbid")

    analysis_status: AnalysisStatus
    summary: str | None = Field(default=None, max_length=2000)


class LayoutWord(BaseModel):
    """An OCR'd word: its box in the image's pixels and its place [start, end) in the
    extracted text."""

    text: str = Field(max_length=500)
    left: int = Field(ge=0)
    top: int = Field(ge=0)
    width: int = Field(ge=0)
    height: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class TextLayout(BaseModel):
    """Where an image's text is: what a pixel redaction blacks out."""

    width: int = Field(ge=0)
    height: int = Field(ge=0)
    words: list[LayoutWord] = Field(default_factory=list, max_length=50_000)


# The extracted text kept per file (OCR, office documents); longer text is cut.
MAX_EXTRACTED_TEXT_CHARS = 1_000_000


class ExtractedText(BaseModel):
    """PUT /internal/v1/evidence/{file_id}/text: the worker stores what it read."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_EXTRACTED_TEXT_CHARS)
    layout: TextLayout | None = None


class EvidenceText(BaseModel):
    """GET /api/v1/evidence/{file_id}/text: the text the worker read from a file.

    status: `ready` (text, and layout for an image), `pending` (not read yet), `failed`
    (the file could not be read: `error`), `none` (a text file: its bytes are its text).
    """

    file_id: str
    status: Literal["ready", "pending", "failed", "none"]
    text: str | None = None
    layout: TextLayout | None = None
    error: str | None = None


# At most this many file ids per `POST /internal/v1/evidence/existing`.
MAX_EXISTING_IDS = 500


class ExistingFilesQuery(BaseModel):
    """POST /internal/v1/evidence/existing: which of these files (of the token's user)
    still exist? Asked by the worker's orphan sweep."""

    model_config = ConfigDict(extra="forbid")

    file_ids: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=MAX_EXISTING_IDS, description="Evidence file ids."
    )


class ExistingFiles(BaseModel):
    """The asked ids that are files of the token's user (others are gone, or not theirs)."""

    file_ids: list[str]
