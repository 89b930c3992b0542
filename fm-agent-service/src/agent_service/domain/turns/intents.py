"""Turns the agent decides without asking the LLM: a status change the user confirmed in
a dialog, Yes / No under a proposal, and a hypothesis action (API.md "Every feature of
the extension"; ADR 0080).

Each is answered with a short sentence, stored as a turn like any other, and goes through
the case service's state machine: a refused transition is explained in the answer and
the state is left as it was. A proposal waits in the investigation state
(`pending_proposal`) until a confirmation answers it, once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent_service.domain.turns.context import PreparedTurn
from agent_service.domain.turns.state import proposal_actions
from fm_common.contracts.agent import (
    ConfirmationIntent,
    HypothesisActionIntent,
    StatusTransitionIntent,
    SuggestedActionResponse,
    TurnIntent,
)
from fm_common.contracts.case import (
    TRANSITIONS,
    CaseState,
    HypothesisState,
    InvestigationState,
    PendingProposal,
)

log = structlog.get_logger("agent.turns")

_HYPOTHESIS_STATES: dict[str, HypothesisState] = {
    "validate": "validated",
    "refute": "refuted",
    "retire": "retired",
}


@dataclass
class Decision:
    """What an intent turn does: the answer, the state to move to, the investigation."""

    answer: str
    investigation: InvestigationState | None = None
    to_state: CaseState | None = None
    closure_reason: str | None = None
    progress: bool = False
    actions: list[SuggestedActionResponse] = field(default_factory=list)
    outcome: str = "unchanged"
    # Shown instead of `answer` when the case service refuses the transition (a race).
    refused: str = ""

    def meta(self) -> dict[str, Any]:
        return {"decided_without_llm": True, "outcome": self.outcome}


def intent_text(intent: TurnIntent) -> str:
    """The user's message of an intent turn sent without a query."""
    if isinstance(intent, StatusTransitionIntent):
        return f"Change the case state to {intent.to_state.value}."
    if isinstance(intent, ConfirmationIntent):
        return "Yes" if intent.confirmation_value else "No"
    return f"{intent.action.capitalize()} hypothesis {intent.hypothesis_id}."


def refusal(current: CaseState, to_state: CaseState) -> str:
    allowed = TRANSITIONS[current]
    if not allowed:
        why = f"**{current.value}** is a final state: a {current.value} case does not change state."
    else:
        why = "From **{}** it can go to {}.".format(
            current.value, " or ".join(f"**{s.value}**" for s in allowed)
        )
    return (
        f"The case cannot go from **{current.value}** to **{to_state.value}**, so its state "
        f"is unchanged. {why}"
    )


_AFTER = {
    CaseState.INVESTIGATING: "Tell me what you see, or attach logs, and we look for the cause.",
    CaseState.RESOLVED: "You can now generate a post-mortem report of the case.",
    CaseState.CLOSED: "It stays readable in your case list.",
    CaseState.INQUIRY: "",
}


def _transition(
    current: CaseState,
    to_state: CaseState,
    inv: InvestigationState,
    closure_reason: str | None,
) -> Decision:
    if to_state == current:
        return Decision(f"The case is already **{current.value}**; nothing changed.", inv)
    if to_state not in TRANSITIONS[current]:
        return Decision(refusal(current, to_state), inv, outcome="refused")
    text = f"The case is now **{to_state.value}** (it was {current.value}). {_AFTER[to_state]}"
    return Decision(
        text.strip(),
        inv,
        to_state=to_state,
        closure_reason=closure_reason,
        progress=True,
        outcome="transitioned",
        refused=refusal(current, to_state),
    )


def decide(prep: PreparedTurn) -> Decision:
    """The answer to an intent turn, from the case as it is now (no LLM call)."""
    intent = prep.inp.intent
    assert intent is not None
    current = prep.ctx.case.state
    inv = prep.ctx.investigation.model_copy(deep=True)
    turn = prep.ctx.case.current_turn + 1
    if isinstance(intent, StatusTransitionIntent):
        if intent.user_confirmed:
            inv.pending_proposal = None
            return _transition(current, intent.to_state, inv, intent.closure_reason)
        if intent.to_state == current or intent.to_state not in TRANSITIONS[current]:
            return _transition(current, intent.to_state, inv, None)
        inv.pending_proposal = PendingProposal(
            proposal_id=str(uuid.uuid4()),
            to_state=intent.to_state,
            proposed_at_turn=turn,
            label=f"Mark the case as {intent.to_state.value}",
        )
        return Decision(
            f"Do you want to mark the case as **{intent.to_state.value}**?",
            inv,
            actions=proposal_actions(inv.pending_proposal),
            outcome="proposed",
        )
    if isinstance(intent, ConfirmationIntent):
        pending = inv.pending_proposal
        if pending is None or (intent.proposal_id and intent.proposal_id != pending.proposal_id):
            return Decision("There is no pending proposal to answer; nothing changed.", inv)
        inv.pending_proposal = None
        if not intent.confirmation_value:
            decision = Decision(
                f"Understood: the case stays **{current.value}**; I will not change it.",
                inv,
                outcome="declined",
            )
            return decision
        return _transition(current, pending.to_state, inv, None)
    if isinstance(intent, HypothesisActionIntent):
        found = next((h for h in inv.hypotheses if h.hypothesis_id == intent.hypothesis_id), None)
        if found is None:
            return Decision("This case has no hypothesis with that id; nothing changed.", inv)
        new_state = _HYPOTHESIS_STATES[intent.action]
        if found.state == new_state:
            return Decision(f"The hypothesis is already {new_state}; nothing changed.", inv)
        found.state = new_state
        if intent.action == "refute" and intent.reason:
            found.refutation_reason = intent.reason
        return Decision(
            f"Hypothesis marked **{new_state}**: {found.text}",
            inv,
            progress=True,
            outcome=f"hypothesis_{new_state}",
        )
    raise AssertionError(f"unknown intent {intent!r}")  # pragma: no cover
