"""The fake LLM provider speaks both wire protocols, records requests and injects faults."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from fm_common.testing.fake_llm import FakeLLMServer


@pytest.fixture
def fake() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    yield server
    server.stop()


def test_openai_answer_stream_and_usage(fake: FakeLLMServer) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    fake.script("hello there", "streamed answer")
    with httpx.Client(base_url=fake.base_url) as client:
        done = client.post("/v1/chat/completions", json=body).json()
        raw = client.post(
            "/v1/chat/completions",
            json=body | {"stream": True, "stream_options": {"include_usage": True}},
        ).text
    assert done["choices"][0]["message"]["content"] == "hello there"
    assert done["usage"]["total_tokens"] > 0
    chunks = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "streamed answer"
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert raw.rstrip().endswith("data: [DONE]")


def test_anthropic_stream_events(fake: FakeLLMServer) -> None:
    fake.script("from claude")
    body = {
        "model": "c",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    with httpx.Client(base_url=fake.base_url) as client:
        raw = client.post("/named/v1/messages", json=body).text
    events = [line[7:] for line in raw.splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start"
    assert events[-1] == "message_stop"
    deltas = [json.loads(line[6:]) for line in raw.splitlines() if '"text_delta"' in line]
    assert "".join(d["delta"]["text"] for d in deltas) == "from claude"
    assert fake.requests_for("named")[0].protocol == "anthropic"


def test_faults_by_name_and_the_request_log(fake: FakeLLMServer) -> None:
    fake.rate_limit("a", retry_after=7, times=1)
    fake.fail("b", 502)
    body = {"model": "m", "messages": [{"role": "user", "content": "secret-ish"}]}
    with httpx.Client(base_url=fake.base_url, timeout=5) as client:
        limited = client.post("/a/v1/chat/completions", json=body)
        after = client.post("/a/v1/chat/completions", json=body)
        failed = client.post("/b/v1/messages", json=body)
        recorded = client.get("/_fake/requests").json()
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert after.status_code == 200
    assert failed.status_code == 502
    assert failed.json()["type"] == "error"
    assert [r["name"] for r in recorded] == ["a", "a", "b"]
    assert "secret-ish" in fake.all_text()


def test_a_hang_answers_nothing(fake: FakeLLMServer) -> None:
    fake.hang("*", seconds=3)
    with (
        httpx.Client(base_url=fake.base_url, timeout=0.5) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post("/v1/chat/completions", json={"model": "m", "messages": []})
