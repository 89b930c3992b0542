"""Text extraction per format, with guards against hostile files.

Every failure a user can cause (encrypted or corrupt PDF, a PDF that inflates to too
much text, binary content under a text name, invalid JSON/YAML, no text at all) raises
`ExtractionError` with a sentence the document's `error` shows; it is permanent (the
task does not retry it).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import structlog

from fm_common.limits import ParseLimits
from knowledge_service.domain.ingest.chunking import Unit
from knowledge_service.domain.ingest.ocr import (
    OcrError,
    OcrLimits,
    OcrResult,
    OcrUnavailable,
    ocr_image,
)
from knowledge_service.domain.ingest.office import OFFICE_KINDS, OfficeError, extract_office

KINDS = (
    "pdf", "markdown", "html", "log", "json", "yaml", "csv", "text",
    "docx", "pptx", "xlsx", "odt", "ods", "image",
)  # fmt: skip
IMAGE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "webp"})
# What a container's bytes are, by content type (the evidence service's sniffed type).
OFFICE_TYPES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
}
_EXT_KIND = {
    "pdf": "pdf",
    "docx": "docx",
    "pptx": "pptx",
    "xlsx": "xlsx",
    "odt": "odt",
    "ods": "ods",
    "md": "markdown",
    "markdown": "markdown",
    "html": "html",
    "htm": "html",
    "log": "log",
    "json": "json",
    "yaml": "yaml",
    "yml": "yaml",
    "csv": "csv",
}
_TYPE_KIND = {"log": "log", "logs": "log", "runbook": "markdown", "markdown": "markdown"}
log = structlog.get_logger("knowledge.extract")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


class ExtractionError(Exception):
    """The file cannot be turned into text; the message is shown to the user."""


# The limits of one parse live in fm_common (shared with other parsers).
Limits: TypeAlias = ParseLimits


def ocr_limits(limits: Limits) -> OcrLimits | None:
    """The OCR part of the parse limits (None: OCR is off)."""
    if not limits.ocr_enabled:
        return None
    return OcrLimits(
        max_pixels=limits.ocr_max_pixels,
        seconds=limits.ocr_seconds,
        memory_bytes=limits.ocr_memory_bytes,
        max_pages=limits.ocr_max_pages,
        languages=limits.ocr_languages,
    )


@dataclass(frozen=True, slots=True)
class Extracted:
    kind: str
    title: str | None
    units: list[Unit]
    text: str  # the whole extracted text (the document's `content`)
    joiner: str = "\n\n"
    # For an image: the words with their boxes (what a pixel redaction needs).
    ocr: OcrResult | None = None


def detect_kind(filename: str, content_type: str | None, document_type: str | None) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if ext in _EXT_KIND:
        return _EXT_KIND[ext]
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ext in IMAGE_EXTENSIONS or (ctype.startswith("image/") and ctype != "image/svg+xml"):
        return "image"
    if ctype == "application/pdf":
        return "pdf"
    if ctype in OFFICE_TYPES:
        return OFFICE_TYPES[ctype]
    if ctype in ("text/html", "application/xhtml+xml"):
        return "html"
    if ctype == "text/markdown":
        return "markdown"
    return _TYPE_KIND.get((document_type or "").lower(), "text")


def decode_text(data: bytes, limits: Limits) -> str:
    """Bytes as text, or ExtractionError for binary content."""
    if not data.strip():
        raise ExtractionError("The file is empty.")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise ExtractionError("The file is not valid UTF-16 text.") from None
    else:
        sample = data[:65536]
        if b"\x00" in sample:
            raise ExtractionError("The file is not text: it holds binary content.")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
            controls = sum(1 for ch in text[:65536] if ord(ch) < 32 and ch not in "\t\n\r\f")
            high = sum(1 for ch in text[:65536] if 0x80 <= ord(ch) < 0xA0)
            if (controls + high) > 0.02 * min(len(text), 65536):
                raise ExtractionError(
                    "The file is not text: it is neither UTF-8 nor readable Latin-1."
                ) from None
    controls = sum(1 for ch in text[:65536] if ord(ch) < 32 and ch not in "\t\n\r\f")
    if controls > 0.05 * min(len(text), 65536):
        raise ExtractionError("The file is not text: it holds binary content.")
    if len(text) > limits.max_chars:
        raise ExtractionError(
            f"The file holds more than {limits.max_chars} characters of text; split it."
        )
    return text


def _pdf_text(path: Path, limits: Limits) -> str:
    head = path.open("rb").read(1024)
    if b"%PDF-" not in head:
        raise ExtractionError("The file is not a PDF (no PDF header).")
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PyPdfError

    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise ExtractionError("The PDF is encrypted with a password.")
            except (FileNotDecryptedError, NotImplementedError):
                raise ExtractionError("The PDF is encrypted with a password.") from None
        count = len(reader.pages)
        if count > limits.max_pdf_pages:
            raise ExtractionError(
                f"The PDF has {count} pages; the limit is {limits.max_pdf_pages}."
            )
        parts: list[str] = []
        total = 0
        scanned = 0
        ocr = ocr_limits(limits)
        for page in reader.pages:
            text = page.extract_text() or ""
            if len(text.strip()) < _SCANNED_BELOW and ocr is not None:
                # No text layer (a scanned page): read the text of its images.
                scanned += 1
                if scanned > ocr.max_pages:
                    raise ExtractionError(
                        f"The PDF has more than {ocr.max_pages} scanned pages "
                        "(pages without text) to read; the limit is "
                        f"{ocr.max_pages}."
                    )
                text = (text + "\n" + _page_ocr(page, ocr)).strip()
            total += len(text)
            if total > limits.max_chars:
                raise ExtractionError(
                    f"The PDF expands to more than {limits.max_chars} characters of text "
                    "(a decompression bomb or an oversized document)."
                )
            parts.append(text)
    except ExtractionError:
        raise
    except MemoryError:
        raise ExtractionError("The PDF needs too much memory to read.") from None
    except PyPdfError as exc:
        raise ExtractionError(f"The PDF is corrupt or too large to read ({exc}).") from None
    # pypdf raises plain Python errors on many malformed files: all mean "corrupt" here.
    except (
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        AttributeError,
        OSError,
        RecursionError,
        AssertionError,
        ZeroDivisionError,
    ) as exc:
        raise ExtractionError(f"The PDF is corrupt ({type(exc).__name__}).") from None
    return "\n\n".join(parts)


_SCANNED_BELOW = 20  # characters: a page with fewer has no real text layer


def _page_ocr(page: Any, limits: OcrLimits) -> str:
    """The text of a scanned page's images, each checked for size before it is decoded."""
    resources = page.get("/Resources")
    xobjects = resources.get_object().get("/XObject") if resources is not None else None
    if xobjects is None:
        return ""
    names = []
    for name, ref in xobjects.get_object().items():
        obj = ref.get_object()
        if obj.get("/Subtype") != "/Image":
            continue
        pixels = int(obj.get("/Width", 0)) * int(obj.get("/Height", 0))
        if pixels > limits.max_pixels:
            raise ExtractionError(
                f"A page image has {pixels} pixels; the limit is {limits.max_pixels}."
            )
        names.append(name)
    texts = []
    for name in names:
        try:
            image = page.images[name].image
        except ExtractionError:
            raise
        except Exception as exc:  # pypdf decodes many filters; all failures mean "corrupt"
            raise ExtractionError(
                f"A page image of the PDF cannot be read ({type(exc).__name__})."
            ) from None
        if image is None:
            continue
        try:
            texts.append(ocr_image(image, limits).text)
        except OcrUnavailable:
            # No engine on this machine: the page stays without text (as before OCR).
            log.warning("extract.ocr_unavailable")
            return ""
        except OcrError as exc:
            raise ExtractionError(str(exc)) from None
    return "\n\n".join(t for t in texts if t.strip())


