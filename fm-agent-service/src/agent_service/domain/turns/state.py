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
    inv: InvestigationState, answer: LLMTurnAnswer, restore: object
) -> tuple[InvestigationState, bool]:
    """The investigation after this answer, and whether the turn made progress."""
    r = restore  # placeholders -> originals in what is stored for the user
    state = inv.model_copy(deep=True)
    progress = False
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


def suggested_actions(
    answer: LLMTurnAnswer | None, case_state: CaseState, restore: object
) -> list[SuggestedActionResponse]:
    """The model's suggestions; a proposed state change becomes one the user confirms."""
    out: list[SuggestedActionResponse] = []
    if answer is None:
        return out
    for a in answer.suggested_actions:
        out.append(
            SuggestedActionResponse(
                label=restore(a.label),  # type: ignore[operator]
                type=a.type,
                payload=restore(a.payload) if a.payload else None,  # type: ignore[operator]
            )
        )
    proposed = answer.proposed_state
    if proposed and CaseState(proposed) in TRANSITIONS[case_state]:
        out.append(
            SuggestedActionResponse(
                label=f"Mark the case as {proposed}",
                type="transition",
                payload=proposed,
                body="Needs your confirmation: send a turn with intent_type 'confirm_transition'"
                f' and intent_data {{"to_state": "{proposed}"}}, or use the transition route.',
                intent={"type": "confirm_transition", "to_state": proposed},
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
