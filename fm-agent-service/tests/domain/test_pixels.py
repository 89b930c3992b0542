"""Pixel redaction fails closed: any error, no image."""

from __future__ import annotations

from agent_service.domain.privacy.pixels import redact_image
from fm_common.contracts.evidence import LayoutWord, TextLayout
from fm_common.testing import documents


def _layout(text: str, width: int, height: int) -> TextLayout:
    return TextLayout(
        width=width,
        height=height,
        words=[LayoutWord(text=text, left=2, top=2, width=20, height=10, start=0, end=len(text))],
    )


def test_a_detector_error_sends_nothing() -> None:
    import io

    from PIL import Image

    data = documents.text_image(["hello"])
    w, h = Image.open(io.BytesIO(data)).size

    def broken(_: str) -> list[tuple[int, int]]:
        raise RuntimeError("detector down")

    assert redact_image(data, "x.png", "hello", _layout("hello", w, h), spans=broken) is None


def test_a_finding_outside_every_word_sends_nothing() -> None:
    import io

    from PIL import Image

    data = documents.text_image(["hello"])
    w, h = Image.open(io.BytesIO(data)).size
    # The flagged span lies past the only word: it cannot be placed in the pixels.
    assert (
        redact_image(
            data, "x.png", "hello secret", _layout("hello", w, h), spans=lambda _: [(6, 12)]
        )
        is None
    )


def test_not_an_image_sends_nothing() -> None:
    assert redact_image(b"not an image", "x.png", "a", _layout("a", 1, 1)) is None


def test_without_layout_nothing_is_sent() -> None:
    assert redact_image(documents.text_image(["a"]), "x.png", "a", None) is None
