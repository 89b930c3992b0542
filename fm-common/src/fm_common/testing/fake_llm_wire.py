"""The wire format of the fake LLM provider: the OpenAI and Anthropic bodies of a complete
answer and their streamed events (what `fake_llm.FakeLLMServer` sends back)."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fm_common.testing.fake_llm import FakeRequest


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


def tool_input(text: str) -> dict[str, Any]:
    """A forced tool call's input: always an object (the API guarantees it)."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"answer": text}
    return value if isinstance(value, dict) else {"answer": text}


def complete_body(req: FakeRequest, text: str, finish: str = "stop") -> dict[str, Any]:
    pin, pout = tokens(req.text), tokens(text)
    if req.protocol == "anthropic":
        tool = req.forced_tool
        content: list[dict[str, Any]] = (
            [
                {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:20]}",
                    "name": tool,
                    "input": tool_input(text),
                }
            ]
            if tool
            else [{"type": "text", "text": text}]
        )
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": content,
            "stop_reason": "max_tokens"
            if finish == "length"
            else ("tool_use" if tool else "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": pin, "output_tokens": pout},
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": pin, "completion_tokens": pout, "total_tokens": pin + pout},
    }


def openai_events(
    req: FakeRequest, text: str, pieces: list[str], finish: str = "stop"
) -> list[tuple[str, Any]]:
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": req.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events: list[tuple[str, Any]] = [("", chunk({"role": "assistant", "content": ""}))]
    events += [("", chunk({"content": p})) for p in pieces]
    events.append(("", chunk({}, finish)))
    if (req.body.get("stream_options") or {}).get("include_usage"):
        pin, pout = tokens(req.text), tokens(text)
        usage = {"prompt_tokens": pin, "completion_tokens": pout, "total_tokens": pin + pout}
        events.append(
            (
                "",
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": req.model,
                    "choices": [],
                    "usage": usage,
                },
            )
        )
    events.append(("", "[DONE]"))
    return events


def anthropic_events(
    req: FakeRequest, text: str, pieces: list[str], finish: str = "stop"
) -> list[tuple[str, Any]]:
    pin, pout = tokens(req.text), tokens(text)
    tool = req.forced_tool
    message: dict[str, Any] = {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": pin, "output_tokens": 1},
    }
    if tool:
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:20]}",
            "name": tool,
            "input": {},
        }
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        stop = "tool_use"
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in pieces]
        stop = "end_turn"
    if finish == "length":
        stop = "max_tokens"
    events: list[tuple[str, Any]] = [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        ),
    ]
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d})
        for d in deltas
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": pout},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events
