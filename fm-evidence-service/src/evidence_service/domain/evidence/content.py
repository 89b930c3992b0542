"""What a file is: its type from its bytes (never the client's Content-Type), whether its
name's extension tells the truth, its data type (`source_type`), and a safe name.
"""

from __future__ import annotations

import codecs
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

import puremagic

from fm_common.contracts.evidence import OFFICE_CONTENT_TYPES, SourceType
from fm_common.errors import FMError, UnsupportedMediaType

MAX_FILENAME_BYTES = 200
FALLBACK_FILENAME = "upload"

IMAGE_TYPES_BY_EXT = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
IMAGE_NAMES = {
    "image/png": "PNG image",
    "image/jpeg": "JPEG image",
    "image/gif": "GIF image",
    "image/webp": "WebP image",
}
TEXT_TYPES_BY_EXT = {
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".toml": "application/toml",
    ".xml": "application/xml",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".md": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".svg": "image/svg+xml",
}
CONFIG_EXTS = frozenset(
    ".json .yaml .yml .toml .ini .conf .cfg .cnf .env .properties .xml .tf .hcl".split()
)
CODE_EXTS = frozenset(
    ".py .js .mjs .ts .tsx .jsx .go .java .kt .rb .rs .c .h .cc .cpp .hpp .cs .php .sh "
    ".bash .ps1 .sql .lua .pl .scala .swift .gradle .dockerfile .html .htm .diff .patch".split()
)
CONFIG_NAMES = frozenset({".env", "dockerfile", "makefile", "nginx.conf", "my.cnf"})


class UnsupportedType(UnsupportedMediaType):
    code = "UNSUPPORTED_FILE_TYPE"


class EmptyFile(FMError):
    status_code, code, detail = 422, "EMPTY_FILE", "The file is empty (0 bytes)."


@dataclass(frozen=True, slots=True)
class Detected:
    """The type of a file's first bytes."""

    kind: str  # "image" | "text" | "document" | "binary"
    mime: str
    label: str


# ---- names ---------------------------------------------------------------------------


def sanitize_filename(raw: str | None) -> str:
    """The original name reduced to a safe display name: no directories, no control or
    format characters, NFC, at most MAX_FILENAME_BYTES bytes (extension kept)."""
    name = (raw or "").replace("\\", "/").split("/")[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().strip(".") if set(name.strip()) <= {"."} else name.strip()
    name = name.rstrip(". ")
    if not name:
        return FALLBACK_FILENAME
    if len(name.encode()) > MAX_FILENAME_BYTES:
        stem, ext = _split_ext(name)
        if len(ext.encode()) > 20:
            stem, ext = name, ""
        budget = MAX_FILENAME_BYTES - len(ext.encode())
        stem = stem.encode()[:budget].decode(errors="ignore")
        name = stem + ext
    return name


def _split_ext(name: str) -> tuple[str, str]:
    suffix = PurePosixPath(name).suffix
    return (name[: -len(suffix)], suffix) if suffix else (name, "")


def extension(name: str) -> str:
    """The lower-case extension (with the dot), '' for none; '.env' counts as one."""
    lower = name.lower()
    if lower.startswith(".") and lower.count(".") == 1:
        return lower
    return PurePosixPath(lower).suffix


# ---- content type --------------------------------------------------------------------

_ALLOWED_CONTROLS = {0x09, 0x0A, 0x0C, 0x0D, 0x1B}
# Binary formats that can pass for 8-bit text in their first bytes, named plainly.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x7fELF", "an ELF executable"),
    (b"\xca\xfe\xba\xbe", "a Java class or Mach-O binary"),
    (b"SQLite format 3\x00", "an SQLite database"),
)


