"""Settings of the evidence service (env prefix FM_EVIDENCE_)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from fm_common.settings import ServiceCallerSettings, StrTuple

MIB = 1024 * 1024

# Text-like evidence: logs, metrics, configuration, code, documents. HTML and SVG are
# accepted as text but never served inline (see api/routes/evidence.py).
DEFAULT_TEXT_EXTENSIONS: tuple[str, ...] = (
    ".log", ".txt", ".text", ".out", ".err", ".trace", ".dump", ".md", ".rst",
    ".json", ".jsonl", ".ndjson", ".yaml", ".yml", ".toml", ".ini", ".conf", ".cfg",
    ".cnf", ".env", ".properties", ".xml", ".csv", ".tsv", ".prom", ".metrics",
    ".py", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".go", ".java", ".kt", ".rb", ".rs",
    ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".php", ".sh", ".bash", ".ps1", ".sql",
    ".tf", ".hcl", ".lua", ".pl", ".scala", ".swift", ".gradle", ".dockerfile",
    ".html", ".htm", ".svg", ".diff", ".patch",
)  # fmt: skip
DEFAULT_IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".gif", ".webp")
# Office documents: their text is read by the worker (knowledge_service ingest/office.py).
DEFAULT_OFFICE_EXTENSIONS: tuple[str, ...] = (".docx", ".pptx", ".xlsx", ".odt", ".ods")


class Settings(ServiceCallerSettings):
    """FM_EVIDENCE_* (and the shared FM_* settings)."""

    service_name: ClassVar[str] = "evidence"
    uses_database: ClassVar[bool] = True
    uses_blobs: ClassVar[bool] = True
    model_config = SettingsConfigDict(env_prefix="FM_EVIDENCE_", extra="ignore", frozen=True)

    # Where the files live when the blob store is local (FM_STORAGE_URL unset or a path):
    # <storage_dir>/files/<id[:2]>/<id>, temp files in <storage_dir>/tmp (same filesystem,
    # so the final rename is atomic). Defaults to <FM_STORAGE_URL or data_dir>/evidence.
    # Not used with an s3:// FM_STORAGE_URL (the files are under <prefix>/evidence/ there).
    storage_dir: Path | None = None
    max_file_bytes: int = Field(default=50 * MIB, gt=0)
    # Text fields of the upload form (case_id, description, ...), each.
    max_field_bytes: int = Field(default=16 * 1024, gt=0)
    # A JSON list or a comma-separated string (as .env.example writes it).
    allowed_extensions: StrTuple = (
        DEFAULT_TEXT_EXTENSIONS + DEFAULT_IMAGE_EXTENSIONS + DEFAULT_OFFICE_EXTENSIONS
    )
    allowed_image_types: StrTuple = (
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
    )
    # A file without an extension (Dockerfile, syslog) is accepted when its content is.
    allow_no_extension: bool = True
    # Bytes read before the content's type is decided.
    sniff_bytes: int = Field(default=8192, ge=512)
    # Queue knowledge.index_evidence for text-like uploads; re-queue missed ones this often.
    index_uploads: bool = True
    broker_url: str | None = None
    requeue_interval_seconds: float = Field(default=60.0, gt=0)
    requeue_after_seconds: float = Field(default=30.0, ge=0)
    # Temp files and unreferenced files older than this are swept (crash leftovers).
    sweep_after_seconds: float = Field(default=3600.0, ge=0)

    @field_validator("storage_dir", "broker_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `FM_EVIDENCE_STORAGE_DIR=` (as .env.example writes it) means "the default".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_extensions")
    @classmethod
    def _dotted_lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in value)

    @property
    def effective_storage_dir(self) -> Path:
        return self.storage_dir or self.storage_location.path / "evidence"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url
