"""The ordered provider chain: failover, circuit breakers, Retry-After, one deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import BaseMessage

from agent_service.config import ProviderConfig
from agent_service.domain.llm.outbound import redact_outbound
from agent_service.domain.llm.providers import (
    COMPATIBLE_FORMATS,
    LLM_CALLS,
    LLM_FAILURES,
    LLM_LATENCY,
    LLM_TOKENS,
    CircuitBreaker,
    Failure,
    OutputMode,
    StructuredOutput,
    bind_structured,
    build_model,
    classify,
)
from agent_service.domain.privacy.redaction import CaseRedactor
from fm_common.errors import Unavailable

log = structlog.get_logger("agent.llm")

TokenSink = Callable[[str], Awaitable[None]]
# Leave this much of the deadline for a call after waiting out a Retry-After.
MIN_CALL_SECONDS = 0.5
# Our own stop for a stream that runs past the output cap (a server that ignores it):
# generous enough that a server honouring the cap is never cut (tokens average ~4 chars).
STREAM_CHARS_PER_TOKEN = 6


class LLMUnavailable(Unavailable):
    code, detail = (
        "LLM_UNAVAILABLE",
        "No language model provider answered in time; your message was saved, retry later.",
    )


@dataclass
class LLMResult:
    text: str
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # The answer was cut at the output cap (by the provider or by our own stop).
    truncated: bool = False
    # How the answer's structure was asked for: the provider's constrained decoding
    # (json_schema, tool) or the prompt alone.
    output_mode: str = "prompt"


@dataclass
class _Entry:
    config: ProviderConfig
    model: BaseChatModel
    breaker: CircuitBreaker
    # An OpenAI-compatible server's way of taking a schema (providers.COMPATIBLE_FORMATS):
    # the one to try, and whether the server was seen to take it.
    format_index: int = 0
    format_known: bool = False


class _SinkFailed(Exception):
    """Our own token sink raised: a bug of ours, never counted against the provider."""


class _CallFailed(Exception):
    def __init__(self, failure: Failure, emitted: bool) -> None:
        super().__init__(failure.reason)
        self.failure = failure
        self.emitted = emitted


def _tool_args(message: Any) -> str:
    """The arguments of a (forced) tool call, as JSON text: whole, or this chunk's part."""
    chunks = getattr(message, "tool_call_chunks", None) or []
    if chunks:
        return "".join(str(c.get("args") or "") for c in chunks)
    calls = getattr(message, "tool_calls", None) or []
    return json.dumps(calls[0]["args"]) if calls else ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b.get("text", "") if isinstance(b, dict) else str(b)
            for b in content
            if not isinstance(b, dict) or b.get("type", "text") in ("text", "text_delta")
        )
    return ""


def _finish_reason(message: Any) -> str | None:
    """Why the provider stopped ("length" = the output cap), whatever the SDK calls it."""
    meta = getattr(message, "response_metadata", None) or {}
    reason = meta.get("finish_reason") or meta.get("stop_reason")
    return "length" if reason in ("length", "max_tokens") else reason


def with_images(messages: list[BaseMessage], images: Sequence[Any]) -> list[BaseMessage]:
    """The messages with the images (objects with `filename` and `png`) appended to the
    last user message as content parts (OpenAI `image_url` data URLs; langchain turns
    them into each provider's own form)."""
    if not images:
        return messages
    import base64

    from langchain_core.messages import HumanMessage

    last = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=None)
    if last is None:
        return messages
    text = _text(messages[last].content)
    parts: list[Any] = [{"type": "text", "text": text}]
    for number, image in enumerate(images, start=1):
        # No file name here: this text is added after the outbound redaction.
        parts.append({"type": "text", "text": f"Attached image {number} (redacted):"})
        url = "data:image/png;base64," + base64.b64encode(image.png).decode()
        parts.append({"type": "image_url", "image_url": {"url": url}})
    out = list(messages)
    out[last] = HumanMessage(content=parts)
    return out


