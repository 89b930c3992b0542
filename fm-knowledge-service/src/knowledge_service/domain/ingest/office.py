"""Office documents (docx, pptx, xlsx, odt, ods) as structured units.

Headings become the units' context ("Title > Section > Sub", as in Markdown), tables
become one unit per row written `column: value; ...` with the table's header as context,
spreadsheet formulas are read as their cached values. The archive is checked before any
library opens it: entry count, declared uncompressed size and compression ratio, so a
zip bomb fails the document with a sentence instead of filling the worker's memory.

docx, pptx and xlsx are read by python-docx, python-pptx and openpyxl; odt and ods (no
library of those reads them) by the standard library's ElementTree over `content.xml`,
which is what odfpy would do for us here, without a dependency that has been unmaintained
since 2020.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from knowledge_service.domain.ingest.chunking import Unit

OFFICE_KINDS = ("docx", "pptx", "xlsx", "odt", "ods")
_MAX_ENTRIES = 10_000
_MAX_RATIO = 200  # uncompressed / compressed, for entries over 1 MiB
_MAX_REPEAT = 1_000  # ODF's "number-columns/rows-repeated": empty cells are never expanded


class OfficeError(Exception):
    """The document cannot be read; the message is shown to the user."""


class _Builder:
    """Units with their heading path as context, and the document's text as Markdown."""

    def __init__(self, title: str | None, max_chars: int) -> None:
        self.title = title
        self.max_chars = max_chars
        self.headings: list[tuple[int, str]] = []
        self.units: list[Unit] = []
        self.lines: list[str] = []
        self.chars = 0

    def context(self, extra: str = "") -> str:
        names = [h for _, h in self.headings]
        if self.title and (not names or names[0].lower() != self.title.lower()):
            names.insert(0, self.title)
        if extra:
            names.append(extra)
        return " > ".join(names)

    def _count(self, text: str) -> None:
        self.chars += len(text) + 2
        if self.chars > self.max_chars:
            raise OfficeError(
                f"The document expands to more than {self.max_chars} characters of text "
                "(a decompression bomb or an oversized document)."
            )

    def heading(self, level: int, text: str) -> None:
        text = " ".join(text.split())
        if not text:
            return
        self._count(text)
        while self.headings and self.headings[-1][0] >= level:
            self.headings.pop()
        self.headings.append((level, text))
        self.lines.append(f"{'#' * min(level, 6)} {text}")

    def para(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        self._count(text)
        self.units.append(Unit(text, self.context()))
        self.lines.append(text)

    def table(self, rows: Iterable[list[str]]) -> None:
        """Rows of cell texts; the first non-empty row is the header."""
        header: list[str] | None = None
        context = ""
        wrote = False
        for raw in rows:
            row = [" ".join(c.split()) for c in raw]
            if not any(row):
                continue
            if header is None:
                header = [h or f"column {i + 1}" for i, h in enumerate(row)]
                context = self.context("columns: " + ", ".join(header))
                self._count(" | ".join(header))
                self.lines.append("| " + " | ".join(header) + " |")
                continue
            pairs = [f"{h}: {v}" for h, v in zip(header, row, strict=False) if v]
            pairs += [v for v in row[len(header) :] if v]
            text = "; ".join(pairs)
            self._count(text)
            self.units.append(Unit(text, context))
            self.lines.append("| " + " | ".join(row) + " |")
            wrote = True
        if header is not None and not wrote:  # a one-row table: the row is the content
            self.units.append(Unit(", ".join(header), self.context()))
        self.lines.append("")

    @property
    def text(self) -> str:
        return "\n\n".join(line for line in self.lines if line)


def check_archive(path: Path, max_bytes: int) -> None:
    """Refuse what is not a ZIP, or would inflate past `max_bytes` (a zip bomb)."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise OfficeError(f"The document is corrupt (not a ZIP container: {exc}).") from None
    if len(infos) > _MAX_ENTRIES:
        raise OfficeError(f"The document holds more than {_MAX_ENTRIES} parts.")
    total = 0
    for info in infos:
        total += info.file_size
        ratio = info.file_size / max(1, info.compress_size)
        if total > max_bytes or (info.file_size > 1 << 20 and ratio > _MAX_RATIO):
            raise OfficeError(
                "The document inflates to too much data (a decompression bomb or an "
                "oversized document)."
            )


def extract_office(
    path: Path, kind: str, title: str | None, *, max_chars: int, max_bytes: int
) -> tuple[list[Unit], str]:
    check_archive(path, max_bytes)
    builder = _Builder(title, max_chars)
    try:
        if kind == "docx":
            _docx(path, builder)
        elif kind == "pptx":
            _pptx(path, builder)
        elif kind == "xlsx":
            _xlsx(path, builder)
        elif kind in ("odt", "ods"):
            _odf(path, builder)
        else:  # pragma: no cover - the caller passes an office kind
            raise OfficeError(f"Unknown office format {kind!r}.")
    except OfficeError:
        raise
    except MemoryError:
        raise OfficeError("The document needs too much memory to read.") from None
    except Exception as exc:  # the readers raise many kinds on malformed files
        raise OfficeError(
            f"The {kind} document is corrupt or not of that type ({type(exc).__name__})."
        ) from None
    return builder.units, builder.text


# ---- docx -----------------------------------------------------------------------------


def _heading_level(style_name: str) -> int | None:
    name = style_name.lower()
    if name == "title":  # above every Heading 1
        return 0
    if name.startswith("heading"):
        digits = "".join(ch for ch in name if ch.isdigit())
        return int(digits) if digits else 1
    return None


def _docx(path: Path, b: _Builder) -> None:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(str(path))  # python-docx reads by content, any name
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            style = block.style.name if block.style is not None else ""
            level = _heading_level(style or "")
            if level is not None:
                b.heading(level, block.text)
            elif "list" in (style or "").lower():
                b.para(f"- {block.text}" if block.text.strip() else "")
            else:
                b.para(block.text)
        elif isinstance(block, Table):
            b.table(_docx_rows(block))


def _docx_rows(table: Any) -> Iterator[list[str]]:
    for row in table.rows:
        cells: list[str] = []
        last = None
        for cell in row.cells:
            # Merged cells repeat the same cell object: once is enough.
            if last is not None and cell._tc is last:
                continue
            last = cell._tc
            cells.append(cell.text)
        yield cells


# ---- pptx -----------------------------------------------------------------------------


def _pptx(path: Path, b: _Builder) -> None:
    from pptx import Presentation

    deck = Presentation(str(path))
    for number, slide in enumerate(deck.slides, start=1):
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text if title_shape is not None else ""
        b.heading(1, f"Slide {number}: {title}".rstrip(": ") if title else f"Slide {number}")
        for shape in _shapes(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            if getattr(shape, "has_table", False) and shape.has_table:
                b.table([cell.text for cell in row.cells] for row in shape.table.rows)
            elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
                for paragraph in shape.text_frame.paragraphs:
                    text = "".join(run.text for run in paragraph.runs) or paragraph.text
                    b.para(("  " * paragraph.level + "- " if paragraph.level else "") + text)
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                b.para(f"Notes: {notes.text}")


def _shapes(shapes: Any) -> Iterator[Any]:
    for shape in shapes:
        if getattr(shape, "shape_type", None) == 6:  # MSO_SHAPE_TYPE.GROUP
            yield from _shapes(shape.shapes)
        else:
            yield shape


# ---- xlsx -----------------------------------------------------------------------------


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _xlsx(path: Path, b: _Builder) -> None:
    """Each sheet a section, each row a unit. Formulas as the values Excel (or
    LibreOffice) cached when it last saved the file; a file no spreadsheet program has
    saved (one written by a script) has no cached values, and its formulas are given as
    written (`=SUM(B2:B4)`) rather than as empty cells."""
    from openpyxl import load_workbook

    # File objects, not the path: openpyxl refuses a path without an .xlsx extension,
    # and the stored originals are named by their id.
    values_fh, formulas_fh = path.open("rb"), path.open("rb")
    values = load_workbook(values_fh, read_only=True, data_only=True)
    formulas = load_workbook(formulas_fh, read_only=True, data_only=False)
    try:
        for sheet in values.worksheets:
            b.heading(1, f"Sheet: {sheet.title}")
            raw = formulas[sheet.title]
            rows = zip(
                sheet.iter_rows(values_only=True), raw.iter_rows(values_only=True), strict=False
            )
            b.table(
                [
                    _cell_text(v) if v is not None else _formula(f)
                    for v, f in zip(vals, forms, strict=False)
                ]
                for vals, forms in rows
            )
            b.headings.clear()
    finally:
        values.close()
        formulas.close()
        values_fh.close()
        formulas_fh.close()


def _formula(raw: Any) -> str:
    text = _cell_text(raw)
    return text if text.startswith("=") else ""


# ---- odt / ods ------------------------------------------------------------------------

_NS = {
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
}


def _q(prefix: str, name: str) -> str:
    return f"{{{_NS[prefix]}}}{name}"


def _odf_text(element: ElementTree.Element) -> str:
    """A paragraph's text: spans, links, tabs, line breaks and `text:s` spaces."""
    parts: list[str] = []

    def walk(node: ElementTree.Element) -> None:
        if node.text:
            parts.append(node.text)
        for child in node:
            if child.tag == _q("text", "s"):
                parts.append(" " * int(child.get(_q("text", "c"), "1") or 1))
            elif child.tag == _q("text", "tab"):
                parts.append("\t")
            elif child.tag == _q("text", "line-break"):
                parts.append("\n")
            elif child.tag == _q("text", "note"):
                pass
            else:
                walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(element)
    return "".join(parts)


def _odf(path: Path, b: _Builder) -> None:
    with zipfile.ZipFile(path) as archive, archive.open("content.xml") as fh:
        root = ElementTree.parse(fh).getroot()
    body = root.find(_q("office", "body"))
    if body is None:
        raise OfficeError("The OpenDocument file has no body.")
    sheet_doc = body.find(_q("office", "spreadsheet")) is not None
    for container in body:
        _odf_blocks(container, b, sheet_doc)


def _odf_blocks(node: ElementTree.Element, b: _Builder, sheet_doc: bool) -> None:
    for child in node:
        tag = child.tag
        if tag == _q("text", "h"):
            level = int(child.get(_q("text", "outline-level"), "1") or 1)
            b.heading(level, _odf_text(child))
        elif tag == _q("text", "p"):
            b.para(_odf_text(child))
        elif tag == _q("text", "list"):
            for item in child.iter(_q("text", "p")):
                text = _odf_text(item)
                b.para(f"- {text}" if text.strip() else "")
        elif tag == _q("table", "table"):
            if sheet_doc:
                b.headings.clear()
                b.heading(1, f"Sheet: {child.get(_q('table', 'name'), '')}")
            b.table(_odf_rows(child))
        elif tag in (_q("text", "section"), _q("table", "table-row-group")):
            _odf_blocks(child, b, sheet_doc)


def _odf_rows(table: ElementTree.Element) -> Iterator[list[str]]:
    for row in table.iter(_q("table", "table-row")):
        cells: list[str] = []
        for cell in row:
            if cell.tag not in (_q("table", "table-cell"), _q("table", "covered-table-cell")):
                continue
            # The cached value of a formula is in the cell's text (and office:value).
            text = "\n".join(_odf_text(p) for p in cell.iter(_q("text", "p")))
            if not text:
                text = cell.get(_q("office", "value"), "") or ""
            repeat = int(cell.get(_q("table", "number-columns-repeated"), "1") or 1)
            cells.extend([text] * (min(repeat, _MAX_REPEAT) if text else 1))
        while cells and not cells[-1]:
            cells.pop()
        rows_repeat = int(row.get(_q("table", "number-rows-repeated"), "1") or 1)
        for _ in range(min(rows_repeat, _MAX_REPEAT) if any(cells) else 1):
            yield cells
