"""What a real model may answer: malformed output, prompt echoes, runaway length. None of
it fails a turn, reaches the user as a marker, or is held against the provider."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from agent_standins import provider, running

from fm_common.testing.fake_llm import FakeLLMServer

RUNBOOK = (
    "Postgres connection pool exhausted: when the orders service logs 'remaining connection "
    "slots are reserved', raise max_connections or lower the pool size, then restart pgbouncer."
)
QUERY = "orders service errors: remaining connection slots are reserved for postgres"

MALFORMED = {
    "bad_escape": '{"answer": "The pool \\uZZZZ is exhausted [S1].", "cited_sources": ["S1"]}',
    "lone_surrogate": '{"answer": "The pool \\ud800 is exhausted.", "hypotheses": [oops',
    "truncated": '{"answer": "The pool is exhausted and the fix is to',
    "prose": "The pool is exhausted; raise max_connections.",
    "empty": "",
    "deep": "[" * 50_000,
}


@pytest.fixture
def case_id(standins: Any, user_id: str) -> str:
    standins.add_document("Postgres pool runbook", RUNBOOK, scope="global")
    return standins.add_case(user_id)


@pytest.fixture
def settings(make_settings: Any, fake: FakeLLMServer) -> Any:
    return make_settings([provider(fake, "primary"), provider(fake, "secondary", "anthropic")])


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def turn(
    client: httpx.AsyncClient, case_id: str, auth: dict[str, str], stream: bool, **data: Any
) -> tuple[int, dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """(status, the TurnResponse, the SSE events) of one turn, plain or streamed."""
    headers = auth | ({"Accept": "text/event-stream"} if stream else {})
    files = data.pop("files", None)
    resp = await client.post(
        f"/api/v1/cases/{case_id}/turns", data=data, files=files, headers=headers
    )
    if not stream or resp.status_code != 200:
        return resp.status_code, resp.json(), []
    events = sse_events(resp.text)
    assert events[-1][0] == "done", events[-1]
    return resp.status_code, events[-1][1], events


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "sse"])
@pytest.mark.parametrize("kind", sorted(MALFORMED))
async def test_malformed_model_output_degrades_to_a_plain_answer_and_is_stored(
    settings: Any,
    case_id: str,
    auth: dict[str, str],
    fake: FakeLLMServer,
    standins: Any,
    kind: str,
    stream: bool,
) -> None:
    fake.script(MALFORMED[kind], MALFORMED[kind])  # the retry is malformed too
    async with running(settings) as client:
        status, body, _ = await turn(client, case_id, auth, stream, query=QUERY)
        rt = client.app.state.runtime  # type: ignore[attr-defined]
        breakers = [e.breaker.consecutive for e in rt.chain.entries]
    assert status == 200, body
    assert body["agent_response"].strip()
    body_text = json.dumps(body, ensure_ascii=False)
    body_text.encode("utf-8")
    assert "Traceback" not in body_text
    stored = standins.state.messages[case_id]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[0]["content"] == QUERY
    assert stored[1]["content"] == body["agent_response"]
    assert stored[1]["metadata"]["structured"] is False
    # A parse error is not a provider failure: no failover, no breaker count.
    assert breakers == [0, 0]
    assert {r.name for r in fake.requests} == {"primary"}


LONG = json.dumps({"answer": "The pool is exhausted [S1]. " + "Check it again. " * 600})


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("openai_compatible", "max_tokens"),
        ("openai", "max_completion_tokens"),
        ("anthropic", "max_tokens"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "sse"])
async def test_the_output_cap_is_sent_in_the_field_each_provider_kind_reads(
    make_settings: Any,
    case_id: str,
    auth: dict[str, str],
    fake: FakeLLMServer,
    kind: str,
    field: str,
    stream: bool,
) -> None:
    fake.honour_cap("p", field)  # a server that reads only this field
    fake.script(LONG, LONG)
    settings = make_settings([provider(fake, "p", kind)], max_output_tokens=64)
    async with running(settings) as client:
        status, body, _ = await turn(client, case_id, auth, stream, query=QUERY)
    assert status == 200, body
    sent = fake.requests[0]
    assert sent.body[field] == 64
    other = "max_completion_tokens" if field == "max_tokens" else "max_tokens"
    assert other not in sent.body
    assert len(body["agent_response"]) <= 64 * 4
    assert fake.requests[0].finished.wait(5)


async def test_our_own_stop_ends_a_stream_that_runs_past_the_cap(
    make_settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer, standins: Any
) -> None:
    from agent_service.domain.llm.chain import STREAM_CHARS_PER_TOKEN

    endless = json.dumps({"answer": "Check the pool. " * 5000})  # the fake ignores caps
    fake.script(endless, endless)
    settings = make_settings([provider(fake, "p", "openai_compatible")], max_output_tokens=64)
    async with running(settings) as client:
        status, body, events = await turn(client, case_id, auth, True, query=QUERY)
    assert status == 200, body
    streamed = "".join(d["text"] for e, d in events if e == "token")
    assert 0 < len(streamed) <= 64 * STREAM_CHARS_PER_TOKEN
    assert len(body["agent_response"]) <= 64 * STREAM_CHARS_PER_TOKEN
    stored = standins.state.messages[case_id][1]
    assert stored["content"] == body["agent_response"]
    assert len(fake.requests) == 1  # the user read it: kept as a plain answer, no retry


def _echo_prompt(request: Any) -> str:
    """What a very small model does: repeat the prompt's last message back."""
    prompt = [m["content"] for m in request.body["messages"] if "QUESTION:" in m["content"]]
    return "I think: " + prompt[-1]


