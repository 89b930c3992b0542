"""From a validated answer to the investigation update, suggested actions and citations."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agent_service.domain.turns.answer import LLMTurnAnswer
from fm_common.contracts.agent import (
    Citation,
    HypothesisView,
    InvestigationView,
    SuggestedActionResponse,
)
from fm_common.contracts.case import (
    MILESTONES,
    TRANSITIONS,
    CaseState,
    Hypothesis,
    InvestigationState,
    PendingProposal,
    RootCause,
    WorkingConclusion,
)

if TYPE_CHECKING:
    from agent_service.domain.turns.prompt import Passage

MAX_HYPOTHESES = 20
_CITE = re.compile(r"\[(S\d{1,3})\]")


def case_summary(title: str, state: CaseState, inv: InvestigationState) -> str:
    """The case's structured state as prompt text."""
    lines = [f"Title: {title}", f"State: {state.value}", f"Stage: {inv.current_stage}"]
    done = inv.milestones_completed
    lines.append("Milestones done: " + (", ".join(done) or "none"))
    lines.append("Milestones pending: " + ", ".join(m for m in MILESTONES if m not in done))
    if inv.problem_statement:
        lines.append(f"Problem: {inv.problem_statement}")
    for h in inv.hypotheses[:MAX_HYPOTHESES]:
        lines.append(f"Hypothesis ({h.state}, likelihood {h.likelihood:.2f}): {h.text}")
    if inv.working_conclusion:
        lines.append(f"Working conclusion: {inv.working_conclusion.summary}")
    if inv.root_cause:
        lines.append(f"Root cause: {inv.root_cause.description}")
    allowed = ", ".join(s.value for s in TRANSITIONS[state]) or "none (final)"
    lines.append(f"States the user may move to next: {allowed}")
    return "\n".join(lines)


def cited(answer: LLMTurnAnswer | None, text: str, passages: list[Passage]) -> list[Citation]:
    """The passages the answer cites (declared or as [S1] in the text), in order."""
    ids = list(answer.cited_sources) if answer else []
    ids += _CITE.findall(text)
    by_id = {p.sid: p for p in passages}
    out: list[Citation] = []
    seen: set[str] = set()
    for sid in ids:
        p = by_id.get(sid)
        if p is None or sid in seen:
            continue
        seen.add(sid)
        out.append(
            Citation(
                document_id=p.document_id,
                title=p.title,
                chunk_id=p.chunk_id,
                snippet=p.content[:300],
                score=p.score,
                scope=p.scope,
            )
        )
    return out


def retrieved(passages: list[Passage]) -> list[Citation]:
    """Every passage the answer was given (an answer that names none still rests on them)."""
    return cited(None, " ".join(f"[{p.sid}]" for p in passages), passages)


def apply_answer(
    inv: InvestigationState,
    answer: LLMTurnAnswer,
    restore: object,
    *,
    case_state: CaseState = CaseState.INQUIRY,
    turn: int = 0,
) -> tuple[InvestigationState, bool]:
    """The investigation after this answer, and whether the turn made progress.

    A state the model proposes (and the state machine allows) becomes the pending
    proposal the user's Yes or No answers; an answer without one clears it.
    """
    r = restore  # placeholders -> originals in what is stored for the user
    state = inv.model_copy(deep=True)
    progress = False
    proposed = CaseState(answer.proposed_state) if answer.proposed_state else None
    if proposed is not None and proposed in TRANSITIONS[case_state]:
        state.pending_proposal = PendingProposal(
            proposal_id=str(uuid.uuid4()),
            to_state=proposed,
            proposed_at_turn=turn,
            label=f"Mark the case as {proposed.value}",
        )
    else:
        state.pending_proposal = None
    for m in answer.milestone_updates:
        if not state.milestones.get(m):
            state.milestones[m] = True
            progress = True
    known = {h.text.strip().lower(): h for h in state.hypotheses}
    for h in answer.hypotheses:
        text = r(h.statement)[:500]  # type: ignore[operator]
        existing = known.get(text.strip().lower())
        if existing is not None:
            if abs(existing.likelihood - h.likelihood) > 1e-6:
                existing.likelihood = h.likelihood
                progress = True
            existing.evidence_count = max(existing.evidence_count, len(h.evidence))
        elif len(state.hypotheses) < MAX_HYPOTHESES:
            state.hypotheses.append(
                Hypothesis(
                    hypothesis_id=str(uuid.uuid4()),
                    text=text,
                    likelihood=h.likelihood,
                    state="active",
                    evidence_count=len(h.evidence),
                )
            )
            progress = True
    now = datetime.now(UTC)
    if answer.working_conclusion:
        summary = r(answer.working_conclusion)[:1000]  # type: ignore[operator]
        best = max((h.likelihood for h in answer.hypotheses), default=0.5)
        state.working_conclusion = WorkingConclusion(
            summary=summary, confidence=best, last_updated=now
        )
    if answer.root_cause:
        state.root_cause = RootCause(
            root_cause_id=state.root_cause.root_cause_id if state.root_cause else str(uuid.uuid4()),
            description=r(answer.root_cause)[:1000],  # type: ignore[operator]
        )
    state.next_actions = [r(a.label)[:200] for a in answer.suggested_actions]  # type: ignore[operator]
    state.agent_status = "Waiting for your next message."
    if state.milestones.get("solution_proposed") or state.milestones.get("solution_applied"):
        state.current_stage = "treatment"
    elif state.root_cause is not None:
        state.current_stage = "mitigation"
    return state, progress


