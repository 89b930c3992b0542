"""The provider chain through the real SDKs (LangChain -> openai / anthropic -> HTTP) and
the fake provider: both protocols, streaming, failover, Retry-After, breakers, deadline."""

from __future__ import annotations

import time
from typing import Any

import pytest
from agent_standins import provider
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from agent_service.config import ProviderConfig
from agent_service.domain.llm.chain import LLMUnavailable, ProviderChain
from fm_common.testing.fake_llm import FakeLLMServer

# Tests of what is sent, not of timing: a deadline the fake answers well within, long
# enough that a stall of the shared machine (17 s seen in CI) does not fail them.
ANSWER_WITHIN = 60

MESSAGES = [
    SystemMessage("TASK: turn"),
    HumanMessage("SOURCE S1 | title: Disk full | x |\nQUESTION: why?"),
]


def chain(fake: FakeLLMServer, *specs: tuple[str, str], **kw: object) -> ProviderChain:
    configs = [
        ProviderConfig(**provider(fake, name, kind, timeout_seconds=5.0)) for name, kind in specs
    ]
    return ProviderChain(configs, max_tokens=256, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["openai", "anthropic", "fireworks", "openai_compatible"])
async def test_each_kind_answers_and_streams_through_its_sdk(
    fake: FakeLLMServer, redactor: Any, kind: str
) -> None:
    c = chain(fake, ("p", kind))
    result = await c.complete(
        MESSAGES, redactor=redactor, deadline=time.monotonic() + ANSWER_WITHIN
    )
    assert '"answer": "According to \\"Disk full\\" [S1]' in result.text
    assert result.provider == "p"
    assert result.input_tokens > 0
    assert result.output_tokens > 0
    tokens: list[str] = []

    async def sink(t: str) -> None:
        tokens.append(t)

    streamed = await c.complete(
        MESSAGES, redactor=redactor, deadline=time.monotonic() + ANSWER_WITHIN, on_token=sink
    )
    assert len(tokens) > 3
    assert "".join(tokens) == streamed.text == result.text
    sent = fake.requests
    assert [r.stream for r in sent] == [False, True]
    assert sent[0].protocol == ("anthropic" if kind == "anthropic" else "openai")
    assert "QUESTION: why?" in sent[0].text


@pytest.mark.parametrize("fault", ["500", "429", "hang", "down"])
async def test_primary_failure_fails_over_to_the_secondary(
    fake: FakeLLMServer, redactor: Any, fault: str
) -> None:
    specs = [("primary", "openai"), ("secondary", "anthropic")]
    # The primary's timeout is short (the hang case); the secondary has headroom.
    configs = [
        ProviderConfig(**provider(fake, n, k, timeout_seconds=t))
        for (n, k), t in zip(specs, (1.0, 5.0), strict=True)
    ]
    if fault == "down":
        configs[0] = configs[0].model_copy(update={"base_url": "http://127.0.0.1:1/v1"})
    c = ProviderChain(configs, max_tokens=128)
    if fault == "500":
        fake.fail("primary", 500)
    elif fault == "429":
        fake.rate_limit("primary", retry_after=30)
    elif fault == "hang":
        fake.hang("primary", seconds=60)
    start = time.monotonic()
    result = await c.complete(MESSAGES, redactor=redactor, deadline=start + 30)
    assert result.provider == "secondary"
    # Well inside the deadline and far from the 60 s hang: the primary was given up on.
    assert time.monotonic() - start < 30
    assert [a["provider"] for a in result.attempts] == ["primary", "secondary"]


async def test_retry_after_is_honoured_within_the_deadline(
    fake: FakeLLMServer, redactor: Any
) -> None:
    c = chain(fake, ("only", "openai"))
    fake.rate_limit("only", retry_after=0.5, times=1)
    start = time.monotonic()
    result = await c.complete(MESSAGES, redactor=redactor, deadline=start + 60)
    assert result.provider == "only"
    assert time.monotonic() - start >= 0.5
    assert len(fake.requests_for("only")) == 2


async def test_retry_after_beyond_the_deadline_is_not_waited_for(
    fake: FakeLLMServer, redactor: Any
) -> None:
    c = chain(fake, ("only", "openai"))
    fake.rate_limit("only", retry_after=120)
    start = time.monotonic()
    with pytest.raises(LLMUnavailable) as err:
        await c.complete(MESSAGES, redactor=redactor, deadline=start + 3)
    assert time.monotonic() - start < 60  # it did not sit out the 120 s Retry-After
    assert err.value.status_code == 503
    assert "Retry-After" in err.value.headers