MARKERS = ("<<<", "SOURCE S1 |", "QUESTION:", "DATA ")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "sse"])
async def test_an_echoed_prompt_frame_is_never_shown_stored_or_resent(
    settings: Any,
    case_id: str,
    auth: dict[str, str],
    fake: FakeLLMServer,
    standins: Any,
    stream: bool,
) -> None:
    import re

    fake.responder = _echo_prompt
    async with running(settings) as client:
        status, body, events = await turn(
            client, case_id, auth, stream, query=QUERY, pasted_content="ERROR pool exhausted"
        )
        assert status == 200, body
        boundary = re.search(r"<<<DATA ([0-9a-f]{24}) ", fake.requests[0].text).group(1)  # type: ignore[union-attr]
        fake.responder = None
        second = await turn(client, case_id, auth, False, query="and now?")
    shown = [body["agent_response"], "".join(d["text"] for e, d in events if e == "token")]
    stored = [m["content"] for m in standins.state.messages[case_id]]
    for text in [*shown, *stored]:
        for marker in (*MARKERS, boundary):
            assert marker not in text, (marker, text)
    assert "remaining connection slots" in body["agent_response"]  # the rest is kept
    # The retrieved passage is cited even though the model named none.
    assert [c["title"] for c in body["citations"]] == ["Postgres pool runbook"]
    assert second[0] == 200
    history = fake.requests[-1].body["messages"][1:-1]
    assert [m["role"] for m in history] == ["user", "assistant"]
    for m in history:
        assert boundary not in m["content"]
        assert "<<<" not in m["content"]


async def test_a_failure_note_is_not_sent_as_model_history(
    settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer, standins: Any
) -> None:
    fake.fail("*", 500, times=4)
    async with running(settings) as client:
        failed = await turn(client, case_id, auth, False, query=QUERY)
        assert failed[0] == 503
        fake.clear_faults()
        ok = await turn(client, case_id, auth, False, query="and now?")
    assert ok[0] == 200
    stored = standins.state.messages[case_id]
    assert stored[1]["metadata"]["failed"] is True
    sent = fake.requests[-1].body["messages"]
    assert [m["role"] for m in sent[1:-1]] == ["user"]
    assert "No language model provider answered" not in json.dumps(sent)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "sse"])
