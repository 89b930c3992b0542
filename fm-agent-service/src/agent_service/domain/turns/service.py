"""The rules of a turn that reach no other service: what counts as something to answer,
what is stored as the user's message, the answer without a provider, the model's answer
parsed and cleaned, and a queued turn's job.

The cross-service work (context, the provider chain, the write-back, the queue) is in
`flows.py`, which calls these (docs/architecture.md "Inside a service").
"""

from __future__ import annotations

from typing import Any

import structlog

from agent_service.domain.evidence.condense import condense_text
from agent_service.domain.llm.chain import LLMResult
from agent_service.domain.privacy.safety import sanitize_markdown, strip_echo
from agent_service.domain.turns.answer import (
    LLMTurnAnswer,
    MalformedAnswer,
    close_truncated,
    parse_answer,
)
from agent_service.domain.turns.context import PreparedTurn, TurnInput
from agent_service.domain.turns.intents import intent_text
from agent_service.domain.turns.prompt import question_text
from agent_service.runtime import AgentRuntime
from fm_common.contracts.agent import TURN_JOB_KIND, TurnJobStatus, TurnResponse
from fm_common.errors import NotFound, Unprocessable

log = structlog.get_logger("agent.turns")

NO_ANSWER = "I could not produce a readable answer this time; please ask again."


def validate_input(inp: TurnInput) -> None:
    """Something to answer (TurnInput already normalised the query and checked the
    intent): a query, pasted content, files, or an intent."""
    if not (inp.query or inp.pasted_content or inp.files or inp.intent):
        raise Unprocessable(
            "Send at least one of query, pasted_content or files.", code="EMPTY_TURN"
        )


def user_text(prep: PreparedTurn) -> str:
    if prep.inp.query:
        return prep.inp.query
    if prep.inp.intent is not None and not prep.attachments:
        return intent_text(prep.inp.intent)
    return question_text(prep.inp, prep.attachments)


def user_meta(prep: PreparedTurn) -> dict[str, Any]:
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


def parse_result(result: LLMResult) -> LLMTurnAnswer:
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


def without_echo(answer: LLMTurnAnswer, boundary: str) -> LLMTurnAnswer:
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


async def get_turn_job(rt: AgentRuntime, user_id: str, case_id: str, job_id: str) -> TurnJobStatus:
    record = await rt.jobs.get_owned(job_id, user_id)
    if record is None or record.resource_id != case_id or record.kind != TURN_JOB_KIND:
        raise NotFound("No such turn job.")
    result = TurnResponse.model_validate(record.result) if record.result else None
    error = record.error.model_dump(exclude_none=True) if record.error else None
    return TurnJobStatus(job_id=job_id, status=record.status, result=result, error=error)