class ProviderChain:
    """Calls the providers in order until one answers within the turn's deadline."""

    def __init__(
        self,
        configs: Sequence[ProviderConfig],
        *,
        max_tokens: int,
        breaker_failures: int = 3,
        breaker_reset_seconds: float = 30.0,
    ) -> None:
        self.max_tokens = max_tokens
        self.entries = [
            _Entry(
                cfg,
                build_model(cfg, max_tokens),
                CircuitBreaker(breaker_failures, breaker_reset_seconds),
            )
            for cfg in configs
        ]

    async def aclose(self) -> None:
        """Close the providers' HTTP clients (the app's lifespan ends)."""
        for entry in self.entries:
            model = entry.model
            clients = [
                getattr(model, "http_async_client", None),  # ChatOpenAI: ours
                model.__dict__.get("_async_client"),  # ChatAnthropic: ours
                getattr(model, "_async_sdk_client", None),  # ChatFireworks
            ]
            for client in clients:
                close = getattr(client, "aclose", None) or getattr(client, "close", None)
                if close is not None:
                    result = close()
                    if hasattr(result, "__await__"):
                        await result

    @property
    def configured(self) -> bool:
        return bool(self.entries)

    def describe(self) -> list[dict[str, str]]:
        return [
            {"name": e.config.name, "kind": e.config.kind, "model": e.config.model}
            for e in self.entries
        ]

    async def complete(
        self,
        messages: list[BaseMessage],
        *,
        redactor: CaseRedactor,
        deadline: float,
        on_token: TokenSink | None = None,
        on_failover: Callable[[str], Awaitable[None]] | None = None,
        structured: StructuredOutput | None = None,
        images: Sequence[Any] = (),
    ) -> LLMResult:
        """The first provider's answer that arrives before `deadline` (time.monotonic).
        Every message passes the case's redaction first (the one choke point).

        `images` (pixel-redacted PNGs, domain/privacy/pixels) go only to providers whose
        `send_images` is set, appended to the last user message.

        With `structured`, each provider is asked for a JSON answer held to its schema by
        its own constrained decoding (providers.bind_structured); the prompt still asks for
        it too, the last resort where a server ignores or refused the request."""
        messages = await redact_outbound(messages, redactor)
        attempts: list[dict[str, Any]] = []
        waits: list[tuple[float, _Entry]] = []
        for entry in self.entries:
            if deadline - time.monotonic() <= 0:
                break
            if not entry.breaker.available():
                attempts.append(
                    {
                        "provider": entry.config.name,
                        "outcome": "skipped",
                        "state": entry.breaker.state,
                    }
                )
                if entry.breaker.cooldown_until > time.monotonic():
                    waits.append((entry.breaker.cooldown_until, entry))
                continue
            try:
                sent = with_images(messages, images) if entry.config.send_images else messages
                return await self._call(entry, sent, deadline, on_token, attempts, structured)
            except _CallFailed as exc:
                if exc.failure.reason == "rate_limited":
                    waits.append((time.monotonic() + (exc.failure.retry_after or 1.0), entry))
                if exc.emitted and on_failover is not None:
                    await on_failover(entry.config.name)
        # Honour Retry-After: wait for a rate-limited provider when the deadline allows it.
        for ready, entry in sorted(waits, key=lambda w: w[0]):
            if ready + MIN_CALL_SECONDS > deadline:
                continue
            await asyncio.sleep(max(0.0, ready - time.monotonic()))
            entry.breaker.cooldown_until = 0.0
            try:
                sent = with_images(messages, images) if entry.config.send_images else messages
                return await self._call(entry, sent, deadline, on_token, attempts, structured)
            except _CallFailed as exc:
                if exc.emitted and on_failover is not None:
                    await on_failover(entry.config.name)
        log.warning("llm.all_failed", attempts=attempts)
        raise LLMUnavailable(
            extra={"attempts": [a["provider"] + ":" + a["outcome"] for a in attempts]}
        )

    async def _call(
        self,
        entry: _Entry,
        messages: list[BaseMessage],
        deadline: float,
        on_token: TokenSink | None,
        attempts: list[dict[str, Any]],
        structured: StructuredOutput | None = None,
    ) -> LLMResult:
        name = entry.config.name
        kind = entry.config.kind
        runnable: Any = entry.model
        mode: OutputMode = "prompt"
        variant = COMPATIBLE_FORMATS[entry.format_index]
        if structured is not None:
            runnable, mode = bind_structured(entry.model, kind, structured, variant)
        start = time.monotonic()
        timeout = min(entry.config.timeout_seconds, deadline - start)
        parts: list[str] = []
        usage = {"input_tokens": 0, "output_tokens": 0}
        emitted = False
        cap_chars = self.max_tokens * STREAM_CHARS_PER_TOKEN
        written = 0
        capped = False
        try:
            async with asyncio.timeout(timeout):
                if on_token is None:
                    msg = await runnable.ainvoke(messages)
                    parts.append(_tool_args(msg) if mode == "tool" else _text(msg.content))
                    meta = getattr(msg, "usage_metadata", None) or {}
                    usage = {k: int(meta.get(k) or 0) for k in usage}
                    capped = _finish_reason(msg) == "length"
                else:
                    stream = runnable.astream(messages)
                    try:
                        async for chunk in stream:
                            piece = _tool_args(chunk) if mode == "tool" else _text(chunk.content)
                            meta = getattr(chunk, "usage_metadata", None) or {}
                            for k in usage:
                                usage[k] += int(meta.get(k) or 0)
                            capped = capped or _finish_reason(chunk) == "length"
                            if not piece:
                                continue
                            if written + len(piece) > cap_chars:  # the server ignores the cap
                                piece = piece[: cap_chars - written]
                                capped = True
                            written += len(piece)
                            if piece:
                                parts.append(piece)
                                emitted = True
                                try:
                                    await on_token(piece)
                                except Exception as exc:
                                    raise _SinkFailed() from exc
                            if written >= cap_chars:
                                log.warning("llm.output_capped", provider=name, chars=written)
                                break
                    finally:
                        await stream.aclose()  # type: ignore[attr-defined]
        except _SinkFailed as exc:  # not the provider's failure: no breaker, no failover
            raise exc.__cause__ from None  # type: ignore[misc]
        except Exception as exc:  # every provider failure is classified and failed over
            failure = classify(exc)
            elapsed = time.monotonic() - start
            if (
                structured is not None
                and kind == "openai_compatible"
                and not entry.format_known
                and variant != "prompt"
                and failure.reason in ("client_error", "server_error")
                and not emitted
            ):
                # A server refusing this form of response_format (400/422, and 500 from
                # llama-cpp-python's server): asked again at once with the next form;
                # remembered for this provider once a form is taken.
                log.warning(
                    "llm.response_format_refused",
                    provider=name,
                    form=variant,
                    status=failure.status,
                )
                entry.format_index += 1
                try:
                    return await self._call(
                        entry, messages, deadline, on_token, attempts, structured
                    )
                except _CallFailed:
                    if not entry.format_known:
                        entry.format_index = 0  # refused whatever was asked: not proven
                    raise
            entry.breaker.failure(failure)
            LLM_FAILURES.labels(name, failure.reason).inc()
            LLM_CALLS.labels(name, "failure").inc()
            LLM_LATENCY.labels(name, entry.config.model, "failure").observe(elapsed)
            attempts.append({"provider": name, "outcome": failure.reason, "status": failure.status})
            log.warning(
                "llm.provider_failed",
                provider=name,
                reason=failure.reason,
                status=failure.status,
                retry_after=failure.retry_after,
                elapsed_ms=round(elapsed * 1000, 1),
                error=type(exc).__name__,
            )
            raise _CallFailed(failure, emitted) from exc
        elapsed = time.monotonic() - start
        if structured is not None and kind == "openai_compatible":
            entry.format_known = True
        entry.breaker.success()
        LLM_CALLS.labels(name, "success").inc()
        model = entry.config.model
        LLM_LATENCY.labels(name, model, "success").observe(elapsed)
        LLM_TOKENS.labels(name, model, "input").inc(usage["input_tokens"])
        LLM_TOKENS.labels(name, model, "output").inc(usage["output_tokens"])
        attempts.append({"provider": name, "outcome": "success"})
        return LLMResult(
            text="".join(parts),
            provider=name,
            model=entry.config.model,
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            latency_ms=round(elapsed * 1000, 2),
            attempts=attempts,
            truncated=capped,
            output_mode=mode,
        )
