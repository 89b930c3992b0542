"""Wire models of the case service (public shapes from API.md / the reference schema, and
the internal routes the agent service and the worker call through `CaseClient`).

Public shapes keep the reference schema's exact field names; request bodies forbid
unknown fields so a typo is a 422, never silently ignored.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from typing_extensions import TypeAliasType


class CaseState(StrEnum):
    INQUIRY = "inquiry"
    INVESTIGATING = "investigating"
    RESOLVED = "resolved"
    CLOSED = "closed"


# The state machine (DESIGN.md "The agent"): resolved and closed are final.
TRANSITIONS: dict[CaseState, tuple[CaseState, ...]] = {
    CaseState.INQUIRY: (CaseState.INVESTIGATING, CaseState.CLOSED),
    CaseState.INVESTIGATING: (CaseState.RESOLVED, CaseState.CLOSED),
    CaseState.RESOLVED: (),
    CaseState.CLOSED: (),
}
TERMINAL_STATES = frozenset({CaseState.RESOLVED, CaseState.CLOSED})

CasePriority = Literal["low", "medium", "high", "critical"]
CaseSource = Literal["copilot", "slack", "api"]
InvestigationStage = Literal["diagnosis", "mitigation", "treatment"]
HypothesisState = Literal["captured", "active", "validated", "refuted", "inconclusive", "retired"]
MessageRole = Literal["user", "assistant", "system"]

# `metadata` of a case: a free-form JSON object the client keeps with the case (the
# extension sends {created_via, auto_generated}); bounded, as its serialised size.
MAX_CASE_METADATA_BYTES = 16 * 1024


def check_case_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_CASE_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; at most {MAX_CASE_METADATA_BYTES}")
    if "\\u0000" in json.dumps(value):
        raise ValueError("metadata must not contain NUL characters")
    return value


# The eight investigation milestones, in order (DESIGN.md "The agent"). A named alias, so
# the OpenAPI document has a `Milestone` schema the dashboard takes the list from.
Milestone = TypeAliasType(
    "Milestone",
    Literal[
        "symptom_verified",
        "scope_assessed",
        "timeline_established",
        "changes_identified",
        "root_cause_identified",
        "solution_proposed",
        "solution_applied",
        "solution_verified",
    ],
)
MILESTONES: tuple[Milestone, ...] = get_args(Milestone.__value__)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _no_nul(self) -> _Request:
        # PostgreSQL text cannot hold NUL: refuse it here (422) rather than fail at write.
        for name, value in self:
            if isinstance(value, str) and "\x00" in value:
                raise ValueError(f"{name} must not contain NUL characters")
        return self


# ---- public: cases -------------------------------------------------------------------


class CaseCreateRequest(_Request):
    title: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default="", max_length=2000)
    initial_message: str | None = Field(default=None, max_length=4000)
    session_id: str | None = None
    priority: CasePriority = "medium"
    source: CaseSource = "copilot"
    # Free-form client data (at most MAX_CASE_METADATA_BYTES as JSON), stored and returned.
    metadata: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_case_metadata(value)


class CaseUpdateRequest(_Request):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    # Known (the reference schema has it) but applied through the state machine only.
    state: CaseState | None = None
    priority: CasePriority | None = None


class CaseTransitionRequest(_Request):
    to_state: CaseState
    closure_reason: str | None = Field(default=None, max_length=1000)


class CaseSummary(BaseModel):
    case_id: str
    title: str
    description: str
    state: CaseState
    priority: CasePriority = "medium"
    source: str = "copilot"
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    user_id: str
    organization_id: str
    closure_reason: str | None
    current_turn: int
    milestones_completed: int
    total_milestones: int = len(MILESTONES)
    is_terminal: bool
    is_archived: bool = False
    shared_team_ids: list[str] = Field(default_factory=list)
    valid_next_states: list[str] = Field(default_factory=list)
    version: int = 1
    metadata: dict[str, Any] = Field(default_factory=dict)


class CaseDetail(BaseModel):
    case_id: str
    title: str
    description: str
    state: CaseState
    priority: CasePriority = "medium"
    source: str = "copilot"
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    archived_at: datetime | None = None
    user_id: str
    organization_id: str
    closure_reason: str | None
    current_turn: int
    turns_without_progress: int
    current_stage: InvestigationStage | None
    milestones_completed: list[Milestone]
    pending_milestones: list[Milestone]
    evidence_count: int
    hypothesis_count: int
    solution_count: int
    is_terminal: bool
    is_archived: bool = False
    escalated: bool
    shared_team_ids: list[str] = Field(default_factory=list)
    valid_next_states: list[str] = Field(default_factory=list)
    version: int = 1
    metadata: dict[str, Any] = Field(default_factory=dict)


class CaseListResponse(BaseModel):
    cases: list[CaseSummary]
    total_count: int
    limit: int
    offset: int
    has_more: bool


class Message(BaseModel):
    message_id: str
    turn_number: int
    role: MessageRole
    content: str
    created_at: str
    author_id: str | None = None
    token_count: int | None = None
    metadata: dict[str, Any] | None = None


class CaseMessagesResponse(BaseModel):
    messages: list[Message]
    total_count: int
    retrieved_count: int
    has_more: bool
    next_offset: int | None = None
    debug_info: dict[str, Any] | None = None


# ---- investigation state (written by the agent, read by the UI) ----------------------


class Hypothesis(BaseModel):
    hypothesis_id: str
    text: str = Field(max_length=500)
    likelihood: float = Field(default=0.5, ge=0.0, le=1.0)
    state: HypothesisState = "captured"
    evidence_count: int = Field(default=0, ge=0)
    refutation_reason: str | None = Field(default=None, max_length=200)


class EvidenceItem(BaseModel):
    evidence_id: str
    type: str = Field(default="text", max_length=100)
    summary: str = Field(max_length=500)
    timestamp: datetime
    relevance_score: float = Field(default=0.5, ge=0.0, le=1.0)
    category: str = "OTHER"
    collected_at_turn: int = 0
    source_filename: str | None = None


class WorkingConclusion(BaseModel):
    summary: str = Field(max_length=1000)
    confidence: float = Field(ge=0.0, le=1.0)
    last_updated: datetime


class RootCause(BaseModel):
    root_cause_id: str
    description: str = Field(max_length=1000)
    category: str = "other"
    severity: str = "medium"
    cause_assurance: str = "no_root"


class Solution(BaseModel):
    description: str = Field(max_length=2000)
    applied_at: datetime | None = None
    applied_by: str = "user"
    verified: bool = False
    verification_method: str = ""
    verification_details: str = ""


class PendingProposal(BaseModel):
    """A change the agent proposed with an answer, waiting for the user's Yes or No (a
    `confirmation` turn answers it once: it is cleared when answered)."""

    proposal_id: str
    kind: Literal["status_transition"] = "status_transition"
    to_state: CaseState
    proposed_at_turn: int = Field(default=0, ge=0)
    label: str = Field(default="", max_length=200)


def _no_milestones() -> dict[str, bool]:
    names: tuple[str, ...] = MILESTONES
    return dict.fromkeys(names, False)


class InvestigationState(BaseModel):
    """What the agent tracks inside a case; stored whole, replaced whole by a turn."""

    current_stage: InvestigationStage = "diagnosis"
    milestones: dict[str, bool] = Field(default_factory=_no_milestones)
    hypotheses: list[Hypothesis] = Field(default_factory=list)
    evidence: list[EvidenceItem] = Field(default_factory=list)
    working_conclusion: WorkingConclusion | None = None
    problem_statement: str | None = Field(default=None, max_length=1000)
    problem_statement_confirmed: bool = False
    severity: str | None = None
    urgency_level: str | None = None
    user_impact: str | None = None
    root_cause: RootCause | None = None
    solution: Solution | None = None
    next_actions: list[str] = Field(default_factory=list)
    agent_status: str = Field(default="Waiting for your next message.", max_length=500)
    key_insights: list[str] = Field(default_factory=list)
    escalated: bool = False
    pending_proposal: PendingProposal | None = None

    @property
    def milestones_completed(self) -> list[Milestone]:
        return [m for m in MILESTONES if self.milestones.get(m)]


class CaseContext(BaseModel):
    """GET /internal/v1/cases/{id}: the case, its state and its investigation; with
    `?history=N` also its last N messages, oldest first (one round trip for a turn)."""

    case: CaseDetail
    owner_id: str
    priority: CasePriority
    investigation: InvestigationState
    recent_messages: list[Message] = Field(default_factory=list)


# ---- internal: turns ---------------------------------------------------------------


class TurnMessage(_Request):
    content: str = Field(max_length=1_000_000)
    metadata: dict[str, Any] | None = None
    token_count: int | None = Field(default=None, ge=0, le=100_000_000)


class TurnAppendRequest(_Request):
    """One agent turn, stored in one transaction; a repeat of `turn_key` stores nothing."""

    turn_key: str = Field(min_length=8, max_length=255, pattern=r"^[A-Za-z0-9_:\-]+$")
    user_message: TurnMessage
    assistant_message: TurnMessage
    investigation: InvestigationState | None = None
    progress_made: bool = False
    # A state the agent proposes; it goes through the same state machine (409 otherwise).
    to_state: CaseState | None = None
    closure_reason: str | None = Field(default=None, max_length=1000)


class TurnAppendResult(BaseModel):
    case_id: str
    turn_number: int
    case_state: CaseState
    user_message_id: str
    assistant_message_id: str
    milestones_completed: list[Milestone]
    replayed: bool = False


# ---- reports ---------------------------------------------------------------------

ReportType = Literal["postmortem", "incident_report", "runbook"]
ReportStatus = Literal["pending", "running", "completed", "failed"]


class ReportCreateRequest(_Request):
    report_type: ReportType = "postmortem"


class ReportSummary(BaseModel):
    report_id: str
    case_id: str
    report_type: ReportType
    status: ReportStatus
    job_id: str | None
    error: str | None = None
    created_at: datetime
    updated_at: datetime


class Report(ReportSummary):
    content: str | None = None


class ReportListResponse(BaseModel):
    reports: list[ReportSummary]
    total_count: int


class ReportCreated(BaseModel):
    """202 body of POST /cases/{id}/reports (the job is at the Location header)."""

    report_id: str
    job_id: str
    status: Literal["queued"] = "queued"
    case_id: str


class ReportStoreRequest(_Request):
    """PUT /internal/v1/cases/{id}/reports/{report_id} (the worker stores a result)."""

    status: ReportStatus
    content: str | None = Field(default=None, max_length=2_000_000)
    error: str | None = Field(default=None, max_length=4000)


class JobStatusResponse(BaseModel):
    """The API job shape: `{status, result?, error?: {message}}`."""

    job_id: str
    status: Literal["queued", "running", "completed", "failed"]
    progress: float = 0.0
    result: Any = None
    error: dict[str, Any] | None = None
