"""How a turn is answered over HTTP: the response mode a request asks for, and the
Server-Sent Events framing of a streamed turn's events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from agent_service.domain.turns.flows import Event, Mode
from agent_service.runtime import AgentRuntime


def choose_mode(rt: AgentRuntime, accept: str | None, prefer: str | None) -> Mode:
    """`Prefer: respond-async` queues (202); `Accept: text/event-stream` streams; a process
    already answering `max_inflight_turns` queues too (load shedding); else 200."""
    if prefer and "respond-async" in prefer.lower():
        return "async"
    if accept and "text/event-stream" in accept.lower():
        return "stream"
    if rt.inflight >= rt.settings.max_inflight_turns:
        return "async"
    return "sync"


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def framed(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    async for event, data in events:
        yield sse(event, data)