def detect(head: bytes, *, complete: bool) -> Detected:
    """The type of a file from its first bytes (`complete`: they are the whole file)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Detected("image", "image/png", IMAGE_NAMES["image/png"])
    if head.startswith(b"\xff\xd8\xff"):
        return Detected("image", "image/jpeg", IMAGE_NAMES["image/jpeg"])
    if head.startswith((b"GIF87a", b"GIF89a")):
        return Detected("image", "image/gif", IMAGE_NAMES["image/gif"])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Detected("image", "image/webp", IMAGE_NAMES["image/webp"])
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return Detected("binary", "application/octet-stream", "UTF-16 text (save it as UTF-8)")
    office = _office(head)
    if office is not None:
        return office
    for signature, label in _BINARY_SIGNATURES:
        if head.startswith(signature):
            return Detected("binary", "application/octet-stream", label)
    if is_text(head, complete=complete):
        return Detected("text", "text/plain", "text")
    return Detected("binary", "application/octet-stream", _binary_label(head))


_OFFICE_NAMES = {
    OFFICE_CONTENT_TYPES[".docx"]: "Word document",
    OFFICE_CONTENT_TYPES[".pptx"]: "PowerPoint presentation",
    OFFICE_CONTENT_TYPES[".xlsx"]: "Excel workbook",
    OFFICE_CONTENT_TYPES[".odt"]: "OpenDocument text",
    OFFICE_CONTENT_TYPES[".ods"]: "OpenDocument spreadsheet",
}
# OOXML parts whose names, in the ZIP's local headers, say which application wrote it.
_OOXML_PARTS = (
    (b"word/", OFFICE_CONTENT_TYPES[".docx"]),
    (b"ppt/", OFFICE_CONTENT_TYPES[".pptx"]),
    (b"xl/", OFFICE_CONTENT_TYPES[".xlsx"]),
)


def _office(head: bytes) -> Detected | None:
    """An office document: a ZIP whose first bytes show its kind. ODF stores its
    `mimetype` entry first and uncompressed; OOXML names its parts (word/, ppt/, xl/)
    and `[Content_Types].xml` in the local headers. The worker's reader checks the rest."""
    if not head.startswith(b"PK\x03\x04"):
        return None
    if head[30:38] == b"mimetype":
        for mime, name in _OFFICE_NAMES.items():
            if mime.startswith("application/vnd.oasis") and head[38:].startswith(mime.encode()):
                return Detected("document", mime, name)
        return None
    if b"[Content_Types].xml" not in head and b"_rels/.rels" not in head:
        return None
    for marker, mime in _OOXML_PARTS:
        if b"PK\x03\x04" in head and _has_part(head, marker):
            return Detected("document", mime, _OFFICE_NAMES[mime])
    return None


def _has_part(head: bytes, prefix: bytes) -> bool:
    """A local file header (PK\\3\\4) in `head` names a part under `prefix`."""
    pos = head.find(b"PK\x03\x04")
    while pos != -1 and pos + 30 <= len(head):
        name_len = int.from_bytes(head[pos + 26 : pos + 28], "little")
        name = head[pos + 30 : pos + 30 + name_len]
        if name.startswith(prefix):
            return True
        pos = head.find(b"PK\x03\x04", pos + 4)
    return False


def is_text(data: bytes, *, complete: bool = True) -> bool:
    """UTF-8 (or 8-bit text) without NUL bytes and with almost no control characters."""
    if b"\x00" in data:
        return False
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(data.removeprefix(codecs.BOM_UTF8), final=complete)
        return True
    except UnicodeDecodeError:
        pass
    # Legacy 8-bit text (latin-1 / cp1252 logs): accepted when control bytes are rare.
    controls = sum(1 for b in data if b < 0x20 and b not in _ALLOWED_CONTROLS)
    return controls <= len(data) // 200


def _binary_label(head: bytes) -> str:
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        matches = []
    for match in matches:
        if match.name:
            return f"binary data ({match.name})"
    return "binary data"


def check_type(
    filename: str,
    detected: Detected,
    *,
    allowed_extensions: tuple[str, ...],
    allowed_image_types: tuple[str, ...],
    allow_no_extension: bool,
) -> str:
    """The content type to store, or UnsupportedType when the name or the bytes are not
    accepted or the extension lies about the content."""
    ext = extension(filename)
    allowed = {e.lower() for e in allowed_extensions}
    if ext and ext not in allowed:
        raise UnsupportedType(
            f"Files of type '{ext}' are not accepted. Accepted: {', '.join(sorted(allowed))}."
        )
    if not ext and not allow_no_extension:
        raise UnsupportedType("Files without an extension are not accepted.")
    if detected.kind == "binary":
        raise UnsupportedType(
            f"'{filename}' contains {detected.label}, which is not accepted: upload text "
            f"(logs, metrics, configuration, code), an office document (docx, pptx, xlsx, "
            f"odt, ods) or a PNG, JPEG, GIF or WebP image."
        )
    if detected.kind == "document":
        if ext != _office_ext(detected.mime):
            named = _ext_label(ext) if ext else "a file without an extension"
            raise UnsupportedType(
                f"'{filename}' is named as {named} but its content is a {detected.label}; "
                f"rename it to {_office_ext(detected.mime)}."
            )
        return detected.mime
    if detected.kind == "image":
        if detected.mime not in allowed_image_types:
            raise UnsupportedType(f"{detected.label}s are not accepted.")
        claimed = IMAGE_TYPES_BY_EXT.get(ext)
        if ext and claimed != detected.mime:
            raise UnsupportedType(
                f"'{filename}' is named as {_ext_label(ext)} but its content is a "
                f"{detected.label}; rename it to match its content."
            )
        return detected.mime
    if ext in IMAGE_TYPES_BY_EXT:
        raise UnsupportedType(
            f"'{filename}' is named as a {IMAGE_NAMES[IMAGE_TYPES_BY_EXT[ext]]} but its "
            f"content is text; rename it to match its content."
        )
    return TEXT_TYPES_BY_EXT.get(ext, "text/plain")


