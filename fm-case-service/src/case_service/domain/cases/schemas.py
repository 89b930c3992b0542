"""The mapping of case rows to wire models (the side panel's view is in views.py)."""

from __future__ import annotations

from case_service.domain.cases.models import Case, CaseMessage
from fm_common.contracts.case import (
    MILESTONES,
    TERMINAL_STATES,
    TRANSITIONS,
    CaseDetail,
    CaseState,
    CaseSummary,
    InvestigationState,
    Message,
)


def investigation_of(case: Case) -> InvestigationState:
    return InvestigationState.model_validate(case.investigation or {})


def valid_next_states(state: str) -> list[str]:
    return [s.value for s in TRANSITIONS[CaseState(state)]]


def to_summary(case: Case) -> CaseSummary:
    inv = investigation_of(case)
    return CaseSummary(
        case_id=case.id,
        title=case.title,
        description=case.description,
        state=CaseState(case.state),
        priority=case.priority,  # type: ignore[arg-type]
        source=case.source,
        created_at=case.created_at,
        updated_at=case.updated_at,
        last_activity_at=case.last_activity_at,
        resolved_at=case.resolved_at,
        closed_at=case.closed_at,
        user_id=case.owner_id,
        organization_id=case.organization_id,
        closure_reason=case.closure_reason,
        current_turn=case.current_turn,
        milestones_completed=len(inv.milestones_completed),
        is_terminal=CaseState(case.state) in TERMINAL_STATES,
        is_archived=case.archived_at is not None,
        valid_next_states=valid_next_states(case.state),
        version=case.version,
        metadata=case.meta or {},
    )


def to_detail(case: Case) -> CaseDetail:
    inv = investigation_of(case)
    done = inv.milestones_completed
    return CaseDetail(
        case_id=case.id,
        title=case.title,
        description=case.description,
        state=CaseState(case.state),
        priority=case.priority,  # type: ignore[arg-type]
        source=case.source,
        created_at=case.created_at,
        updated_at=case.updated_at,
        last_activity_at=case.last_activity_at,
        resolved_at=case.resolved_at,
        closed_at=case.closed_at,
        archived_at=case.archived_at,
        user_id=case.owner_id,
        organization_id=case.organization_id,
        closure_reason=case.closure_reason,
        current_turn=case.current_turn,
        turns_without_progress=case.turns_without_progress,
        current_stage=inv.current_stage if case.state == CaseState.INVESTIGATING else None,
        milestones_completed=done,
        pending_milestones=[m for m in MILESTONES if m not in done],
        evidence_count=len(inv.evidence),
        hypothesis_count=len(inv.hypotheses),
        solution_count=1 if inv.solution is not None else 0,
        is_terminal=CaseState(case.state) in TERMINAL_STATES,
        is_archived=case.archived_at is not None,
        escalated=inv.escalated,
        valid_next_states=valid_next_states(case.state),
        version=case.version,
        metadata=case.meta or {},
    )


def to_message(message: CaseMessage) -> Message:
    return Message(
        message_id=message.id,
        turn_number=message.turn_number,
        role=message.role,  # type: ignore[arg-type]
        content=message.content,
        created_at=message.created_at.isoformat(),
        author_id=message.author_id,
        token_count=message.token_count,
        metadata=message.meta,
    )
