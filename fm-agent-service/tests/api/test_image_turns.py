"""A screenshot attached to a turn: the text the worker read from it (stood in here;
tests/system/test_screenshot_turns.py runs the real OCR) reaches the model as evidence
like a log's text, redacted first; a file still being read or unreadable is named."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from agent_standins import provider, running

from fm_common.testing.fake_llm import FakeLLMServer

ERROR = "psycopg2.OperationalError: FATAL: password authentication failed for user orders"
SECRET = "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture
def settings(make_settings: Any, fake: FakeLLMServer) -> Any:
    return make_settings([provider(fake, "primary")], attachment_text_wait_seconds=1.0)


async def _turn(client: httpx.AsyncClient, case_id: str, auth: dict[str, str]) -> httpx.Response:
    return await client.post(
        f"/api/v1/cases/{case_id}/turns",
        data={"query": "what does this error say?"},
        files={"files": ("dialog.png", b"\x89PNG\r\n\x1a\n stand-in bytes", "image/png")},
        headers=auth,
    )


async def test_the_screenshots_text_reaches_the_model_redacted(
    settings: Any, standins: Any, user_id: str, auth: dict[str, str], fake: FakeLLMServer
) -> None:
    case_id = standins.add_case(user_id)
    standins.state.ocr_texts["dialog.png"] = f"Connection error\n{ERROR}\naws key {SECRET}"
    async with running(settings) as client:
        resp = await _turn(client, case_id, auth)
    assert resp.status_code == 200, resp.text
    assert resp.json()["attachments_processed"][0]["source_type"] == "image"
    prompt = fake.requests[0].text
    assert "dialog.png (image, file_upload)" in prompt
    assert ERROR in prompt
    assert SECRET not in prompt
    assert "<SECRET_1>" in prompt


async def test_an_image_not_read_in_time_is_named_not_invented(
    settings: Any, standins: Any, user_id: str, auth: dict[str, str], fake: FakeLLMServer
) -> None:
    case_id = standins.add_case(user_id)  # no OCR text: the stand-in answers "pending"
    async with running(settings) as client:
        resp = await _turn(client, case_id, auth)
    assert resp.status_code == 200, resp.text
    assert "The text of this file is still being read" in fake.requests[0].text


async def test_the_evidence_text_route_down_still_answers(
    settings: Any, standins: Any, user_id: str, auth: dict[str, str], fake: FakeLLMServer
) -> None:
    """The upload worked but the text cannot be fetched: the turn is answered and says so."""
    case_id = standins.add_case(user_id)
    standins.state.ocr_texts["dialog.png"] = ERROR
    standins.state.down.add("evidence_text")
    async with running(settings) as client:
        resp = await _turn(client, case_id, auth)
    assert resp.status_code == 200, resp.text
    prompt = fake.requests[0].text
    assert "could not be fetched" in prompt
    assert ERROR not in prompt
