"""Office documents: text, headings and tables kept as structure; formulas as values;
archives that would inflate too far refused with a sentence."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from fm_common.testing import documents
from knowledge_service.domain.ingest.chunking import chunk_units
from knowledge_service.domain.ingest.extract import ExtractionError, Limits, detect_kind, extract

SECTIONS = [
    ("Symptoms", ["Checkout returns HTTP 502 while the orders pool is exhausted."]),
    ("Fix", ["Lower ORDERS_DB_POOL_SIZE to 20 per pod, then restart pgbouncer."]),
]
TABLE = [["Metric", "Threshold"], ["cl_waiting", "0"], ["max_connections", "300"]]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    # Stored originals are named by their id, without an extension: so are these.
    path = tmp_path / name.replace(".", "-")
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", ["docx", "odt"])
def test_word_documents_keep_headings_as_context_and_tables_as_rows(
    tmp_path: Path, kind: str
) -> None:
    maker = documents.docx if kind == "docx" else documents.odt
    data = maker("Orders pool runbook", SECTIONS, TABLE)
    out = extract(
        _write(tmp_path, f"r.{kind}", data), detect_kind(f"r.{kind}", None, None), Limits()
    )
    by_text = {u.text: u.context for u in out.units}
    fix = "Lower ORDERS_DB_POOL_SIZE to 20 per pod, then restart pgbouncer."
    assert by_text[fix] == "Orders pool runbook > Fix"
    assert by_text["Checkout returns HTTP 502 while the orders pool is exhausted."] == (
        "Orders pool runbook > Symptoms"
    )
    row = "Metric: max_connections; Threshold: 300"
    assert row in by_text
    assert by_text[row].endswith("columns: Metric, Threshold")
    assert "# Fix" in out.text
    assert "| cl_waiting | 0 |" in out.text
    # The chunk says which section it comes from.
    chunks = chunk_units(out.units, words=12, overlap=0)
    assert any(c.text.startswith("Orders pool runbook > Fix") and fix in c.text for c in chunks)


def test_slides_are_sections_with_their_bullets_and_notes(tmp_path: Path) -> None:
    data = documents.pptx(
        [("Incident review", ["Timeline"]), ("Mitigation", ["Drain node-7", "Cordon it"])],
        notes="Speaker: page the storage team",
    )
    out = extract(_write(tmp_path, "deck.pptx", data), "pptx", Limits(), title="INC-42")
    by_text = {u.text: u.context for u in out.units}
    assert by_text["Drain node-7"] == "INC-42 > Slide 2: Mitigation"
    assert by_text["Timeline"] == "INC-42 > Slide 1: Incident review"
    assert by_text["Notes: Speaker: page the storage team"] == "INC-42 > Slide 2: Mitigation"


def test_spreadsheet_formulas_read_as_their_cached_values(tmp_path: Path) -> None:
    rows = [["host", "errors"], ["web-1", 3], ["web-2", 4], ["total", "=SUM(B2:B3)"]]
    data = documents.xlsx({"Errors": rows}, cached={"Errors!B4": 7})
    out = extract(_write(tmp_path, "e.xlsx", data), "xlsx", Limits())
    by_text = {u.text: u.context for u in out.units}
    assert "host: total; errors: 7" in by_text
    assert by_text["host: web-2; errors: 4"] == "Sheet: Errors > columns: host, errors"
    assert "SUM" not in out.text


def test_spreadsheet_without_cached_values_gives_the_formula(tmp_path: Path) -> None:
    """A workbook no spreadsheet program saved has no cached values: the formula is
    given as written rather than an empty cell."""
    rows = [["host", "errors"], ["web-1", 3], ["total", "=SUM(B2:B2)"]]
    out = extract(_write(tmp_path, "e.xlsx", documents.xlsx({"S": rows})), "xlsx", Limits())
    assert "host: total; errors: =SUM(B2:B2)" in [u.text for u in out.units]


def test_ods_sheets_are_sections(tmp_path: Path) -> None:
    data = documents.ods({"Hosts": [["name", "zone"], ["db-1", "eu-west-1a"]]})
    out = extract(_write(tmp_path, "h.ods", data), "ods", Limits())
    assert [(u.text, u.context) for u in out.units] == [
        ("name: db-1; zone: eu-west-1a", "Sheet: Hosts > columns: name, zone")
    ]


def test_zip_bomb_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * (64 * 1024 * 1024))
    path = _write(tmp_path, "bomb.docx", out.getvalue())
    with pytest.raises(ExtractionError, match="decompression bomb"):
        extract(path, "docx", Limits())


@pytest.mark.parametrize("kind", ["docx", "pptx", "xlsx", "odt", "ods"])
def test_corrupt_office_files_fail_with_a_sentence(tmp_path: Path, kind: str) -> None:
    with pytest.raises(ExtractionError, match="corrupt"):
        extract(_write(tmp_path, f"x.{kind}", b"PK\x03\x04 not really a zip"), kind, Limits())
    # A real ZIP that is not this kind of document.
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ExtractionError, match="corrupt"):
        extract(_write(tmp_path, f"y.{kind}", other.getvalue()), kind, Limits())


def test_text_over_the_limit_is_refused(tmp_path: Path) -> None:
    data = documents.docx("Big", [("Part", ["word " * 300] * 10)])
    with pytest.raises(ExtractionError, match="more than 1000 characters"):
        extract(_write(tmp_path, "big.docx", data), "docx", Limits(max_chars=1000))
