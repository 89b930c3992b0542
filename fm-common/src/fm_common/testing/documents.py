"""Office documents, scanned PDFs and screenshots that tests build themselves.

python-docx, python-pptx, openpyxl and Pillow write them (imported on use: they are
dependencies of the knowledge service, which reads them); odt and ods are written as the
ODF XML they are. Each builder returns the file's bytes.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ODT = "application/vnd.oasis.opendocument.text"
ODS = "application/vnd.oasis.opendocument.spreadsheet"


def docx(
    title: str,
    sections: Sequence[tuple[str, Sequence[str]]],
    table: Sequence[Sequence[str]] = (),
    table_after: int = 0,
) -> bytes:
    """A Word document: a Title, then a Heading 1 per section with its paragraphs; the
    table (first row the header) after section number `table_after`."""
    import docx as python_docx

    document = python_docx.Document()
    document.add_heading(title, level=0)
    for i, (heading, paragraphs) in enumerate(sections):
        document.add_heading(heading, level=1)
        for text in paragraphs:
            document.add_paragraph(text)
        if table and i == table_after:
            grid = document.add_table(rows=len(table), cols=len(table[0]))
            for r, row in enumerate(table):
                for c, value in enumerate(row):
                    grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx(slides: Sequence[tuple[str, Sequence[str]]], notes: str = "") -> bytes:
    """A deck: per slide its title and bullet lines (notes on the last slide)."""
    from pptx import Presentation

    deck = Presentation()
    slide: Any = None
    for title, bullets in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        body = slide.placeholders[1].text_frame
        for i, line in enumerate(bullets):
            paragraph = body.paragraphs[0] if i == 0 else body.add_paragraph()
            paragraph.text = line
    if notes and slide is not None:
        slide.notes_slide.notes_text_frame.text = notes
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def xlsx(sheets: dict[str, Sequence[Sequence[Any]]], cached: dict[str, Any] | None = None) -> bytes:
    """A workbook; a cell written "=..." is a formula. openpyxl stores no computed value
    for a formula (as a file no spreadsheet program saved); `cached` {"Sheet!B5": 42}
    writes the value a spreadsheet program would have cached."""
    from openpyxl import Workbook

    book = Workbook()
    first = True
    for name, rows in sheets.items():
        sheet = book.active if first else book.create_sheet()
        first = False
        sheet.title = name
        for row in rows:
            sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    data = out.getvalue()
    return _cache_values(data, list(sheets), cached) if cached else data


def _cache_values(data: bytes, names: list[str], cached: dict[str, Any]) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            m = re.fullmatch(r"xl/worksheets/sheet(\d+)\.xml", info.filename)
            if m:
                sheet = names[int(m.group(1)) - 1]
                text = body.decode()
                for ref, value in cached.items():
                    name, cell = ref.split("!")
                    if name != sheet:
                        continue
                    pattern = rf'(<c r="{cell}"[^>]*>)(<f>[^<]*</f>)<v\s*/?>(</v>)?'
                    text = re.sub(pattern, rf"\g<1>\g<2><v>{value}</v>", text)
                body = text.encode()
            dst.writestr(info, body)
    return out.getvalue()


_ODF_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
    ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
    ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" office:version="1.3">'
    "<office:body>"
)


def _odf(mimetype: str, body: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), mimetype)  # first, stored
        manifest = (
            '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
            'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
            f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
            '<manifest:file-entry manifest:full-path="content.xml" '
            'manifest:media-type="text/xml"/></manifest:manifest>'
        )
        archive.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        content = f"{_ODF_HEAD}{body}</office:body></office:document-content>"
        archive.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _odf_table(rows: Sequence[Sequence[Any]], name: str = "") -> str:
    cells = "".join(
        "<table:table-row>"
        + "".join(
            f'<table:table-cell office:value-type="string"><text:p>{escape(str(v))}</text:p>'
            "</table:table-cell>"
            for v in row
        )
        + "</table:table-row>"
        for row in rows
    )
    attr = f' table:name="{escape(name)}"' if name else ""
    return f"<table:table{attr}>{cells}</table:table>"


def odt(
    title: str, sections: Sequence[tuple[str, Sequence[str]]], table: Sequence[Sequence[str]] = ()
) -> bytes:
    parts = [f'<text:h text:outline-level="1">{escape(title)}</text:h>']
    for heading, paragraphs in sections:
        parts.append(f'<text:h text:outline-level="2">{escape(heading)}</text:h>')
        parts += [f"<text:p>{escape(p)}</text:p>" for p in paragraphs]
    if table:
        parts.append(_odf_table(table))
    return _odf(ODT, "<office:text>" + "".join(parts) + "</office:text>")


def ods(sheets: dict[str, Sequence[Sequence[Any]]]) -> bytes:
    tables = "".join(_odf_table(rows, name) for name, rows in sheets.items())
    return _odf(ODS, f"<office:spreadsheet>{tables}</office:spreadsheet>")


# ---- images -------------------------------------------------------------------------

MONO_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
)
SANS_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


def font(size: int, mono: bool = True) -> Any:
    """A TrueType font of the machine at `size` px (Pillow's own scalable default if none)."""
    from PIL import ImageFont

    for path in MONO_FONTS if mono else SANS_FONTS:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def text_image(
    lines: Sequence[str],
    *,
    size: int = 16,
    mono: bool = True,
    fg: tuple[int, int, int] = (20, 20, 20),
    bg: tuple[int, int, int] = (255, 255, 255),
    pad: int = 12,
    fmt: str = "PNG",
) -> bytes:
    """The lines drawn as a screenshot would show them."""
    from PIL import Image, ImageDraw

    face = font(size, mono)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(int(probe.textlength(line, font=face)) for line in lines if line) + 2 * pad
    step = int(size * 1.45)
    image = Image.new("RGB", (width, step * len(lines) + 2 * pad), bg)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * step), line, font=face, fill=fg)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def scanned_pdf(pages: Sequence[Sequence[str]], size: int = 28) -> bytes:
    """A PDF whose pages are images only (no text layer), as a scanner makes them."""
    from PIL import Image

    images: list[Any] = [
        Image.open(io.BytesIO(text_image(lines, size=size, mono=False))).convert("RGB")
        for lines in pages
    ]
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=150)
    return out.getvalue()


def long_runbook(title: str, sections: int) -> bytes:
    """A markdown runbook of `sections` numbered steps (~190 bytes each), each step its own
    heading: large enough to take several slices of a worker (ADR 0160, 0166; also the
    large runbooks of bench/fairness.py)."""
    return "".join(
        f"## Step {i} of {title}\n\nCheck the ingress controller of pool {i % 17} for "
        f"upstream timeouts, then restart replica {i} of the {title} deployment and watch "
        f"the error budget of service {i % 5} for ten minutes before step {i + 1}.\n\n"
        for i in range(sections)
    ).encode()
