"""A turn end to end: context, the provider chain, validation, write-back (DESIGN.md
"Data flows: a question"); and queued turns, run by the worker through the same flow."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from langchain_core.messages import AIMessage
from prometheus_client import Counter, Histogram

from agent_service.domain.evidence.condense import condense_text
from agent_service.domain.evidence.derived import (
    derived_evidence,
    record_derived,
    with_evidence,
)
from agent_service.domain.llm.chain import LLMResult, LLMUnavailable
from agent_service.domain.llm.providers import StructuredOutput
from agent_service.domain.privacy.safety import (
    EchoFilter,
    StreamSanitizer,
    sanitize_markdown,
    strip_echo,
)
from agent_service.domain.turns.answer import (
    ANSWER_TOOL,
    AnswerExtractor,
    LLMTurnAnswer,
    MalformedAnswer,
    answer_json_schema,
    close_truncated,
    parse_answer,
    plain_answer,
)
from agent_service.domain.turns.context import (
    PreparedTurn,
    TurnInput,
    prepare_turn,
    store_attachments,
)
from agent_service.domain.turns.intents import Decision, decide, intent_text, refusal
from agent_service.domain.turns.prompt import build_prompt, question_text, retry_message
from agent_service.domain.turns.state import (
    apply_answer,
    cited,
    fallback_actions,
    investigation_view,
    retrieved,
    suggested_actions,
)
from agent_service.runtime import AgentRuntime
from fm_common.contracts.agent import (
    AGENT_QUEUE,
    RUN_TURN_TASK,
    TURN_JOB_KIND,
    Redactions,
    TurnAccepted,
    TurnJobStatus,
    TurnResponse,
)
from fm_common.contracts.case import TurnAppendRequest, TurnAppendResult, TurnMessage
from fm_common.errors import Conflict, FMError, NotFound, Unavailable
from fm_common.jobs import enqueue

log = structlog.get_logger("agent.turns")
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]

TURNS = Counter("fm_agent_turns_total", "Turns answered", ["mode", "outcome"])
TURN_LATENCY = Histogram(
    "fm_agent_turn_duration_seconds",
    "A whole turn: context, every model call (retries, failovers), the write-back",
    ["mode", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)


async def _timed(prep: PreparedTurn, call: Awaitable[LLMResult]) -> LLMResult:
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


NO_ANSWER = "I could not produce a readable answer this time; please ask again."


def _user_text(prep: PreparedTurn) -> str:
    if prep.inp.query:
        return prep.inp.query
    if prep.inp.intent is not None and not prep.attachments:
        return intent_text(prep.inp.intent)
    return question_text(prep.inp, prep.attachments)


def _user_meta(prep: PreparedTurn) -> dict[str, Any]:
    return {
        "attachments": [a.file_id for a in prep.attachments],
        "input_type": prep.inp.input_type,
        "source_url": prep.inp.source_url,
        "observed_at": prep.inp.observed_at,
        "intent_type": prep.inp.intent_type,
    }


def degraded_answer(prep: PreparedTurn, allow: tuple[str, ...]) -> str:
    """No provider: say so, and give the best passages and the evidence summary."""
    lines = [
        "**No LLM provider is configured on this FaultMaven server**, so I cannot analyse "
        "this or suggest a diagnosis. Here is what I found that may help:",
        "",
    ]
    if prep.passages:
        lines.append("**Best matching runbook passages**")
        for p in prep.passages:
            snippet = " ".join(p.content.split())[:400]
            lines.append(f"{p.sid[1:]}. **{p.title}** ({p.scope}, score {p.score:.2f}) [{p.sid}]")
            lines.append(f"   > {snippet}")
    elif not prep.retrieval_ok:
        lines.append("The knowledge base could not be searched just now.")
    else:
        lines.append("No runbook passage matched your question.")
    if prep.evidence:
        lines += ["", "**Evidence summary**"]
        for e in prep.evidence:
            shown = condense_text(e.content, prep.evidence_budget)[:1500]
            lines += [f"_{e.label}_", "```", shown, "```"]
    lines += [
        "",
        "An administrator can configure a provider (FM_AGENT_PROVIDERS) to get a diagnosis.",
    ]
    return sanitize_markdown("\n".join(lines), allow)


async def _call_model(
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
    result = await _timed(
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
        return result, _parse(result), "", bool(streamed)
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
        second = await _timed(
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
        return second, _parse(second), "", False
    except MalformedAnswer:
        log.warning("turn.degraded_to_plain", provider=second.provider)
        return second, None, plain_answer(second.text) or plain_answer(result.text), False


def _parse(result: LLMResult) -> LLMTurnAnswer:
    """The structured answer; one cut off at the output cap is closed where it stopped
    (its `answer` as far as it was written). MalformedAnswer otherwise."""
    try:
        return parse_answer(result.text)
    except MalformedAnswer:
        closed = close_truncated(result.text) if result.truncated else None
        if closed is None:
            raise
        answer = parse_answer(closed)
        log.info("turn.truncated_answer_closed", provider=result.provider)
        return answer


def _without_echo(answer: LLMTurnAnswer, boundary: str) -> LLMTurnAnswer:
    """The answer's texts without anything echoing the prompt frame."""

    def clean(value: str | None) -> str | None:
        return strip_echo(value, boundary) if value else value

    return answer.model_copy(
        update={
            "answer": strip_echo(answer.answer, boundary) or NO_ANSWER,
            "working_conclusion": clean(answer.working_conclusion),
            "root_cause": clean(answer.root_cause),
            "hypotheses": [
                h.model_copy(update={"statement": strip_echo(h.statement, boundary)})
                for h in answer.hypotheses
                if strip_echo(h.statement, boundary)
            ],
        }
    )


async def _store_failed(rt: AgentRuntime, prep: PreparedTurn, exc: FMError) -> None:
    """All providers failed: the user's message is still stored, with a note."""
    try:
        await rt.case.append_turn(
            prep.case_id,
            TurnAppendRequest(
                turn_key=f"{prep.turn_key}-failed-{uuid.uuid4().hex[:8]}",
                user_message=TurnMessage(content=_user_text(prep), metadata=_user_meta(prep)),
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
            result, structured, plain, streamed = await _call_model(rt, prep, emit)
        except LLMUnavailable as exc:
            TURNS.labels("stream" if emit else "sync", "llm_unavailable").inc()
            TURN_LATENCY.labels("stream" if emit else "sync", "llm_unavailable").observe(
                time.perf_counter() - prep.started
            )
            await _store_failed(rt, prep, exc)
            raise
        if structured is not None:
            structured = _without_echo(structured, prep.fence.boundary)
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
            user_message=TurnMessage(content=_user_text(prep), metadata=_user_meta(prep)),
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
            user_message=TurnMessage(content=_user_text(prep), metadata=_user_meta(prep)),
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
    try:
        await asyncio.to_thread(
            enqueue,
            rt.settings.effective_broker_url,
            RUN_TURN_TASK,
            queue=AGENT_QUEUE,
            kwargs=kwargs,
        )
    except Exception as exc:  # the broker is down: the job is failed, the caller gets 503
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


async def get_turn_job(rt: AgentRuntime, user_id: str, case_id: str, job_id: str) -> TurnJobStatus:
    record = await rt.jobs.get_owned(job_id, user_id)
    if record is None or record.resource_id != case_id or record.kind != TURN_JOB_KIND:
        raise NotFound("No such turn job.")
    result = TurnResponse.model_validate(record.result) if record.result else None
    error = record.error.model_dump(exclude_none=True) if record.error else None
    return TurnJobStatus(job_id=job_id, status=record.status, result=result, error=error)
