"""Extraction refuses hostile files with a sentence a user understands."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from knowledge_service.domain.ingest.extract import (
    ExtractionError,
    Limits,
    decode_text,
    detect_kind,
    extract,
)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_pdf_text_is_extracted(tmp_path, pdfs) -> None:  # type: ignore[no-untyped-def]
    out = extract(
        _write(tmp_path, "a.pdf", pdfs.text("etcd quorum lost\nrestore from snapshot")),
        "pdf",
        Limits(),
    )
    assert "etcd quorum lost" in out.text
    assert "restore from snapshot" in out.text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.encrypted(), "encrypted"),
        (lambda p: p.corrupt(), "corrupt"),
        (lambda p: p.bomb(), "too large"),
        (lambda _: b"hello", "not a pdf"),
    ],
)
def test_bad_pdfs_raise_a_clear_error(tmp_path, pdfs, make, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ExtractionError) as err:
        extract(_write(tmp_path, "x.pdf", make(pdfs)), "pdf", Limits())
    assert message in str(err.value).lower()


def test_pdf_text_over_the_limit_is_refused(tmp_path, pdfs) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, "long.pdf", pdfs.text("\n".join(["word " * 20] * 30)))
    with pytest.raises(ExtractionError, match="more than 1000 characters"):
        extract(path, "pdf", Limits(max_chars=1000))


def test_binary_junk_named_markdown_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ExtractionError, match="binary"):
        extract(_write(tmp_path, "junk.md", os.urandom(10_000)), "markdown", Limits())


def test_empty_and_whitespace_files_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for data in (b"", b"   \n\n\t "):
        with pytest.raises(ExtractionError, match="empty"):
            extract(_write(tmp_path, "e.txt", data), "text", Limits())


def test_yaml_alias_bomb_is_validated_without_expanding(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefghij"):
        prev = "abcdefghij"[i]
        lines.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    out = extract(_write(tmp_path, "bomb.yaml", "\n".join(lines).encode()), "yaml", Limits())
    assert len(out.text) < 1000


def test_latin1_and_utf16_text_decode() -> None:
    assert decode_text("café au lait".encode("latin-1"), Limits()) == "café au lait"
    assert decode_text("\ufeffnode down".encode("utf-16"), Limits()).endswith("node down")


@pytest.mark.parametrize(
    ("name", "ctype", "dtype", "kind"),
    [
        ("a.PDF", None, "runbook", "pdf"),
        ("a.md", None, "runbook", "markdown"),
        ("a.htm", None, None, "html"),
        ("app.log", None, None, "log"),
        ("a.yml", None, None, "yaml"),
        ("noext", "application/pdf", None, "pdf"),
        ("noext", None, "log", "log"),
        ("notes.txt", None, None, "text"),
    ],
)
def test_kind_detection(name, ctype, dtype, kind) -> None:  # type: ignore[no-untyped-def]
    assert detect_kind(name, ctype, dtype) == kind


def test_html_is_converted_with_headings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    html = (
        b"<html><body><h1>Disk full</h1><p>Free space with <b>du</b>.</p>"
        b"<script>x()</script></body></html>"
    )
    out = extract(_write(tmp_path, "a.html", html), "html", Limits())
    assert any(u.context.endswith("Disk full") for u in out.units)
    assert "Free space with du" in out.text
