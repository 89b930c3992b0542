"""Names, content types and data types, decided from the bytes."""

from __future__ import annotations

import pytest

from evidence_service.config import Settings
from evidence_service.domain.evidence.content import (
    UnsupportedType,
    check_type,
    classify,
    detect,
    extension,
    sanitize_filename,
)

SETTINGS = Settings()


def _check(name: str, data: bytes) -> str:
    return check_type(
        name,
        detect(data, complete=True),
        allowed_extensions=SETTINGS.allowed_extensions,
        allowed_image_types=SETTINGS.allowed_image_types,
        allow_no_extension=True,
    )


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("..", "upload"),
        ("", "upload"),
        (None, "upload"),
        ("/", "upload"),
        (".env", ".env"),
        ("trailing. . ", "trailing"),
        ("new\nline\r.log", "newline.log"),
        ("caf\u0065\u0301.log", "caf\u00e9.log"),
    ],
)
def test_sanitize_filename(raw, clean):
    assert sanitize_filename(raw) == clean


def test_sanitize_caps_multibyte_names_on_a_character_boundary():
    name = sanitize_filename("é" * 300 + ".log")
    assert name.endswith(".log")
    assert len(name.encode()) <= 200
    name.encode().decode()  # still valid UTF-8


def test_extension_of_dotfile_and_compound_names():
    assert extension(".env") == ".env"
    assert extension("a.tar.gz") == ".gz"
    assert extension("Dockerfile") == ""


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n....", "image"),
        (b"\xff\xd8\xff\xe0", "image"),
        (b"GIF89a....", "image"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "binary"),
        (b"\x1f\x8b\x08\x00", "binary"),
        (b"\x7fELF\x02\x01\x01\x00", "binary"),
        (b"plain text\n", "text"),
        ("caf\u00e9 UTF-8\n".encode(), "text"),
        (b"caf\xe9 latin-1 log line\n", "text"),
        (b"\xef\xbb\xbfBOM text\n", "text"),
    ],
)
def test_detect_kind_from_bytes(data, kind):
    assert detect(data, complete=True).kind == kind


def test_utf8_cut_mid_character_at_the_sniff_boundary_is_still_text():
    data = ("x" * 10 + "é").encode()[:-1]
    assert detect(data, complete=False).kind == "text"


def test_json_keeps_its_content_type():
    assert _check("values.json", b'{"a": 1}') == "application/json"


def test_svg_and_html_are_accepted_as_text_types():
    assert _check("x.svg", b"<svg></svg>") == "image/svg+xml"
    assert _check("x.html", b"<html></html>") == "text/html"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("report.log", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF document"),
        ("a.gif", b"\x89PNG\r\n\x1a\n....", "PNG image"),
        ("a.txt", b"\x00\x01\x02\x03" * 10, "not accepted"),
        ("tool.exe", b"text", "'.exe'"),
        ("win.log", "\ufeffline one\r\n".encode("utf-16-le"), "UTF-16 text"),
    ],
)
def test_lies_and_unknown_types_are_refused(name, data, message):
    with pytest.raises(UnsupportedType) as info:
        _check(name, data)
    assert message in info.value.detail


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("app.log", '{"ts":"2024-05-01T10:00:00Z","level":"error","msg":"x"}\n' * 3, "logs"),
        ("out.txt", "level=info msg=started\nlevel=warn msg=slow\n", "logs"),
        ("gc.log", "I0501 10:00:00.000 1 main.go:10] started\n", "logs"),
        ("data.txt", 'up 1\nhttp_requests_total{code="200"} 1027\n', "metrics"),
        ("a.json", '{"replicas": 3}', "configuration"),
        ("noext", '{"replicas": 3, "image": "x"}', "configuration"),
        (".env", "DB_HOST=localhost\nDB_PORT=5432\n", "configuration"),
        ("main.go", "package main\n\nfunc main() {\n}\n", "code"),
        ("snippet", "def f(x):\n    return x\n\nclass A:\n    pass\n", "code"),
        ("readme", "We restarted the node and it came back.\n", "text"),
        ("blank.txt", "\n\n\n", "text"),
    ],
)
def test_classify_from_content(name, text, expected):
    assert classify(text, name, detect(text.encode(), complete=True)) == expected
