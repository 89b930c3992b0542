"""A turn end to end: context, the provider chain, validation, write-back (DESIGN.md
"Data flows: a question"); queued turns, run by the worker through the same flow; and
the submission that picks how to answer (200, SSE, 202) under the Idempotency-Key.

A turn is queued for the worker (202 + Location) when the client asks with
`Prefer: respond-async`, or when this process already answers `max_inflight_turns`.
The rules these call, which reach no other service, are in `service.py`
(docs/architecture.md "Inside a service").
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from prometheus_client import Counter, Histogram

from agent_service.domain.evidence.derived import (
    derived_evidence,
    record_derived,
    with_evidence,
)
from agent_service.domain.llm.chain import LLMResult, LLMUnavailable
from agent_service.domain.privacy.safety import sanitize_markdown, strip_echo
from agent_service.domain.turns.answer import LLMTurnAnswer
from agent_service.domain.turns.context import (
    PreparedTurn,
    TurnInput,
    check_caps,
    prepare_turn,
    store_attachments,
)
from agent_service.domain.turns.fairness import (
    give_turn_slot,
    queued_turn_rank,
    take_turn_slot,
    turn_left_queue,
)
from agent_service.domain.turns.idempotency import check_key, turn_key
from agent_service.domain.turns.intents import Decision, decide, refusal
from agent_service.domain.turns.model_call import call_model
from agent_service.domain.turns.prompt import build_prompt
from agent_service.domain.turns.service import (
    NO_ANSWER,
    degraded_answer,
    user_meta,
    user_text,
    validate_input,
    without_echo,
)
from agent_service.domain.turns.state import (
    apply_answer,
    cited,
    fallback_actions,
    investigation_view,
    retrieved,
    suggested_actions,
)
from agent_service.runtime import AgentRuntime
from fm_common.auth import Principal
from fm_common.contracts.agent import (
    AGENT_QUEUE,
    RUN_TURN_TASK,
    TURN_JOB_KIND,
    Redactions,
    TurnAccepted,
    TurnResponse,
)
from fm_common.contracts.case import TurnAppendRequest, TurnAppendResult, TurnMessage
from fm_common.errors import Conflict, FMError, Unavailable
from fm_common.jobs import enqueue, fair_priority

log = structlog.get_logger("agent.turns")
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
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


TURNS = Counter("fm_agent_turns_total", "Turns answered", ["mode", "outcome"])
TURN_LATENCY = Histogram(
    "fm_agent_turn_duration_seconds",
    "A whole turn: context, every model call (retries, failovers), the write-back",
    ["mode", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)


async def _store_failed(rt: AgentRuntime, prep: PreparedTurn, exc: FMError) -> None:
    """All providers failed: the user's message is still stored, with a note."""
    try:
        await rt.case.append_turn(
            prep.case_id,
            TurnAppendRequest(
                turn_key=f"{prep.turn_key}-failed-{uuid.uuid4().hex[:8]}",
                user_message=TurnMessage(content=user_text(prep), metadata=user_meta(prep)),
                assistant_message=TurnMessage(
                    content="No language model provider answered this message; please retry.",
                    metadata={"failed": True, "error": exc.code, **exc.extra},
                ),
            ),
        )
    except FMError as store_exc:
        log.error("turn.store_failed", case_id=prep.case_id, error=store_exc.code)


