"""The side-panel view of a case (`GET /cases/{id}/ui`): one model per state, the
mapping from the case row, and the read that fills it (with the evidence service's count
of the case's files when it answers in time)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

import structlog
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from case_service.domain.cases.models import Case
from case_service.domain.cases.schemas import investigation_of, valid_next_states
from case_service.domain.cases.service import load_case
from case_service.domain.reports.repository import ReportRepository
from fm_common.clients.evidence import EvidenceClient
from fm_common.contracts.case import CaseState, Hypothesis, InvestigationState
from fm_common.errors import FMError

log = structlog.get_logger(__name__)

# The panel must render even when the evidence service is slow or down.
FILES_COUNT_TIMEOUT = 2.0


class InquiryResponseData(BaseModel):
    decided_to_investigate: bool = False
    inquiry_turns: int = 0
    problem_confirmation: dict[str, Any] | None = None
    problem_statement_confirmed: bool = False
    proposed_problem_statement: str | None = None


class InvestigationProgressSummary(BaseModel):
    active_hypotheses: int = 0
    completed_indicators: list[str] = Field(default_factory=list)
    completed_stage_gates: list[str] = Field(default_factory=list)
    current_stage: Literal["diagnosis", "mitigation", "treatment"]
    total_evidence: int = 0
    turns_without_progress: int = 0


class EvidenceSummary(BaseModel):
    evidence_id: str
    type: str
    summary: str
    timestamp: datetime
    relevance_score: float
    category: str = "OTHER"
    collected_at_turn: int = 0
    source_filename: str | None = None


class WorkingConclusionSummary(BaseModel):
    summary: str
    confidence: float
    last_updated: datetime


class ProblemVerificationData(BaseModel):
    severity: str | None = None
    urgency_level: str | None = None
    user_impact: str | None = None


class RootCauseSummary(BaseModel):
    root_cause_id: str
    description: str
    category: str
    severity: str
    cause_assurance: str
    cause_overclaim: bool = False


class SolutionSummary(BaseModel):
    description: str
    applied_at: datetime
    applied_by: str


class SolutionVerificationData(BaseModel):
    verified: bool
    verification_method: str
    details: str


class ResolutionSummary(BaseModel):
    total_duration_minutes: int
    milestones_completed: int
    hypotheses_tested: int
    evidence_collected: int
    key_insights: list[str] = Field(default_factory=list)


class ReportAvailability(BaseModel):
    report_type: str
    status: str
    reason: str | None = None


class _UIBase(BaseModel):
    case_id: str
    title: str
    current_turn: int
    created_at: datetime
    updated_at: datetime
    uploaded_files_count: int = 0
    valid_next_states: list[str] = Field(default_factory=list)
    disposition_eligibility: dict[str, str] | None = None


# Class names are the reference schema's component names (the OpenAPI shows them).
class CaseUIResponse_Inquiry(_UIBase):
    state: Literal["inquiry"] = "inquiry"
    inquiry: InquiryResponseData


class CaseUIResponse_Investigating(_UIBase):
    state: Literal["investigating"] = "investigating"
    agent_status: str
    progress: InvestigationProgressSummary
    active_hypotheses: list[Hypothesis] = Field(default_factory=list)
    latest_evidence: list[EvidenceSummary] = Field(default_factory=list)
    next_actions: list[str] = Field(default_factory=list)
    problem_statement: str | None = None
    problem_verification: ProblemVerificationData | None = None
    working_conclusion: WorkingConclusionSummary | None = None


class CaseUIResponse_Resolved(_UIBase):
    """Resolved and closed cases. API.md wins over the reference here: what was not
    recorded is null (never a placeholder sentence), a closed case has no `resolved_at`
    (its `closed_at` instead), and the closure reason has its own field."""

    state: Literal["resolved", "closed"]
    resolved_at: datetime | None
    closed_at: datetime | None = None
    closure_reason: str | None = None
    problem_statement: str | None = None
    root_cause: RootCauseSummary | None
    solution_applied: SolutionSummary | None
    verification_status: SolutionVerificationData | None
    resolution_summary: ResolutionSummary
    reports_available: list[ReportAvailability] = Field(default_factory=list)


CaseUIResponse = Annotated[
    CaseUIResponse_Inquiry | CaseUIResponse_Investigating | CaseUIResponse_Resolved,
    Field(discriminator="state"),
]


def _files_count(inv: InvestigationState) -> int:
    return len({e.source_filename for e in inv.evidence if e.source_filename})


def to_ui(
    case: Case, reports: list[ReportAvailability], *, uploaded_files: int | None = None
) -> BaseModel:
    """The view of the case for its state (reference: CaseUIResponse_* by `state`).

    `uploaded_files` is the evidence service's count; without it, the files the
    investigation has seen are counted.
    """
    inv = investigation_of(case)
    base: dict[str, Any] = {
        "case_id": case.id,
        "title": case.title,
        "current_turn": case.current_turn,
        "created_at": case.created_at,
        "updated_at": case.updated_at,
        "uploaded_files_count": (
            uploaded_files if uploaded_files is not None else _files_count(inv)
        ),
        "valid_next_states": valid_next_states(case.state),
    }
    state = CaseState(case.state)
    if state == CaseState.INQUIRY:
        return CaseUIResponse_Inquiry(
            **base,
            disposition_eligibility={"resolved": "not_eligible", "closed": "ready"},
            inquiry=InquiryResponseData(
                inquiry_turns=case.current_turn,
                problem_statement_confirmed=inv.problem_statement_confirmed,
                proposed_problem_statement=inv.problem_statement,
                decided_to_investigate=inv.problem_statement_confirmed,
            ),
        )
    done = inv.milestones_completed
    if state == CaseState.INVESTIGATING:
        has_fix = inv.root_cause is not None and inv.solution is not None
        return CaseUIResponse_Investigating(
            **base,
            disposition_eligibility={
                "resolved": "ready" if has_fix else "needs_info",
                "closed": "suggests_alternative" if has_fix else "ready",
            },
            agent_status=inv.agent_status,
            progress=InvestigationProgressSummary(
                active_hypotheses=sum(1 for h in inv.hypotheses if h.state == "active"),
                completed_indicators=[m for m in done if not m.startswith("solution_")],
                completed_stage_gates=[m for m in done if m.startswith("solution_")],
                current_stage=inv.current_stage,
                total_evidence=len(inv.evidence),
                turns_without_progress=case.turns_without_progress,
            ),
            active_hypotheses=[h for h in inv.hypotheses if h.state in ("captured", "active")],
            latest_evidence=[EvidenceSummary(**e.model_dump()) for e in inv.evidence[-5:]],
            next_actions=inv.next_actions,
            problem_statement=inv.problem_statement or case.description or None,
            problem_verification=ProblemVerificationData(
                severity=inv.severity, urgency_level=inv.urgency_level, user_impact=inv.user_impact
            ),
            working_conclusion=(
                WorkingConclusionSummary(**inv.working_conclusion.model_dump())
                if inv.working_conclusion
                else None
            ),
        )
    ended = case.resolved_at or case.closed_at or case.updated_at
    rc = inv.root_cause
    sol = inv.solution
    final: Literal["resolved", "closed"] = "resolved" if state == CaseState.RESOLVED else "closed"
    return CaseUIResponse_Resolved(
        **base,
        state=final,
        disposition_eligibility={"resolved": "not_eligible", "closed": "not_eligible"},
        resolved_at=case.resolved_at if final == "resolved" else None,
        closed_at=case.closed_at if final == "closed" else None,
        closure_reason=case.closure_reason,
        problem_statement=inv.problem_statement or case.description or None,
        root_cause=RootCauseSummary(
            root_cause_id=rc.root_cause_id,
            description=rc.description,
            category=rc.category,
            severity=rc.severity,
            cause_assurance=rc.cause_assurance,
        )
        if rc
        else None,
        solution_applied=SolutionSummary(
            description=sol.description,
            applied_at=sol.applied_at or ended,
            applied_by=sol.applied_by,
        )
        if sol
        else None,
        verification_status=SolutionVerificationData(
            verified=sol.verified,
            verification_method=sol.verification_method,
            details=sol.verification_details,
        )
        if sol
        else None,
        resolution_summary=ResolutionSummary(
            total_duration_minutes=max(0, int((ended - case.created_at).total_seconds() // 60)),
            milestones_completed=len(done),
            hypotheses_tested=sum(
                1 for h in inv.hypotheses if h.state in ("validated", "refuted", "inconclusive")
            ),
            evidence_collected=len(inv.evidence),
            key_insights=inv.key_insights,
        ),
        reports_available=reports,
    )


async def report_availability(session: AsyncSession, case_id: str) -> list[ReportAvailability]:
    rows = await ReportRepository(session).list_for_case(case_id)
    status_of = {"completed": "available", "pending": "in_progress", "running": "in_progress"}
    seen: dict[str, ReportAvailability] = {}
    for r in rows:
        seen.setdefault(
            r.report_type,
            ReportAvailability(report_type=r.report_type, status=status_of.get(r.status, "failed")),
        )
    if "postmortem" not in seen:
        seen["postmortem"] = ReportAvailability(report_type="postmortem", status="recommended")
    return list(seen.values())


async def _uploaded_files(evidence: EvidenceClient | None, case_id: str) -> int | None:
    """The evidence service's count of the case's files; None when it cannot say."""
    if evidence is None:
        return None
    try:
        page = await asyncio.wait_for(
            evidence.list_case_files(case_id, limit=1), timeout=FILES_COUNT_TIMEOUT
        )
    except (FMError, TimeoutError) as exc:
        log.warning("case.ui_files_count_unavailable", case_id=case_id, error=repr(exc))
        return None
    return page.total_count


async def case_ui(
    session: AsyncSession, owner_id: str, case_id: str, evidence: EvidenceClient | None = None
) -> BaseModel:
    """The CaseUIResponse variant of the case's state."""
    case = await load_case(session, owner_id, case_id)
    reports = []
    if CaseState(case.state) in (CaseState.RESOLVED, CaseState.CLOSED):
        reports = await report_availability(session, case_id)
    return to_ui(case, reports, uploaded_files=await _uploaded_files(evidence, case_id))
