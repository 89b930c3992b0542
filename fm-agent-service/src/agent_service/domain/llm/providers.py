"""LLM providers through LangChain, their failures classified, and their metrics."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from langchain_core.language_models.chat_models import BaseChatModel
from prometheus_client import Counter, Histogram
from pydantic import SecretStr

from agent_service.config import ProviderConfig

LLM_LATENCY = Histogram(
    "fm_agent_llm_request_duration_seconds",
    "LLM provider call latency (each call, failed ones included)",
    ["provider", "model", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
LLM_TOKENS = Counter(
    "fm_agent_llm_tokens_total", "LLM tokens in and out", ["provider", "model", "direction"]
)
LLM_FAILURES = Counter(
    "fm_agent_llm_failures_total", "LLM provider failures", ["provider", "reason"]
)
LLM_CALLS = Counter("fm_agent_llm_calls_total", "LLM provider calls", ["provider", "outcome"])


def build_model(cfg: ProviderConfig, max_tokens: int) -> BaseChatModel:
    """A LangChain chat model for one provider; SDK retries off (the chain fails over)."""
    params: dict[str, Any] = {
        "model": cfg.model,
        "api_key": cfg.api_key or SecretStr("not-needed"),
        "timeout": cfg.timeout_seconds,
        "max_retries": 0,
        "max_tokens": max_tokens,
    }
    if cfg.base_url:
        params["base_url"] = cfg.base_url
    if cfg.kind == "anthropic":
        import anthropic
        from langchain_anthropic import ChatAnthropic

        model = ChatAnthropic(**params)
        # Our own HTTP client: LangChain's default one is cached process-wide and bound to
        # the first event loop (the worker runs a loop per process, tests one per test).
        model.__dict__["_async_client"] = anthropic.AsyncClient(**model._client_params)
        return model
    if cfg.kind == "fireworks":
        from langchain_fireworks import ChatFireworks

        return ChatFireworks(**params)
    from agent_service.domain.llm.openai_chat import LeanChatOpenAI

    params["http_async_client"] = httpx.AsyncClient(timeout=cfg.timeout_seconds)
    return LeanChatOpenAI(
        stream_usage=True,
        # Our own timeouts rule (the provider's timeout_seconds, the turn's deadline), not
        # LangChain's 120 s between chunks: a local model on a slow CPU may think longer.
        stream_chunk_timeout=None,
        temperature=0.2,
        classic_max_tokens=cfg.kind == "openai_compatible",
        **params,
    )


@dataclass(frozen=True)
class StructuredOutput:
    """An answer held to a JSON schema by the provider's own constrained decoding."""

    name: str
    description: str
    schema: dict[str, Any]


# What a model hands back under constrained decoding: plain text (a JSON object written
# under `response_format`) or the arguments of a forced tool call (Anthropic).
OutputMode = Literal["prompt", "json_schema", "tool"]

_STRICT_DROP = frozenset({"minLength", "maxLength", "format", "pattern"})


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's strict mode: every object closed with all keys required (the schema is
    already), and none of the keywords strict mode refuses."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items() if k not in _STRICT_DROP}
        return node

    return walk(schema)  # type: ignore[no-any-return]


# The ways an OpenAI-compatible server may take a schema, tried in this order until one is
# accepted: OpenAI's `json_schema` (llama.cpp's llama-server, vLLM, Ollama, LM Studio),
# then `json_object` with a `schema` (llama-cpp-python's server, Anyscale-style), then
# none (the prompt alone).
COMPATIBLE_FORMATS: tuple[str, ...] = ("json_schema", "json_object_schema", "prompt")


def bind_structured(
    model: BaseChatModel, kind: str, output: StructuredOutput, variant: str = "json_schema"
) -> tuple[Any, OutputMode]:
    """The model bound to ask for `output` in the way this provider kind enforces it:
    OpenAI `response_format` json_schema (strict); Anthropic a forced tool whose input
    schema is the answer's; OpenAI-compatible servers `response_format` json_schema, or
    the `variant` the server was found to take (COMPATIBLE_FORMATS); Fireworks
    `response_format` json_object with the schema. The OpenAI kinds carry it in
    `extra_body`, past LangChain's own handling of response_format (which would switch
    streaming to the SDK's beta parser)."""
    if kind == "anthropic":
        tool = {"name": output.name, "description": output.description}
        tool["input_schema"] = output.schema  # type: ignore[assignment]
        bound = model.bind_tools([tool], tool_choice=output.name)  # forced: {type: tool}
        return bound, "tool"
    if kind == "fireworks":
        fmt: dict[str, Any] = {"type": "json_object", "schema": output.schema}
        return model.bind(response_format=fmt), "json_schema"
    if variant == "prompt":
        return model, "prompt"
    if variant == "json_object_schema":
        fmt = {"type": "json_object", "schema": output.schema}
        return model.bind(extra_body={"response_format": fmt}), "json_schema"
    strict = kind == "openai"
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": output.name,
            "description": output.description,
            "schema": strict_schema(output.schema) if strict else output.schema,
            "strict": strict,
        },
    }
    return model.bind(extra_body={"response_format": fmt}), "json_schema"


@dataclass
class Failure:
    reason: str  # timeout | connection | rate_limited | server_error | client_error | error
    retry_after: float | None = None
    status: int | None = None


def _header(headers: object, name: str) -> str | None:
    try:
        return headers.get(name)  # type: ignore[attr-defined, no-any-return]
    except AttributeError:
        return None


def classify(exc: BaseException) -> Failure:
    """What kind of failure a provider call raised (SDK-agnostic)."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | httpx.TimeoutException):
        return Failure("timeout")
    mro = {c.__name__ for c in type(exc).__mro__}
    if "APITimeoutError" in mro:
        return Failure("timeout")
    if "APIConnectionError" in mro or isinstance(exc, httpx.TransportError | ConnectionError):
        return Failure("connection")
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    if isinstance(status, int):
        if status == 429:
            raw = _header(getattr(response, "headers", None), "retry-after")
            try:
                retry_after = float(raw) if raw is not None else None
            except ValueError:
                retry_after = None
            return Failure("rate_limited", retry_after, status)
        if status >= 500:
            return Failure("server_error", status=status)
        return Failure("client_error", status=status)
    return Failure("error")


class CircuitBreaker:
    """Per provider: open after N consecutive failures, half-open after a pause; a
    rate-limited provider also cools down until its Retry-After has passed."""

    def __init__(self, failures: int, reset_seconds: float) -> None:
        self.threshold = failures
        self.reset_seconds = reset_seconds
        self.consecutive = 0
        self.opened_at: float | None = None
        self.cooldown_until = 0.0
        self._trial = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at >= self.reset_seconds:
            return "half_open"
        return "open"

    def available(self) -> bool:
        if time.monotonic() < self.cooldown_until:
            return False
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True  # one trial call at a time
            return True
        return False

    def success(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self._trial = False

    def failure(self, failure: Failure) -> None:
        self._trial = False
        if failure.reason == "rate_limited":
            self.cooldown_until = time.monotonic() + (failure.retry_after or 1.0)
            return
        self.consecutive += 1
        if self.consecutive >= self.threshold or self.opened_at is not None:
            self.opened_at = time.monotonic()
