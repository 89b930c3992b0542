"""One structured answer from the provider chain for a prepared turn: streamed through
the safety pipeline (extract, echo filter, restore, sanitize) as it comes, and a
malformed answer asked for once more."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from langchain_core.messages import AIMessage

from agent_service.domain.llm.chain import LLMResult, LLMUnavailable
from agent_service.domain.llm.providers import StructuredOutput
from agent_service.domain.privacy.safety import EchoFilter, StreamSanitizer, strip_echo
from agent_service.domain.turns.answer import (
    ANSWER_TOOL,
    AnswerExtractor,
    LLMTurnAnswer,
    MalformedAnswer,
    answer_json_schema,
    plain_answer,
)
from agent_service.domain.turns.context import PreparedTurn
from agent_service.domain.turns.prompt import retry_message
from agent_service.domain.turns.service import parse_result
from agent_service.runtime import AgentRuntime

log = structlog.get_logger("agent.turns")
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


async def timed_call(prep: PreparedTurn, call: Awaitable[LLMResult]) -> LLMResult:
    """One trip through the provider chain, added to the turn's model time and calls."""
    started = time.perf_counter()
    try:
        result = await call
        prep.input_tokens += result.input_tokens
        prep.output_tokens += result.output_tokens
        return result
    finally:
        ms = (time.perf_counter() - started) * 1000
        prep.timings["llm_ms"] = round(prep.timings.get("llm_ms", 0.0) + ms, 2)
        prep.timings["llm_calls"] = prep.timings.get("llm_calls", 0) + 1


async def call_model(
    rt: AgentRuntime, prep: PreparedTurn, emit: Emit | None
) -> tuple[LLMResult, LLMTurnAnswer | None, str, bool]:
    """(result, structured answer or None, answer text with placeholders, streamed?)."""
    allow = rt.settings.link_allowlist
    streamed: list[str] = []
    pipeline: dict[str, Any] = {}

    def reset() -> None:
        pipeline.clear()
        pipeline.update(
            extractor=AnswerExtractor(),
            echo=EchoFilter(prep.fence.boundary),
            sanitizer=StreamSanitizer(allow),
            restorer=prep.redactor.stream_restorer(),
        )
        streamed.clear()

    reset()

    async def on_token(piece: str) -> None:
        assert emit is not None
        if pipeline.get("broken"):
            return
        try:
            out = pipeline["extractor"].feed(piece)
            out = pipeline["echo"].feed(out) if out else ""
            # Restore, then sanitize: a link built from placeholders (`http://<EMAIL_1>/...`)
            # is judged with the real values in it.
            out = pipeline["restorer"].feed(out) if out else ""
            out = pipeline["sanitizer"].feed(out) if out else ""
        except Exception:  # a bug of ours must not fail the turn: the answer comes whole
            log.exception("turn.stream_pipeline_failed", case_id=prep.case_id)
            pipeline["broken"] = True
            return
        if out:
            streamed.append(out)
            await emit("token", {"text": out})

    async def on_failover(provider: str) -> None:
        assert emit is not None
        reset()
        await emit(
            "error",
            {
                "code": "PROVIDER_FAILOVER",
                "message": f"{provider} failed mid-answer; answering again with the next provider.",
                "retrying": True,
            },
        )

    # The provider's own constrained decoding holds the answer to the schema that
    # parse_answer validates (the prompt asks for it too: the last resort).
    output = StructuredOutput(
        ANSWER_TOOL,
        "Your reply to the user and the update of the investigation.",
        answer_json_schema([p.sid for p in prep.passages]),
    )
    result = await timed_call(
        prep,
        rt.chain.complete(
            prep.messages,
            redactor=prep.redactor,
            deadline=prep.deadline,
            on_token=on_token if emit else None,
            on_failover=on_failover if emit else None,
            structured=output,
            images=prep.images,
        ),
    )
    if emit and not pipeline.get("broken"):
        try:
            tail = pipeline["extractor"].flush()
            tail = pipeline["echo"].feed(tail) + pipeline["echo"].flush()
            tail = pipeline["restorer"].feed(tail) + pipeline["restorer"].flush()
            tail = pipeline["sanitizer"].feed(tail) + pipeline["sanitizer"].flush()
        except Exception:
            log.exception("turn.stream_pipeline_failed", case_id=prep.case_id)
            tail = ""
        if tail:
            streamed.append(tail)
            await emit("token", {"text": tail})
    try:
        return result, parse_result(result), "", bool(streamed)
    except MalformedAnswer as exc:
        log.warning("turn.malformed_answer", provider=result.provider, reason=str(exc))
        if streamed:  # the user already read it: keep it as a plain answer
            return result, None, plain_answer(result.text), True
        first_reason = str(exc)
    if rt.settings.max_steps < 2:
        return result, None, plain_answer(result.text), False
    # The malformed answer goes back without anything echoing the prompt frame.
    echoed = strip_echo(result.text, prep.fence.boundary)
    retry_messages = [*prep.messages, AIMessage(echoed), retry_message(first_reason)]
    try:
        second = await timed_call(
            prep,
            rt.chain.complete(
                retry_messages,
                redactor=prep.redactor,
                deadline=prep.deadline,
                structured=output,
                images=prep.images,
            ),
        )
    except LLMUnavailable:
        return result, None, plain_answer(result.text), False
    try:
        return second, parse_result(second), "", False
    except MalformedAnswer:
        log.warning("turn.degraded_to_plain", provider=second.provider)
        return second, None, plain_answer(second.text) or plain_answer(result.text), False
