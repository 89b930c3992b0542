"""OCR of screenshots and scanned PDF pages (tesseract, in a child process), and the
limits that hold: pixels checked before decoding, time per page, pages per PDF."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from fm_common.testing import documents
from knowledge_service.domain.ingest.extract import ExtractionError, Limits, detect_kind, extract
from knowledge_service.domain.ingest.ocr import OcrError, OcrLimits, ocr_image, tesseract_path

pytestmark = pytest.mark.skipif(tesseract_path() is None, reason="tesseract is not installed")

ERROR = [
    "Traceback (most recent call last):",
    "psycopg2.OperationalError: FATAL: password authentication failed for user orders",
]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_screenshot_is_read_with_word_boxes(tmp_path: Path) -> None:
    data = documents.text_image(ERROR, size=15)
    out = extract(_write(tmp_path, "shot", data), detect_kind("shot.png", None, None), Limits())
    assert out.kind == "image"
    assert "password authentication failed for user orders" in out.text
    assert out.ocr is not None
    word = next(w for w in out.ocr.words if w.text == "authentication")
    assert out.text[word.start : word.end] == "authentication"
    # The box is in the original image's pixels (second line, inside the image).
    assert 12 < word.top < out.ocr.height
    assert word.left + word.width <= out.ocr.width


def test_light_text_on_a_dark_terminal_is_read(tmp_path: Path) -> None:
    data = documents.text_image(
        ["$ kubectl get pods", "orders-api-5f7  0/1  CrashLoopBackOff"],
        fg=(220, 220, 210),
        bg=(30, 30, 36),
        fmt="JPEG",
    )
    out = extract(_write(tmp_path, "t", data), "image", Limits())
    assert "kubectl get pods" in out.text
    assert "CrashLoop" in out.text  # a JPEG at 16 px: the tail letters may blur


def test_a_scanned_pdf_is_read_page_by_page(tmp_path: Path) -> None:
    data = documents.scanned_pdf(
        [["Runbook: etcd quorum lost"], ["Restore the snapshot with etcdctl snapshot restore"]]
    )
    out = extract(_write(tmp_path, "scan.pdf", data), "pdf", Limits())
    assert "etcd quorum lost" in out.text
    assert "snapshot restore" in out.text


def test_scanned_pages_over_the_cap_are_refused(tmp_path: Path) -> None:
    data = documents.scanned_pdf([["page one"], ["page two"], ["page three"]])
    limits = Limits(ocr_max_pages=2)
    with pytest.raises(ExtractionError, match="more than 2 scanned pages"):
        extract(_write(tmp_path, "scan.pdf", data), "pdf", limits)


def _png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header for a huge image with a tiny compressed body."""
    import struct

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\0" + b"\0" * width
    body = zlib.compress(row * 16, 9)  # far fewer rows than declared: never decoded
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    data = _png_bomb(30_000, 30_000)  # 900 Mpx, 2 KB on disk
    assert len(data) < 10_000
    with pytest.raises(ExtractionError, match=r"pixels|decompression bomb"):
        extract(_write(tmp_path, "bomb", data), "image", Limits())


def test_pixel_cap_is_a_setting() -> None:
    data = documents.text_image(["hello world"], size=20)
    with pytest.raises(OcrError, match="the limit is 1000 pixels"):
        ocr_image(data, OcrLimits(max_pixels=1000))


def test_time_per_page_is_enforced() -> None:
    from PIL import Image, ImageDraw

    # A noisy page that takes tesseract well over 10 ms.
    image = Image.effect_noise((1600, 1600), 90).convert("RGB")
    ImageDraw.Draw(image).text((10, 10), "noise", fill=(0, 0, 0))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    with pytest.raises(OcrError, match=r"longer than 0\.01 s"):
        ocr_image(buf.getvalue(), OcrLimits(seconds=0.01))


def test_not_an_image_fails_with_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(ExtractionError, match="cannot be read"):
        extract(_write(tmp_path, "x", b"\x89PNG\r\n\x1a\nnot really"), "image", Limits())


def test_ocr_off_reads_no_image(tmp_path: Path) -> None:
    data = documents.text_image(ERROR)
    with pytest.raises(ExtractionError, match="turned off"):
        extract(_write(tmp_path, "x", data), "image", Limits(ocr_enabled=False))


def test_ocr_runs_under_a_memory_cap_it_inherits() -> None:
    """Inside a process already capped (a bounded parse), tesseract gets the lower cap,
    and an image it cannot read within it fails with a sentence, not a crash."""
    # A fresh interpreter, not a fork of this one: pytest's process holds threads (the
    # stack fixtures' clients), and a fork taken while one of them holds a lock can hang.
    script = """
import json, resource
from fm_common.testing import documents
from knowledge_service.domain.ingest.ocr import OcrError, OcrLimits, ocr_image
cap = 3 * 1024 * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
data = documents.text_image(["capped but readable"], size=20)
first = ocr_image(data, OcrLimits(memory_bytes=8 * 1024**3)).text
try:
    ocr_image(data, OcrLimits(memory_bytes=16 * 1024 * 1024))
    second = "read in 16 MiB?"
except OcrError as exc:
    second = f"error: {exc}"
print(json.dumps([first, second]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=True
    )
    first, second = json.loads(done.stdout.strip().splitlines()[-1])
    assert "capped but readable" in first
    assert second.startswith("error: The text of the image could not be read")