async def answer_turn(
    rt: AgentRuntime, prep: PreparedTurn, emit: Emit | None = None
) -> TurnResponse:
    """Answer a prepared turn and store it (user message, answer, investigation)."""
    if prep.inp.intent is not None:
        return await answer_intent(rt, prep, emit)
    allow = rt.settings.link_allowlist
    inv = prep.ctx.investigation
    case_state = prep.ctx.case.state
    structured: LLMTurnAnswer | None = None
    result: LLMResult | None = None
    streamed = False
    if not rt.chain.configured:
        display = degraded_answer(prep, allow)
        citations = cited(None, display, prep.passages)
        new_inv, progress = inv, False
    else:
        await build_prompt(prep)  # redaction fails closed: nothing leaves on failure
        try:
            result, structured, plain, streamed = await call_model(rt, prep, emit)
        except LLMUnavailable as exc:
            TURNS.labels("stream" if emit else "sync", "llm_unavailable").inc()
            TURN_LATENCY.labels("stream" if emit else "sync", "llm_unavailable").observe(
                time.perf_counter() - prep.started
            )
            await _store_failed(rt, prep, exc)
            raise
        if structured is not None:
            structured = without_echo(structured, prep.fence.boundary)
        text = structured.answer if structured else strip_echo(plain, prep.fence.boundary)
        text = text or NO_ANSWER
        display = sanitize_markdown(prep.redactor.restore(text), allow)
        # Every answer carries the passages it was given: those it cites, else all of them.
        citations = cited(structured, text, prep.passages) or retrieved(prep.passages)
        if structured is not None:
            new_inv, progress = apply_answer(
                inv,
                structured,
                prep.redactor.restore,
                case_state=case_state,
                turn=prep.ctx.case.current_turn + 1,
            )
        else:
            new_inv, progress = inv, False
    if result is None:
        actions = fallback_actions(case_state, bool(prep.attachments))
    else:
        pending = new_inv.pending_proposal if structured is not None else None
        actions = suggested_actions(structured, pending, prep.redactor.restore)
    assistant_meta: dict[str, Any] = {
        "provider": result.provider if result else None,
        "model": result.model if result else None,
        # Every model call of the turn (a retry included), not only the last.
        "latency_ms": prep.timings.get("llm_ms") if result else None,
        "llm_calls": int(prep.timings.get("llm_calls", 0)),
        "input_tokens": prep.input_tokens,
        "output_tokens": prep.output_tokens,
        "degraded": result is None,
        "structured": structured is not None,
        "output_mode": result.output_mode if result else None,
        "truncated": result.truncated if result else False,
        "citations": [c.model_dump() for c in citations],
        "suggested_actions": [a.model_dump(exclude_none=True) for a in actions],
        "redactions": {"count": prep.redaction_count, "kinds": prep.redaction_kinds},
    }
    # What this turn took from its attachments: in the investigation (the /ui counts and
    # latest evidence) and, once the turn is stored, with each file (evidence service).
    turn_guess = prep.ctx.case.current_turn + 1
    derived = (
        await asyncio.to_thread(
            derived_evidence, prep, structured, new_inv, turn_guess, prep.redactor.restore
        )
        if prep.attachments
        else []
    )
    if derived:
        new_inv = with_evidence(new_inv, prep, derived)
    store_started = time.perf_counter()
    stored = await rt.case.append_turn(
        prep.case_id,
        TurnAppendRequest(
            turn_key=prep.turn_key,
            user_message=TurnMessage(content=user_text(prep), metadata=user_meta(prep)),
            assistant_message=TurnMessage(
                content=display,
                metadata=assistant_meta,
                token_count=result.output_tokens if result else None,
            ),
            investigation=new_inv if structured is not None or derived else None,
            progress_made=progress,
        ),
    )
    if derived:
        if stored.turn_number != turn_guess:  # another turn was stored in between
            derived = [
                (f, d.model_copy(update={"collected_at_turn": stored.turn_number}))
                for f, d in derived
            ]
        await record_derived(rt, prep.case_id, derived)
    prep.timings["store_ms"] = round((time.perf_counter() - store_started) * 1000, 2)
    prep.timings["turn_ms"] = round((time.perf_counter() - prep.started) * 1000, 2)
    view = investigation_view(
        stored.case_state,
        new_inv,
        provider=result.provider if result else None,
        degraded=result is None,
    )
    response = TurnResponse(
        agent_response=display,
        turn_number=stored.turn_number,
        milestones_completed=stored.milestones_completed,
        case_state=stored.case_state,
        progress_made=progress,
        attachments_processed=prep.attachments,
        suggested_actions=actions,
        citations=citations,
        investigation=view,
        redactions=Redactions(count=prep.redaction_count, kinds=prep.redaction_kinds),
    )
    outcome = "degraded" if result is None else ("ok" if structured else "plain")
    TURNS.labels("stream" if emit else "sync", outcome).inc()
    TURN_LATENCY.labels("stream" if emit else "sync", outcome).observe(
        prep.timings["turn_ms"] / 1000
    )
    log.info(
        "turn.answered",
        case_id=prep.case_id,
        turn=stored.turn_number,
        provider=assistant_meta["provider"],
        structured=structured is not None,
        citations=len(citations),
        redactions=prep.redaction_count,
        **prep.timings,
    )
    if emit:
        await _emit_final(emit, response, streamed=streamed)
    return response


async def _emit_final(emit: Emit, response: TurnResponse, *, streamed: bool) -> None:
    if not streamed:
        await emit("token", {"text": response.agent_response})
    for c in response.citations:
        await emit("citation", c.model_dump())
    await emit(
        "state",
        {
            "case_state": response.case_state.value,
            "milestones_completed": response.milestones_completed,
            "progress_made": response.progress_made,
            "suggested_actions": [a.model_dump() for a in response.suggested_actions],
            "investigation": response.investigation.model_dump(mode="json")
            if response.investigation
            else None,
        },
    )


