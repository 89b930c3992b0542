"""Images for vision models, with the redactor's findings blacked out in the pixels
(ADR 0112).

An image is sent to a provider only as the copy this module makes: every OCR'd word whose
text overlaps a span the redactor flags (the same detector the text path uses) is painted
over with an opaque box, padded by a few pixels, and the copy is re-encoded as PNG (no
metadata of the original survives). Fail closed: no OCR layout (the worker could not read
the image, or has not yet), a layout that does not match the image, an image that cannot
be decoded, or any error in detection or drawing, and there is no copy: the image is not
sent, only its (redacted) text is. What OCR did not read cannot be flagged, which is why
this is off unless a provider's `send_images` is set.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from agent_service.domain.privacy.detect import sensitive_spans
from fm_common.contracts.evidence import TextLayout

log = structlog.get_logger("agent.privacy.pixels")

PAD = 3  # pixels around each flagged word's box
MAX_SIDE = 2048  # longest side sent to a provider (downscaled after redaction)
MAX_PIXELS = 40_000_000


@dataclass(frozen=True, slots=True)
class RedactedImage:
    filename: str
    png: bytes
    boxes: int  # how many word boxes were blacked out


def flagged_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) spans of `text` the redactor would replace (secrets, personal data).

    The one seam to the redactor: its detector's spans (`sensitive_spans`)."""
    return [(start, end) for start, end, _ in sensitive_spans(text)]


def redact_image(
    data: bytes,
    filename: str,
    text: str | None,
    layout: TextLayout | None,
    spans: Callable[[str], Sequence[tuple[int, int]]] = flagged_spans,
) -> RedactedImage | None:
    """A PNG copy of the image with every flagged word blacked out, or None (not sent)."""
    if text is None or layout is None:
        log.info("vision.not_sent", filename=filename, reason="no_ocr_layout")
        return None
    try:
        return _redact(data, filename, text, layout, spans)
    except Exception as exc:  # fail closed: whatever went wrong, nothing is sent
        log.warning("vision.not_sent", filename=filename, reason=type(exc).__name__)
        return None


def _redact(
    data: bytes,
    filename: str,
    text: str,
    layout: TextLayout,
    spans: Callable[[str], Sequence[tuple[int, int]]],
) -> RedactedImage | None:
    from PIL import Image, ImageDraw

    image: Any = Image.open(io.BytesIO(data))
    width, height = image.size
    if width * height > MAX_PIXELS:
        log.info("vision.not_sent", filename=filename, reason="too_many_pixels")
        return None
    if (width, height) != (layout.width, layout.height):
        log.warning("vision.not_sent", filename=filename, reason="layout_mismatch")
        return None
    image.seek(0)
    image = image.convert("RGB")
    flagged = list(spans(text))
    draw = ImageDraw.Draw(image)
    boxes = 0
    for word in layout.words:
        if any(word.start < end and start < word.end for start, end in flagged):
            draw.rectangle(
                (
                    max(0, word.left - PAD),
                    max(0, word.top - PAD),
                    min(width, word.left + word.width + PAD),
                    min(height, word.top + word.height + PAD),
                ),
                fill=(0, 0, 0),
            )
            boxes += 1
    covered = {
        i for i, w in enumerate(layout.words) for s, e in flagged if w.start < e and s < w.end
    }
    # Every flagged span must lie on OCR'd words: a span the layout cannot place (text
    # that is not the words') cannot be blacked out, so the image is not sent.
    for start, end in flagged:
        if not any(layout.words[i].start < end and start < layout.words[i].end for i in covered):
            log.warning("vision.not_sent", filename=filename, reason="unplaced_finding")
            return None
    if max(width, height) > MAX_SIDE:
        scale = MAX_SIDE / max(width, height)
        image = image.resize((max(1, int(width * scale)), max(1, int(height * scale))))
    out = io.BytesIO()
    image.save(out, "PNG")
    log.info("vision.redacted", filename=filename, boxes=boxes, findings=len(flagged))
    return RedactedImage(filename, out.getvalue(), boxes)