@pytest.mark.parametrize("kind", ["openai", "openai_compatible", "anthropic", "fireworks"])
async def test_each_provider_kind_is_asked_for_the_answer_schema_by_constrained_decoding(
    make_settings: Any,
    case_id: str,
    auth: dict[str, str],
    fake: FakeLLMServer,
    standins: Any,
    kind: str,
    stream: bool,
) -> None:
    from agent_service.domain.turns.answer import LLMTurnAnswer

    settings = make_settings([provider(fake, "p", kind)])
    async with running(settings) as client:
        status, body, events = await turn(client, case_id, auth, stream, query=QUERY)
    assert status == 200, body
    sent = fake.requests[0]
    if kind == "anthropic":
        assert sent.tool_choice == {"type": "tool", "name": "turn_answer"}
        [tool] = sent.tools
        assert tool["name"] == "turn_answer"
        schema = tool["input_schema"]
    elif kind == "fireworks":
        assert sent.response_format is not None
        assert sent.response_format["type"] == "json_object"
        schema = sent.response_format["schema"]
    else:
        fmt = sent.response_format
        assert fmt is not None
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["name"] == "turn_answer"
        assert fmt["json_schema"]["strict"] is (kind == "openai")
        schema = fmt["json_schema"]["schema"]
    # Generated from the model the agent validates: the same keys, `answer` first.
    assert list(schema["properties"]) == list(LLMTurnAnswer.model_fields)
    assert schema["required"] == list(LLMTurnAnswer.model_fields)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["cited_sources"]["items"]["enum"] == ["S1"]
    assert "maxLength" not in json.dumps(schema)
    # The answer is structured, and streamed as it is written.
    stored = standins.state.messages[case_id][1]["metadata"]
    assert stored["structured"] is True
    assert stored["output_mode"] == ("tool" if kind == "anthropic" else "json_schema")
    assert body["milestones_completed"] == ["symptom_verified"]
    assert body["citations"][0]["title"] == "Postgres pool runbook"
    if stream:
        tokens = [d["text"] for e, d in events if e == "token"]
        assert len(tokens) > 3
        assert "".join(tokens) == body["agent_response"]
        assert "{" not in body["agent_response"]


def _forms(fake: FakeLLMServer) -> list[str | None]:
    return [r.response_format["type"] if r.response_format else None for r in fake.requests]


async def test_a_server_refusing_response_format_is_asked_again_without_it_and_remembered(
    make_settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer, standins: Any
) -> None:
    fake.refuse_response_format("local")  # any form
    settings = make_settings([provider(fake, "local", "openai_compatible")])
    async with running(settings) as client:
        first = await turn(client, case_id, auth, False, query=QUERY)
        second = await turn(client, case_id, auth, True, query="and then?")
        rt = client.app.state.runtime  # type: ignore[attr-defined]
        breaker = rt.chain.entries[0].breaker.consecutive
    assert (first[0], second[0]) == (200, 200)
    assert _forms(fake) == ["json_schema", "json_object", None, None]
    assert breaker == 0
    for meta in [m["metadata"] for m in standins.state.messages[case_id][1::2]]:
        assert meta["structured"] is True  # parsed from the prompt's JSON: the last resort
        assert meta["output_mode"] == "prompt"


async def test_a_llama_cpp_python_server_gets_json_object_with_the_schema(
    make_settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer, standins: Any
) -> None:
    fake.refuse_response_format("local", "json_schema", status=500)  # what it answers
    settings = make_settings([provider(fake, "local", "openai_compatible")])
    async with running(settings) as client:
        first = await turn(client, case_id, auth, True, query=QUERY)
        second = await turn(client, case_id, auth, False, query="and then?")
        rt = client.app.state.runtime  # type: ignore[attr-defined]
        breaker = rt.chain.entries[0].breaker.consecutive
    assert (first[0], second[0]) == (200, 200)
    assert _forms(fake) == ["json_schema", "json_object", "json_object"]
    assert fake.requests[-1].response_format["schema"]["required"][0] == "answer"  # type: ignore[index]
    assert breaker == 0
    meta = standins.state.messages[case_id][1]["metadata"]
    assert (meta["structured"], meta["output_mode"]) == (True, "json_schema")