async def _append_decision(
    rt: AgentRuntime, prep: PreparedTurn, decision: Decision
) -> TurnAppendResult:
    meta: dict[str, Any] = {
        "provider": None,
        "degraded": False,
        "structured": False,
        **decision.meta(),
        "suggested_actions": [a.model_dump(exclude_none=True) for a in decision.actions],
    }
    return await rt.case.append_turn(
        prep.case_id,
        TurnAppendRequest(
            turn_key=prep.turn_key,
            user_message=TurnMessage(content=user_text(prep), metadata=user_meta(prep)),
            assistant_message=TurnMessage(content=decision.answer, metadata=meta),
            investigation=decision.investigation,
            progress_made=decision.progress,
            to_state=decision.to_state,
            closure_reason=decision.closure_reason,
        ),
    )


async def answer_intent(
    rt: AgentRuntime, prep: PreparedTurn, emit: Emit | None = None
) -> TurnResponse:
    """An intent turn (status change, Yes / No, hypothesis action): decided here, from
    the case's state, without asking the LLM; stored like any turn."""
    decision = decide(prep)
    try:
        stored = await _append_decision(rt, prep, decision)
    except Conflict as exc:
        if exc.code != "INVALID_TRANSITION" or decision.to_state is None:
            raise
        # The case moved since it was read: explain from its state now, change nothing.
        now = await rt.case.get_case(prep.case_id)
        decision = Decision(
            refusal(now.case.state, decision.to_state),
            decision.investigation,
            outcome="refused",
        )
        stored = await _append_decision(rt, prep, decision)
    inv = decision.investigation or prep.ctx.investigation
    response = TurnResponse(
        agent_response=decision.answer,
        turn_number=stored.turn_number,
        milestones_completed=stored.milestones_completed,
        case_state=stored.case_state,
        progress_made=decision.progress,
        attachments_processed=prep.attachments,
        suggested_actions=decision.actions,
        investigation=investigation_view(stored.case_state, inv, provider=None, degraded=False),
    )
    TURNS.labels("stream" if emit else "sync", "intent").inc()
    log.info(
        "turn.intent_decided",
        case_id=prep.case_id,
        turn=stored.turn_number,
        intent=prep.inp.intent_type,
        outcome=decision.outcome,
        case_state=stored.case_state.value,
    )
    if emit:
        await _emit_final(emit, response, streamed=False)
    return response


async def run_turn(
    rt: AgentRuntime, case_id: str, inp: TurnInput, turn_key: str, emit: Emit | None = None
) -> TurnResponse:
    deadline = time.monotonic() + rt.settings.turn_deadline_seconds
    prep = await prepare_turn(rt, case_id, inp, turn_key, deadline)
    return await answer_turn(rt, prep, emit)


async def queue_turn(
    rt: AgentRuntime, user_id: str, case_id: str, inp: TurnInput, turn_key: str
) -> TurnAccepted:
    """Store the attachments, then hand the turn to the worker (202)."""
    ctx = await rt.case.get_case(case_id)
    attached = await store_attachments(rt, case_id, inp, ctx.case.current_turn + 1, read_text=False)
    queued = inp.model_copy(update={"stored": [a for a, _ in attached], "pasted_content": None})
    job = await rt.jobs.create(
        TURN_JOB_KIND, user_id, resource_id=case_id, payload={"case_id": case_id}
    )
    kwargs = {
        "job_id": job.job_id,
        "case_id": case_id,
        "owner_id": user_id,
        "turn_key": turn_key,
        "turn": queued.model_dump(mode="json"),
    }
    rank: int | None = None
    try:
        rank = await queued_turn_rank(rt.redis, user_id)
        await asyncio.to_thread(
            enqueue,
            rt.settings.effective_broker_url,
            RUN_TURN_TASK,
            queue=AGENT_QUEUE,
            kwargs=kwargs,
            priority=fair_priority(rank),
        )
    except Exception as exc:  # the broker is down: the job is failed, the caller gets 503
        if rank is not None:
            await turn_left_queue(rt.redis, user_id)
        await rt.jobs.update(
            job.job_id, status="failed", error={"message": "The job queue is unavailable."}
        )
        log.warning("turn.enqueue_failed", case_id=case_id, error=type(exc).__name__)
        raise Unavailable(
            "The job queue is unavailable; retry later.",
            retry_after=rt.settings.retry_after_seconds,
        ) from exc
    location = f"/api/v1/cases/{case_id}/turns/jobs/{job.job_id}"
    log.info("turn.queued", case_id=case_id, job_id=job.job_id)
    return TurnAccepted(job_id=job.job_id, location=location)


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