async def test_all_providers_down_is_unavailable_within_the_deadline(
    fake: FakeLLMServer, redactor: Any
) -> None:
    c = chain(fake, ("a", "openai"), ("b", "anthropic"))
    fake.hang("a", seconds=120)
    fake.hang("b", seconds=120)
    start = time.monotonic()
    with pytest.raises(LLMUnavailable):
        await c.complete(MESSAGES, redactor=redactor, deadline=start + 1.5)
    assert time.monotonic() - start < 60  # the deadline ended it, not the 120 s hangs


async def test_breaker_opens_after_repeated_failures_and_skips_the_provider(
    fake: FakeLLMServer,
    redactor: Any,
) -> None:
    c = chain(
        fake, ("flaky", "openai"), ("good", "openai"), breaker_failures=2, breaker_reset_seconds=60
    )
    fake.fail("flaky", 500)
    for _ in range(3):
        result = await c.complete(MESSAGES, redactor=redactor, deadline=time.monotonic() + 10)
        assert result.provider == "good"
    assert len(fake.requests_for("flaky")) == 2  # the third turn skipped it
    assert c.entries[0].breaker.state == "open"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_stream_that_breaks_off_fails_over_and_says_so(
    fake: FakeLLMServer, redactor: Any, kind: str
) -> None:
    c = chain(fake, ("primary", kind), ("secondary", "openai"))
    fake.cut("primary", after_events=6)
    tokens: list[str] = []
    failovers: list[str] = []

    async def sink(t: str) -> None:
        tokens.append(t)

    async def on_failover(name: str) -> None:
        failovers.append(name)
        tokens.clear()

    result = await c.complete(
        MESSAGES,
        redactor=redactor,
        deadline=time.monotonic() + 10,
        on_token=sink,
        on_failover=on_failover,
    )
    assert failovers == ["primary"]
    assert result.provider == "secondary"
    assert "".join(tokens) == result.text
    assert result.attempts[0]["provider"] == "primary"


@pytest.mark.parametrize("kind", ["openai", "openai_compatible"])
@pytest.mark.parametrize("stream", [False, True])
async def test_openai_messages_reach_the_provider_as_sent_without_the_sdk_walking_them(
    fake: FakeLLMServer, redactor: Any, monkeypatch: pytest.MonkeyPatch, kind: str, stream: bool
) -> None:
    import openai.resources.chat.completions.completions as sdk

    walked: list[list[object]] = []
    real = sdk.async_maybe_transform

    async def spy(data: object, *args: object, **kwargs: object) -> object:
        if isinstance(data, dict) and "messages" in data:
            walked.append(list(data["messages"]))
        return await real(data, *args, **kwargs)

    monkeypatch.setattr(sdk, "async_maybe_transform", spy)
    question = 'QUESTION: "why" \\ <<<DATA x>>> \u00e9 \u2713 \n\tend'
    messages = [
        SystemMessage("TASK: turn"),
        HumanMessage("the first question"),
        AIMessage("an earlier answer"),
        HumanMessage(question),
    ]
    tokens: list[str] = []

    async def sink(t: str) -> None:
        tokens.append(t)

    result = await chain(fake, ("p", kind)).complete(
        messages,
        redactor=redactor,
        deadline=time.monotonic() + ANSWER_WITHIN,
        on_token=sink if stream else None,
    )
    assert result.text
    assert bool(tokens) is stream
    sent = fake.requests[-1]
    assert sent.body["messages"] == [
        {"role": "system", "content": "TASK: turn"},
        {"role": "user", "content": "the first question"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": question},
    ]
    assert sent.body["model"] == "p-model"
    assert sent.body["stream"] is stream
    assert walked == [[]]  # the SDK's request transform never walked the messages


def test_our_timeouts_rule_a_slow_local_model_not_langchains_chunk_timeout(
    fake: FakeLLMServer,
) -> None:
    # LangChain's OpenAI client stops a stream after 120 s without a chunk by default: a
    # small model on a busy CPU (grammar-constrained) took longer for its first token.
    c = chain(fake, ("a", "openai"), ("b", "openai_compatible"))
    assert [e.model.stream_chunk_timeout for e in c.entries] == [None, None]  # type: ignore[attr-defined]