async def test_a_400_for_another_reason_is_not_remembered_as_a_refusal(
    make_settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer
) -> None:
    fake.fail("local", 400, times=3)  # refused whatever form is asked, and without one
    settings = make_settings([provider(fake, "local", "openai_compatible")])
    async with running(settings) as client:
        first = await turn(client, case_id, auth, False, query=QUERY)
        second = await turn(client, case_id, auth, False, query="and then?")
    assert (first[0], second[0]) == (503, 200)
    assert _forms(fake) == ["json_schema", "json_object", None, "json_schema"]


async def test_a_turn_accounts_for_every_model_call_and_its_tokens_per_provider_and_model(
    make_settings: Any, case_id: str, auth: dict[str, str], fake: FakeLLMServer, standins: Any
) -> None:
    from agent_standins import turn_json

    malformed = '{"answer": "half an ans'
    fake.script(malformed, turn_json())  # the retry answers
    settings = make_settings([provider(fake, "acct", "openai_compatible", model="acct-model")])
    async with running(settings) as client:
        status, body, _ = await turn(client, case_id, auth, False, query=QUERY)
        metrics = (await client.get("/metrics")).text
    assert status == 200, body
    meta = standins.state.messages[case_id][1]["metadata"]
    assert meta["structured"] is True
    assert meta["llm_calls"] == 2
    assert meta["latency_ms"] > 0
    # Both calls' tokens (the fake counts ~4 characters a token).
    first_out = max(1, len(malformed) // 4)
    second_out = max(1, len(turn_json()) // 4)
    assert meta["output_tokens"] == first_out + second_out
    assert meta["input_tokens"] > 0

    def sample(name: str, **labels: str) -> float:
        for line in metrics.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    labels = {"provider": "acct", "model": "acct-model"}
    assert (
        sample("fm_agent_llm_tokens_total", direction="output", **labels) >= meta["output_tokens"]
    )
    assert sample("fm_agent_llm_tokens_total", direction="input", **labels) >= meta["input_tokens"]
    assert sample("fm_agent_llm_request_duration_seconds_count", outcome="success", **labels) >= 2
    assert sample("fm_agent_turn_duration_seconds_count", mode="sync", outcome="ok") >= 1


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "sse"])
async def test_an_answer_cut_at_the_cap_is_closed_where_it_stopped(
    make_settings: Any,
    case_id: str,
    auth: dict[str, str],
    fake: FakeLLMServer,
    standins: Any,
    stream: bool,
) -> None:
    from agent_standins import turn_json

    fake.honour_cap("p", "max_tokens")
    long_answer = "The pool is exhausted [S1]. " + "Lower the pool size. " * 200
    fake.script(turn_json(long_answer))
    settings = make_settings([provider(fake, "p", "openai_compatible")], max_output_tokens=64)
    async with running(settings) as client:
        status, body, _ = await turn(client, case_id, auth, stream, query=QUERY)
    assert status == 200, body
    meta = standins.state.messages[case_id][1]["metadata"]
    assert (meta["structured"], meta["truncated"]) == (True, True)
    assert len(fake.requests) == 1  # closed, not retried
    assert body["agent_response"].startswith("The pool is exhausted [S1]. Lower the pool size.")
    assert long_answer.startswith(body["agent_response"])


def test_close_truncated_closes_what_the_cap_cut_and_nothing_else() -> None:
    from agent_service.domain.turns.answer import close_truncated, parse_answer

    cases = {
        '{"answer": "The pool is exhau': {"answer": "The pool is exhau"},
        '{"answer": "ok", "cited_sources": ["S1", "S': {"answer": "ok", "cited_sources": ["S1"]},
        '{"answer": "ok", "hypotheses": [{"statement": "x", "likeli': {
            "answer": "ok",
            "hypotheses": [{"statement": "x"}],
        },
        '{"answer": "a\\u12': {"answer": "a"},
        '{"answer": "ok", "root_cause": nu': {"answer": "ok"},
        '{"answer": "ok",': {"answer": "ok"},
    }
    for cut, expected in cases.items():
        closed = close_truncated(cut)
        assert closed is not None, cut
        assert parse_answer(closed).model_dump(exclude_defaults=True) == expected, cut
    assert close_truncated('{"answer": "complete"}') is None
    assert close_truncated("no json at all") is None