def _office_ext(mime: str) -> str:
    return next(ext for ext, m in OFFICE_CONTENT_TYPES.items() if m == mime)


def _ext_label(ext: str) -> str:
    image = IMAGE_TYPES_BY_EXT.get(ext)
    return f"a {IMAGE_NAMES[image]}" if image else f"a '{ext}' file"


# ---- data type (source_type) ---------------------------------------------------------

_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?"  # ISO 8601 / SQL
    r"|\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2}"  # syslog
    r"|\[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}"  # common log format
    r"|^\s*\[?\d{10}(\.\d+)?\]?\s"  # epoch seconds
    r"|\b\d{2}:\d{2}:\d{2}[.,]\d{3}"  # time with millis
    r"|^[IWEF]\d{4} \d{2}:\d{2}:\d{2}"  # glog
)
_LEVEL = re.compile(
    r"\b(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|CRIT|CRITICAL|FATAL|SEVERE|PANIC|"
    r"ALERT|EMERG)\b|\blevel=\w+|\"(level|severity)\"\s*:\s*\""
)
_PROM_SAMPLE = re.compile(
    r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})?\s+[-+]?(\d[\d.eE+-]*|NaN|[+-]?Inf)(\s+-?\d+)?\s*$"
)
_PROM_META = re.compile(r"^#\s*(HELP|TYPE|UNIT|EOF)\b")
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
_TIME_HEADER = re.compile(r"time|timestamp|date|^ts$|^t$|epoch", re.IGNORECASE)
_CONFIG_LINE = re.compile(r"^\s*([\w.\-\"']+\s*[:=]|\[[^\]]+\]\s*$|-\s+\w|[#;])")
_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import|function\b|func |package |#include|public |"
    r"private |const |let |var |return\b|if\s*\(|for\s*\(|fn |use |SELECT |CREATE |#!/)"
    r"|[;{}]\s*$"
)


def classify(sample: str, filename: str, detected: Detected) -> SourceType:
    """logs | metrics | configuration | code | text | image, from the first bytes."""
    if detected.kind == "image":
        return "image"
    if detected.kind == "document":
        return "text"  # its text is read by the worker (GET /api/v1/evidence/{id}/text)
    ext = extension(filename)
    lines = [line for line in sample.splitlines()[:400] if line.strip()]
    if not lines:
        return "text"
    if _is_metrics(lines):
        return "metrics"
    if _share(lines, lambda ln: bool(_TIMESTAMP.search(ln) or _LEVEL.search(ln))) >= 0.5:
        return "logs"
    if ext in CONFIG_EXTS or filename.lower() in CONFIG_NAMES:
        return "configuration"
    if ext in CODE_EXTS:
        return "code"
    if _is_json_document(sample):
        return "configuration"
    if _share(lines, lambda ln: bool(_CONFIG_LINE.match(ln))) >= 0.7:
        return "configuration"
    if _share(lines, lambda ln: bool(_CODE_LINE.search(ln))) >= 0.3:
        return "code"
    return "text"


def _share(lines: list[str], pred: Callable[[str], bool]) -> float:
    return sum(1 for ln in lines if pred(ln)) / len(lines)


def _is_metrics(lines: list[str]) -> bool:
    samples = sum(1 for ln in lines if _PROM_SAMPLE.match(ln))
    meta = sum(1 for ln in lines if _PROM_META.match(ln))
    if samples and (samples + meta) / len(lines) >= 0.9:
        return True
    return _is_numeric_csv(lines)


def _is_numeric_csv(lines: list[str]) -> bool:
    if len(lines) < 3:
        return False
    sep = "," if lines[0].count(",") >= lines[0].count("\t") else "\t"
    header = [h.strip().strip('"') for h in lines[0].split(sep)]
    if len(header) < 2 or not any(_TIME_HEADER.search(h) for h in header):
        return False
    rows = [ln.split(sep) for ln in lines[1:]]
    same_width = [r for r in rows if len(r) == len(header)]
    if len(same_width) < 0.8 * len(rows):
        return False
    numeric_rows = sum(1 for r in same_width if sum(1 for c in r if _NUMBER.match(c)) >= 1)
    return numeric_rows >= 0.8 * len(same_width)


def _is_json_document(sample: str) -> bool:
    stripped = sample.strip()
    if not stripped.startswith(("{", "[")):
        return False
    try:
        return isinstance(json.loads(stripped), dict | list)
    except ValueError:
        return False


def decode_sample(data: bytes) -> str:
    try:
        return data.removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        # A sample cut mid-character, or 8-bit text.
        text = data.decode("utf-8", errors="replace")
        return text if text.count("\ufffd") <= 4 else data.decode("latin-1")
