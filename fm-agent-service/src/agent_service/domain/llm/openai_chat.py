"""ChatOpenAI whose plain chat messages skip the OpenAI SDK's request transform.

The SDK walks every message of a request against the TypedDict union of message kinds
(renaming aliased keys, formatting dates, encoding files) before it serialises it: about
2.3 ms per call for a turn's 14 messages, on the event loop, for text that needs none of
it. Messages that are only role/content strings (and name) reach the request through
`extra_body` instead, whose keys the SDK merges over the body as they are (its documented
precedence); the JSON sent is the same. Anything else (tool calls, content parts,
structured output) takes the ordinary path. ADR 0066.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_openai import ChatOpenAI

_PLAIN_KEYS = frozenset({"role", "content", "name"})


def _plain(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.keys() <= _PLAIN_KEYS
        and all(isinstance(v, str) for v in message.values())
    )


class LeanChatOpenAI(ChatOpenAI):
    # OpenAI-compatible servers (llama.cpp, vLLM, Ollama, LM Studio) read only the classic
    # `max_tokens`; OpenAI's own API takes `max_completion_tokens`, which LangChain sends.
    classic_max_tokens: bool = False

    def _get_request_payload(
        self, input_: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
        if self.classic_max_tokens and "max_completion_tokens" in payload:
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        messages = payload.get("messages")
        if (
            messages
            and "response_format" not in payload
            and "messages" not in (payload.get("extra_body") or {})
            and all(_plain(m) for m in messages)
        ):
            payload["extra_body"] = {**(payload.get("extra_body") or {}), "messages": messages}
            payload["messages"] = []
        return payload
