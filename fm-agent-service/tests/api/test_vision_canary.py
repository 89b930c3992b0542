"""Canary: a secret in a screenshot never reaches a provider, as text or as pixels.

The screenshot is read by the worker's own OCR code (tesseract), as the worker would
read it; the agent sends the image only to a provider with `send_images`, as a copy with
every flagged word blacked out. The test decodes the image the fake provider received,
checks the secret's boxes are black, and reads it again with OCR: the error is still
legible, the secret is not. Failures (no OCR yet, a layout that does not fit, a detector
error) send no image at all."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import pytest
from agent_standins import provider, running

from fm_common.testing import documents
from fm_common.testing.fake_llm import FakeLLMServer

ocr = pytest.importorskip("knowledge_service.domain.ingest.ocr")
pytestmark = pytest.mark.skipif(ocr.tesseract_path() is None, reason="tesseract is not installed")

SECRET = "AKIAQ4ZN7EXAMPLEKEY9"
EMAIL = "dba.oncall@example.org"
LINES = [
    "ERROR orders-api: upstream connect failed (503)",
    f"export AWS_ACCESS_KEY_ID={SECRET}",
    f"paged {EMAIL} at 14:07",
]


def _screenshot() -> tuple[bytes, dict[str, Any]]:
    data = documents.text_image(LINES, size=18)
    read = ocr.ocr_image(data)
    layout = {
        "width": read.width,
        "height": read.height,
        "words": [
            {k: getattr(w, k) for k in ("text", "left", "top", "width", "height", "start", "end")}
            for w in read.words
        ],
    }
    return data, {"text": read.text, "layout": layout}


def _images(fake: FakeLLMServer) -> list[bytes]:
    out = []
    for request in fake.requests:
        for message in request.body.get("messages", []):
            content = message.get("content")
            for part in content if isinstance(content, list) else []:
                if part.get("type") == "image_url":
                    url = part["image_url"]["url"]
                    assert url.startswith("data:image/png;base64,")
                    out.append(base64.b64decode(url.split(",", 1)[1]))
    return out


async def _turn(
    make_settings: Any, fake: FakeLLMServer, standins: Any, user_id: str, auth: dict[str, str]
) -> httpx.Response:
    settings = make_settings(
        [provider(fake, "vision", send_images=True)], attachment_text_wait_seconds=1.0
    )
    case_id = standins.add_case(user_id)
    data = documents.text_image(LINES, size=18)
    async with running(settings) as client:
        return await client.post(
            f"/api/v1/cases/{case_id}/turns",
            data={"query": "what does this error say?"},
            files={"files": ("terminal.png", data, "image/png")},
            headers=auth,
        )


async def test_a_secret_in_a_screenshot_reaches_no_provider(
    make_settings: Any, fake: FakeLLMServer, standins: Any, user_id: str, auth: dict[str, str]
) -> None:
    from PIL import Image

    _, read = _screenshot()
    assert SECRET in read["text"]  # the OCR does see it: the redaction is what hides it
    standins.state.ocr_texts["terminal.png"] = read["text"]
    standins.state.ocr_layouts["terminal.png"] = read["layout"]
    resp = await _turn(make_settings, fake, standins, user_id, auth)
    assert resp.status_code == 200, resp.text

    # Text: the OCR text reached the model, redacted.
    text = "\n".join(r.text for r in fake.requests)
    assert "upstream connect failed" in text
    assert SECRET not in text
    assert EMAIL not in text
    # Pixels: one image was sent, the flagged words are black, and OCR cannot read them.
    [png] = _images(fake)
    image = Image.open(io.BytesIO(png)).convert("L")
    for word in read["layout"]["words"]:
        if SECRET in word["text"] or EMAIL in word["text"]:
            box = (
                word["left"],
                word["top"],
                word["left"] + word["width"],
                word["top"] + word["height"],
            )
            assert image.crop(box).getextrema() == (0, 0), word
    again = ocr.ocr_image(png).text
    assert "upstream connect failed" in again  # the rest of the screenshot is still there
    assert SECRET not in again
    assert "AKIA" not in again
    assert "example.org" not in again
    assert fake.requests[0].body["messages"][-1]["content"][-1]["type"] == "image_url"


async def test_no_ocr_layout_no_image(
    make_settings: Any, fake: FakeLLMServer, standins: Any, user_id: str, auth: dict[str, str]
) -> None:
    # The worker has not read the image (pending): the turn is answered, no image sent.
    resp = await _turn(make_settings, fake, standins, user_id, auth)
    assert resp.status_code == 200, resp.text
    assert fake.requests
    assert _images(fake) == []


async def test_a_layout_that_does_not_fit_the_image_sends_nothing(
    make_settings: Any, fake: FakeLLMServer, standins: Any, user_id: str, auth: dict[str, str]
) -> None:
    _, read = _screenshot()
    standins.state.ocr_texts["terminal.png"] = read["text"]
    standins.state.ocr_layouts["terminal.png"] = read["layout"] | {"width": 10, "height": 10}
    resp = await _turn(make_settings, fake, standins, user_id, auth)
    assert resp.status_code == 200, resp.text
    assert _images(fake) == []
    assert SECRET not in "\n".join(r.text for r in fake.requests)


async def test_providers_without_send_images_get_text_only(
    make_settings: Any, fake: FakeLLMServer, standins: Any, user_id: str, auth: dict[str, str]
) -> None:
    _, read = _screenshot()
    standins.state.ocr_texts["terminal.png"] = read["text"]
    standins.state.ocr_layouts["terminal.png"] = read["layout"]
    settings = make_settings([provider(fake, "plain")], attachment_text_wait_seconds=1.0)
    case_id = standins.add_case(user_id)
    async with running(settings) as client:
        resp = await client.post(
            f"/api/v1/cases/{case_id}/turns",
            data={"query": "what does this error say?"},
            files={"files": ("terminal.png", documents.text_image(LINES, size=18), "image/png")},
            headers=auth,
        )
    assert resp.status_code == 200, resp.text
    assert _images(fake) == []
    assert "upstream connect failed" in fake.requests[0].text