def proposal_actions(pending: PendingProposal | None) -> list[SuggestedActionResponse]:
    """Yes / No under a proposal: DECIDE cards whose click answers it (a confirmation)."""
    if pending is None:
        return []
    to = pending.to_state.value
    intent = {"type": "confirmation", "proposal_id": pending.proposal_id}
    return [
        SuggestedActionResponse(
            label=f"Yes, mark the case as {to}",
            type="DECIDE",
            payload="Yes",
            body=f"The case will be marked as {to}.",
            intent={**intent, "confirmation_value": True},
        ),
        SuggestedActionResponse(
            label="No, keep its state",
            type="DECIDE",
            payload="No",
            body="Nothing changes.",
            intent={**intent, "confirmation_value": False},
        ),
    ]


def _card(label: str, kind: str, payload: str | None) -> SuggestedActionResponse:
    """A model's suggestion as a card: DECIDE sends the exact message (its payload, else
    the label), RUN copies a command (none given: it is only text)."""
    if kind == "DECIDE":
        return SuggestedActionResponse(label=label, type="DECIDE", payload=payload or label)
    if kind == "RUN" and payload:
        return SuggestedActionResponse(label=label, type="RUN", payload=payload)
    if kind == "EVIDENCE":
        return SuggestedActionResponse(label=label, type="EVIDENCE", body=payload)
    return SuggestedActionResponse(label=label, type="FREE_SPEECH", body=payload)


def suggested_actions(
    answer: LLMTurnAnswer | None, pending: PendingProposal | None, restore: object
) -> list[SuggestedActionResponse]:
    """The model's suggestions in the extension's vocabulary, then Yes / No for the
    state change it proposed (applied only when the user confirms it)."""
    out: list[SuggestedActionResponse] = []
    if answer is None:
        return out
    for a in answer.suggested_actions:
        out.append(
            _card(
                restore(a.label),  # type: ignore[operator]
                a.type,
                restore(a.payload) if a.payload else None,  # type: ignore[operator]
            )
        )
    return out + proposal_actions(pending)


def fallback_actions(case_state: CaseState, has_evidence: bool) -> list[SuggestedActionResponse]:
    """The cards of an answer given without a provider (nothing the model would say)."""
    out: list[SuggestedActionResponse] = []
    if not has_evidence and case_state not in (CaseState.RESOLVED, CaseState.CLOSED):
        out.append(
            SuggestedActionResponse(
                label="Attach the logs or the error output of the problem",
                type="EVIDENCE",
                body="The evidence summary and the matching runbook passages are shown "
                "even without a language model.",
            )
        )
    for to in TRANSITIONS[case_state]:
        out.append(
            SuggestedActionResponse(
                label=f"Mark the case as {to.value}",
                type="DECIDE",
                payload=f"Mark the case as {to.value}",
                # Not yet confirmed: the answer asks Yes / No first.
                intent={
                    "type": "status_transition",
                    "from_state": case_state.value,
                    "to_state": to.value,
                    "user_confirmed": False,
                },
            )
        )
    out.append(
        SuggestedActionResponse(
            label="Ask an administrator to configure a language model provider",
            type="FREE_SPEECH",
            body="With a provider configured, FaultMaven analyses the evidence and suggests "
            "a diagnosis.",
        )
    )
    return out


def investigation_view(
    case_state: CaseState,
    inv: InvestigationState,
    *,
    provider: str | None,
    degraded: bool,
) -> InvestigationView:
    done = inv.milestones_completed
    return InvestigationView(
        phase=case_state,
        current_stage=inv.current_stage,
        milestones_completed=done,
        pending_milestones=[m for m in MILESTONES if m not in done],
        hypotheses=[
            HypothesisView(
                hypothesis_id=h.hypothesis_id, text=h.text, likelihood=h.likelihood, state=h.state
            )
            for h in inv.hypotheses
        ],
        working_conclusion=inv.working_conclusion.summary if inv.working_conclusion else None,
        provider=provider,
        degraded=degraded,
    )
