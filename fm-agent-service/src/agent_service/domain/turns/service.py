"""Submitting a turn: caps, Idempotency-Key, and the three ways to answer (200, SSE, 202).

A turn is queued for the worker (202 + Location) when the client asks with
`Prefer: respond-async`, or when this process already answers `max_inflight_turns`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from agent_service.domain.turns.context import TurnInput, check_caps, prepare_turn
from agent_service.domain.turns.fairness import give_turn_slot, take_turn_slot
from agent_service.domain.turns.flows import answer_turn, queue_turn, run_turn
from agent_service.domain.turns.idempotency import check_key, turn_key
from agent_service.runtime import AgentRuntime
from fm_common.auth import Principal
from fm_common.errors import FMError, Unprocessable

log = structlog.get_logger("agent.turns")
Mode = Literal["sync", "stream", "async"]
# One event of a streamed turn: (token | citation | state | done | error, its data); the
# api layer frames them as Server-Sent Events.
Event = tuple[str, dict[str, Any]]


@dataclass
class Outcome:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    events: AsyncIterator[Event] | None = None


def validate_input(inp: TurnInput) -> None:
    """Something to answer (TurnInput already normalised the query and checked the
    intent): a query, pasted content, files, or an intent."""
    if not (inp.query or inp.pasted_content or inp.files or inp.intent):
        raise Unprocessable(
            "Send at least one of query, pasted_content or files.", code="EMPTY_TURN"
        )


async def _replay_stream(body: dict[str, Any]) -> AsyncIterator[Event]:
    yield "token", {"text": body.get("agent_response", "")}
    for c in body.get("citations", []):
        yield "citation", c
    yield "done", body


async def submit_turn(
    rt: AgentRuntime,
    principal: Principal,
    case_id: str,
    inp: TurnInput,
    *,
    idempotency_key: str | None,
    mode: Mode,
) -> Outcome:
    """Answer (or queue) one turn; a repeated Idempotency-Key gets the first answer."""
    validate_input(inp)
    check_caps(rt, inp)
    key = check_key(idempotency_key)
    user = principal.user_id
    fp = inp.fingerprint(case_id)
    if key is not None:
        tkey = turn_key(user, key)
        replay = await rt.idempotency.begin(user, key, fp, rt.settings.turn_deadline_seconds)
        if replay is not None:
            log.info("turn.replayed", case_id=case_id)
            if mode == "stream" and replay.status == 200:
                return Outcome(200, events=_replay_stream(replay.body))
            return Outcome(replay.status, replay.body, replay.headers)
    else:
        tkey = f"turn-{uuid.uuid4().hex}"

    async def release() -> None:
        if key is not None:
            await rt.idempotency.release(user, key)

    try:
        if mode == "async":
            accepted = await queue_turn(rt, user, case_id, inp, tkey)
            outcome = Outcome(202, accepted.model_dump(), {"Location": accepted.location})
        elif mode == "stream":
            deadline = time.monotonic() + rt.settings.turn_deadline_seconds
            await _take_slot(rt, user)
            try:
                prep = await prepare_turn(rt, case_id, inp, tkey, deadline)
            except BaseException:
                await give_turn_slot(rt.redis, user)
                raise
            return Outcome(200, events=_stream(rt, prep, user, key, fp))
        else:
            await _take_slot(rt, user)
            rt.inflight += 1
            try:
                response = await run_turn(rt, case_id, inp, tkey)
            finally:
                rt.inflight -= 1
                await give_turn_slot(rt.redis, user)
            outcome = Outcome(200, response.model_dump(mode="json"))
    except BaseException:
        await release()
        raise
    if key is not None:
        await rt.idempotency.finish(user, key, fp, outcome.status, outcome.body, outcome.headers)
    return outcome


async def _take_slot(rt: AgentRuntime, user: str) -> None:
    """One of the user's concurrent-turn slots (fairness between users), or 429."""
    ttl = int(rt.settings.turn_deadline_seconds) + 60
    await take_turn_slot(rt.redis, user, rt.settings.max_concurrent_turns_per_user, ttl)


def _stream(
    rt: AgentRuntime, prep: Any, user: str, key: str | None, fp: str
) -> AsyncIterator[Event]:
    """Run the answer in a task that outlives a dropped client (the turn is still stored)."""
    queue: asyncio.Queue[Event | None] = asyncio.Queue()

    async def emit(event: str, data: dict[str, Any]) -> None:
        await queue.put((event, data))

    async def work() -> None:
        rt.inflight += 1
        try:
            response = await answer_turn(rt, prep, emit)
            body = response.model_dump(mode="json")
            if key is not None:
                await rt.idempotency.finish(user, key, fp, 200, body)
            await emit("done", body)
        except FMError as exc:
            if key is not None:
                await rt.idempotency.release(user, key)
            error: dict[str, Any] = {"code": exc.code, "message": exc.detail}
            if "Retry-After" in exc.headers:
                error["retry_after"] = int(exc.headers["Retry-After"])
            await emit("error", error)
        except Exception:  # the stream has started: the client gets an error event, not a 500
            log.exception("turn.stream_failed", case_id=prep.case_id)
            if key is not None:
                await rt.idempotency.release(user, key)
            await emit("error", {"code": "INTERNAL_ERROR", "message": "The turn failed."})
        finally:
            rt.inflight -= 1
            await give_turn_slot(rt.redis, user)
            await queue.put(None)

    task = asyncio.create_task(work())
    rt.background.add(task)
    task.add_done_callback(rt.background.discard)

    async def events() -> AsyncIterator[Event]:
        while (item := await queue.get()) is not None:
            yield item

    return events()