def _image_text(path: Path, limits: Limits, title: str | None) -> Extracted:
    ocr = ocr_limits(limits)
    if ocr is None:
        raise ExtractionError("Reading text from images is turned off.")
    try:
        result = ocr_image(path.read_bytes(), ocr)
    except OcrError as exc:
        raise ExtractionError(str(exc)) from None
    if len(result.text) > limits.max_chars:
        raise ExtractionError(f"The image holds more than {limits.max_chars} characters.")
    units = _lines(result.text, cap_context(title or "", limits))
    if not units:
        raise ExtractionError("No text could be read in the image.")
    return Extracted("image", title, units, result.text, joiner="\n", ocr=result)


def cap_context(context: str, limits: Limits) -> str:
    """The context every chunk repeats, cut to `max_context_chars` (a 100,000-column
    header or a megabyte-long heading would otherwise be copied into every chunk)."""
    if len(context) <= limits.max_context_chars:
        return context
    return context[: max(0, limits.max_context_chars - 3)].rstrip() + "..."


def _paragraphs(text: str, context: str = "") -> list[Unit]:
    return [Unit(p.strip(), context) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _front_matter(text: str) -> tuple[str | None, str]:
    """Strip Hugo/Jekyll front matter; return its title."""
    if not text.startswith("---"):
        return None, text
    end = text.find("\n---", 3)
    if end == -1:
        return None, text
    block, rest = text[3:end], text[end + 4 :]
    title = None
    for line in block.splitlines():
        if line.lower().startswith("title:"):
            title = line.split(":", 1)[1].strip().strip("\"'") or None
    return title, rest.lstrip("\n")


def markdown_units(
    text: str, title: str | None = None, limits: Limits | None = None
) -> tuple[str | None, list[Unit]]:
    """Paragraph units with their heading path ("Title > Section > Sub") as context."""
    limits = limits or Limits()
    fm_title, text = _front_matter(text)
    title = fm_title or title
    headings: list[tuple[int, str]] = []
    units: list[Unit] = []
    buf: list[str] = []
    in_fence = False

    def context() -> str:
        names = [h for _, h in headings]
        if title and (not names or names[0].lower() != title.lower()):
            names.insert(0, title)
        return cap_context(" > ".join(names), limits)

    def flush() -> None:
        if buf:
            units.extend(_paragraphs("\n".join(buf), context()))
            buf.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            buf.append(line)
            continue
        m = None if in_fence else _HEADING.match(line)
        if m:
            flush()
            level = len(m.group(1))
            while headings and headings[-1][0] >= level:
                headings.pop()
            headings.append((level, m.group(2)[: limits.max_context_chars]))
            continue
        buf.append(line)
    flush()
    return title, units


def _lines(text: str, context: str = "") -> list[Unit]:
    return [Unit(line.rstrip(), context) for line in text.splitlines() if line.strip()]


def extract(path: Path, kind: str, limits: Limits, title: str | None = None) -> Extracted:
    """Extract a stored original as units ready for chunking."""
    if path.stat().st_size == 0:
        raise ExtractionError("The file is empty.")
    if kind == "pdf":
        text = _pdf_text(path, limits)
        units = _paragraphs(text, cap_context(title or "", limits))
        result = Extracted(kind, title, units, text)
    elif kind == "image":
        result = _image_text(path, limits, title)
    elif kind in OFFICE_KINDS:
        try:
            units, text = extract_office(
                path,
                kind,
                title,
                max_chars=limits.max_chars,
                max_bytes=limits.max_archive_bytes,
            )
        except OfficeError as exc:
            raise ExtractionError(str(exc)) from None
        result = Extracted(kind, title, units, text)
    else:
        text = decode_text(path.read_bytes(), limits)
        result = extract_text(kind, text, limits, title)
    if not result.units or not result.text.strip():
        raise ExtractionError("No text could be extracted from the file.")
    return result


def extract_text(kind: str, text: str, limits: Limits, title: str | None) -> Extracted:
    if kind == "markdown":
        md_title, units = markdown_units(text, title, limits)
        return Extracted(kind, md_title, units, text)
    if kind == "html":
        import html2text

        converter = html2text.HTML2Text()
        converter.body_width = 0
        converter.ignore_images = True
        converter.ignore_emphasis = True
        markdown = converter.handle(text)
        if len(markdown) > limits.max_chars:
            raise ExtractionError("The HTML expands to too much text.")
        md_title, units = markdown_units(markdown, title, limits)
        return Extracted(kind, md_title, units, markdown)
    context = cap_context(title or "", limits)
    if kind == "log":
        return Extracted(kind, title, _lines(text, context), text, joiner="\n")
    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExtractionError(
                f"The file is not valid JSON ({exc.msg}, line {exc.lineno})."
            ) from None
        except RecursionError:
            raise _too_deep(limits) from None
        _check_json_depth(data, limits)
        pretty = json.dumps(data, indent=2, ensure_ascii=False)
        return Extracted(kind, title, _lines(pretty, context), pretty, joiner="\n")
    if kind == "yaml":
        import yaml

        try:
            # The events first (a flat loop) to refuse deep nesting before the recursive
            # composer sees it; then compose, not load: validates without expanding
            # aliases (no "billion laughs").
            depth = 0
            for event in yaml.parse(text, Loader=yaml.SafeLoader):
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > limits.max_depth:
                        raise _too_deep(limits)
                elif isinstance(event, yaml.CollectionEndEvent):
                    depth -= 1
            for _ in yaml.compose_all(text, Loader=yaml.SafeLoader):
                pass
        except yaml.YAMLError as exc:
            raise ExtractionError(f"The file is not valid YAML ({exc}).") from None
        except RecursionError:
            raise _too_deep(limits) from None
        return Extracted(kind, title, _lines(text, context), text, joiner="\n")
    if kind == "csv":
        return _csv(text, title, limits)
    return Extracted("text", title, _paragraphs(text, context), text)


def _too_deep(limits: Limits) -> ExtractionError:
    return ExtractionError(f"The file is nested too deeply (more than {limits.max_depth} levels).")


def _check_json_depth(data: object, limits: Limits) -> None:
    """Refuse JSON nested deeper than the limit (walked without recursion)."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[object] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limits.max_depth:
            raise _too_deep(limits)
        stack.extend((child, depth + 1) for child in children)


def _csv(text: str, title: str | None, limits: Limits) -> Extracted:
    # The cell limit is the csv module's (process-wide) field limit; parses run one at a
    # time in their own process (fm_common.limits.run_bounded).
    csv.field_size_limit(limits.max_cell_chars)
    rows = []
    try:
        for row in csv.reader(io.StringIO(text)):
            if len(row) > limits.max_csv_columns:
                raise ExtractionError(
                    f"The CSV file has a row of {len(row)} columns; the limit is "
                    f"{limits.max_csv_columns}."
                )
            if any(cell.strip() for cell in row):
                rows.append(row)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise ExtractionError(
                f"The CSV file has a cell of more than {limits.max_cell_chars} characters."
            ) from None
        raise ExtractionError(f"The file is not valid CSV ({exc}).") from None
    if not rows:
        raise ExtractionError("The CSV file has no rows.")
    header, body = rows[0], rows[1:]
    context = cap_context(
        " > ".join(p for p in (title, "columns: " + ", ".join(header)) if p), limits
    )
    units = []
    for row in body or [header]:
        pairs = [f"{h}: {v}" for h, v in zip(header, row, strict=False) if v.strip()]
        units.append(Unit("; ".join(pairs) if body else ", ".join(row), context))
    return Extracted("csv", title, units, text, joiner="\n")
