"""Text from images: screenshots and the pages of scanned PDFs (ADR 0110).

Tesseract (the Debian package `tesseract-ocr`) runs as a child process per image: a
hostile or huge image can cost at most `OcrLimits.seconds` of time (the child is
killed) and `OcrLimits.memory_bytes` of address space (RLIMIT_AS), never the worker.
Before anything is decoded the image's header is read and its pixel count checked
(`max_pixels`), which stops decompression bombs (a few KB of PNG that decode to
gigabytes). Small text (screenshots at 96 dpi) is scaled up 2x, a dark background
(a terminal) is inverted, and the words come back with their boxes, so a caller can
black out the pixels of the words the redactor flags (domain/privacy/pixels in the
agent).
"""

from __future__ import annotations

import csv
import io
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("knowledge.ocr")


class OcrError(Exception):
    """The image cannot be read; the message is shown to the user."""


class OcrUnavailable(OcrError):
    """No OCR engine on this machine (tesseract is not installed)."""


@dataclass(frozen=True, slots=True)
class OcrLimits:
    max_pixels: int = 40_000_000  # ~ 8000 x 5000
    seconds: float = 60.0  # per image (per PDF page)
    memory_bytes: int = 1024 * 1024 * 1024  # address space of the tesseract process
    max_pages: int = 50  # scanned PDF pages read per document
    languages: str = "eng"


@dataclass(frozen=True, slots=True)
class Word:
    """A recognised word: its text, its box in the original image's pixels, and where
    it sits in `OcrResult.text` (start, end)."""

    text: str
    left: int
    top: int
    width: int
    height: int
    confidence: float
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class OcrResult:
    text: str
    words: list[Word] = field(default_factory=list)
    width: int = 0
    height: int = 0
    seconds: float = 0.0


def tesseract_path() -> str | None:
    return shutil.which("tesseract")


def open_image(data: bytes, limits: OcrLimits) -> Any:
    """The decoded image (RGB or L), or OcrError for what is not one or is too large.
    The pixel count is checked from the header, before the pixels are decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise OcrError(f"The image cannot be read ({exc}).") from None
    except Image.DecompressionBombError:
        raise OcrError("The image is too large to read (a decompression bomb).") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise OcrError(
            f"The image has {width}x{height} pixels; the limit is {limits.max_pixels} pixels."
        )
    try:
        image.seek(0)  # the first frame of a GIF or WebP animation
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise OcrError(f"The image is corrupt ({exc}).") from None
    except Image.DecompressionBombError:
        raise OcrError("The image is too large to read (a decompression bomb).") from None
    return image


def prepare(image: Any, limits: OcrLimits) -> tuple[Any, float]:
    """Grey, dark backgrounds inverted, small text scaled up: (image, scale)."""
    from PIL import ImageOps, ImageStat

    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = _white(image.size)
        background.paste(image, mask=image.getchannel("A"))
        image = background
    grey = image.convert("L")
    if ImageStat.Stat(grey).mean[0] < 110:  # light text on a dark background
        grey = ImageOps.invert(grey)
    scale = 1.0
    width, height = grey.size
    if height < 2400 and width * height * 4 <= limits.max_pixels:
        scale = 2.0
        grey = grey.resize((width * 2, height * 2), resample=3)  # bicubic
    return grey, scale


def _white(size: tuple[int, int]) -> Any:
    from PIL import Image

    return Image.new("RGB", size, (255, 255, 255))


def _limit_child(memory_bytes: int) -> Any:
    def apply() -> None:  # pragma: no cover - runs in the child
        # Never above a cap this process already runs under (a bounded parse's child).
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        os.nice(5)

    return apply


def ocr_image(data: bytes | Any, limits: OcrLimits | None = None) -> OcrResult:
    """Recognise the text of an image (its bytes, or a decoded PIL image)."""
    import time

    limits = limits or OcrLimits()
    exe = tesseract_path()
    if exe is None:
        raise OcrUnavailable("OCR is not available: tesseract is not installed.")
    image = open_image(bytes(data), limits) if isinstance(data, bytes | bytearray) else data
    width, height = image.size
    if width * height > limits.max_pixels:
        raise OcrError(
            f"The image has {width}x{height} pixels; the limit is {limits.max_pixels} pixels."
        )
    grey, scale = prepare(image, limits)
    buf = io.BytesIO()
    grey.save(buf, "PNG", compress_level=1)
    started = time.perf_counter()
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        proc = subprocess.run(
            [exe, "stdin", "stdout", "-l", limits.languages, "--psm", "3", "tsv"],
            input=buf.getvalue(),
            capture_output=True,
            timeout=limits.seconds,
            preexec_fn=_limit_child(limits.memory_bytes),
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OcrError(
            f"Reading the text of the image took longer than {limits.seconds:g} s."
        ) from None
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["killed"]
        log.warning("ocr.failed", returncode=proc.returncode, detail=detail[0][:200])
        raise OcrError("The text of the image could not be read (the OCR engine failed).")
    result = parse_tsv(proc.stdout.decode("utf-8", errors="replace"), scale)
    return OcrResult(result.text, result.words, width, height, round(seconds, 3))


def parse_tsv(tsv: str, scale: float = 1.0) -> OcrResult:
    """Tesseract's TSV as text (a line per recognised line, a blank line between
    blocks) and words with their boxes in the original image's pixels."""
    words: list[Word] = []
    parts: list[str] = []
    pos = 0
    last_line: tuple[str, str, str] | None = None
    last_block: str | None = None
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") != "5":
            continue
        text = (row.get("text") or "").strip()
        if not text:
            continue
        line = (row["block_num"], row["par_num"], row["line_num"])
        if last_line is not None:
            sep = " " if line == last_line else ("\n\n" if row["block_num"] != last_block else "\n")
            parts.append(sep)
            pos += len(sep)
        last_line, last_block = line, row["block_num"]
        start = pos
        parts.append(text)
        pos += len(text)
        words.append(
            Word(
                text=text,
                left=int(int(row["left"]) / scale),
                top=int(int(row["top"]) / scale),
                width=max(1, round(int(row["width"]) / scale)),
                height=max(1, round(int(row["height"]) / scale)),
                confidence=float(row.get("conf") or 0),
                start=start,
                end=pos,
            )
        )
    return OcrResult("".join(parts), words)
