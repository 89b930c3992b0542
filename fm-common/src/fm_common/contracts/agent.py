"""Wire models of the agent service (API.md "Cases": turns, title; reference schemas
TurnResponse, AttachmentResult, SuggestedActionResponse, TitleResponse) and the names of
its worker tasks.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fm_common.contracts.case import CaseState, Milestone

# Worker tasks (queue "agent"), enqueued by name with fm_common.jobs.enqueue.
AGENT_QUEUE = "agent"
RUN_TURN_TASK = "agent.run_turn"  # kwargs: {job_id, case_id, owner_id, turn: QueuedTurn}
# Enqueued by the case service on POST /cases/{id}/reports;
# kwargs: {job_id, case_id, report_id, owner_id}.
POSTMORTEM_TASK = "agent.generate_postmortem"
TURN_JOB_KIND = "agent.turn"


class AttachmentResult(BaseModel):
    """One attachment of a turn, stored by the evidence service (reference schema)."""

    file_id: str
    filename: str
    file_size: int
    processing_status: str
    source_type: str
    upload_source: str = "file_upload"
    uploaded_at: str = ""
    duplicate_of: str | None = None
    duplicate_turn: int | None = None


# The extension's vocabulary of suggestion cards (API.md "suggestion cards"): a DECIDE
# click sends `payload` as the user's next message (with `intent` as its intent when
# present), a RUN click copies `payload` (a command); EVIDENCE (data the agent needs) and
# FREE_SPEECH are shown as text.
SuggestedActionType = Literal["DECIDE", "RUN", "EVIDENCE", "FREE_SPEECH"]


class SuggestedActionResponse(BaseModel):
    """A suggestion card (reference schema). `body` is text for the user, never an
    instruction for a client. A proposed state change is a DECIDE whose `intent` is
    `{type: "confirmation", ...}` or `{type: "status_transition", to_state}`."""

    label: str
    type: SuggestedActionType
    payload: str | None = None
    body: str | None = None
    hints: list[str] | None = None
    icon: str | None = None
    metadata: dict[str, Any] | None = None
    intent: dict[str, Any] | None = None
    evidence_need_id: str | None = None


# ---- turn intents (the `intent_data` JSON of a turn; decided without the LLM) --------

TURN_INTENT_TYPES = ("status_transition", "confirmation", "hypothesis_action")
# Intent types of earlier clients of this server, read as status_transition.
LEGACY_TRANSITION_INTENTS = ("confirm_transition", "transition")


class StatusTransitionIntent(BaseModel):
    """The header status dropdown: the user already confirmed the change in a dialog
    (`user_confirmed: false` makes it a proposal the user is asked to confirm)."""

    type: Literal["status_transition"] = "status_transition"
    from_state: CaseState | None = None
    to_state: CaseState
    user_confirmed: bool = True
    closure_reason: str | None = Field(default=None, max_length=1000)


class ConfirmationIntent(BaseModel):
    """Yes / No under a proposal: answers the pending proposal of the previous turn."""

    type: Literal["confirmation"] = "confirmation"
    confirmation_value: bool
    proposal_id: str | None = Field(default=None, max_length=100)


class HypothesisActionIntent(BaseModel):
    type: Literal["hypothesis_action"] = "hypothesis_action"
    hypothesis_id: str = Field(min_length=1, max_length=100)
    action: Literal["validate", "refute", "retire"]
    reason: str | None = Field(default=None, max_length=200)


TurnIntent = StatusTransitionIntent | ConfirmationIntent | HypothesisActionIntent


class Citation(BaseModel):
    document_id: str
    title: str
    chunk_id: str
    snippet: str
    score: float
    scope: str


class Redactions(BaseModel):
    """How many values were replaced by placeholders before text left for a provider."""

    count: int = 0
    kinds: list[str] = Field(default_factory=list)


class HypothesisView(BaseModel):
    hypothesis_id: str
    text: str
    likelihood: float
    state: str


class InvestigationView(BaseModel):
    phase: CaseState
    current_stage: str | None = None
    milestones_completed: list[Milestone] = Field(default_factory=list)
    pending_milestones: list[Milestone] = Field(default_factory=list)
    hypotheses: list[HypothesisView] = Field(default_factory=list)
    working_conclusion: str | None = None
    provider: str | None = None
    degraded: bool = False


class TurnResponse(BaseModel):
    """200 body of POST /api/v1/cases/{id}/turns (reference TurnResponse plus ours)."""

    agent_response: str
    turn_number: int
    milestones_completed: list[Milestone]
    case_state: CaseState
    progress_made: bool
    attachments_processed: list[AttachmentResult] = Field(default_factory=list)
    suggested_actions: list[SuggestedActionResponse] = Field(default_factory=list)
    cause_assurance: str | None = None
    cause_overclaim: bool | None = None
    progress_transparency: dict[str, Any] | None = None
    citations: list[Citation] = Field(default_factory=list)
    investigation: InvestigationView | None = None
    redactions: Redactions = Field(default_factory=Redactions)


class TurnAccepted(BaseModel):
    """202 body when a turn is queued; poll `location` (also the Location header)."""

    job_id: str
    status: Literal["queued"] = "queued"
    location: str


class TurnJobStatus(BaseModel):
    """GET /api/v1/cases/{id}/turns/jobs/{job_id}."""

    job_id: str
    status: Literal["queued", "running", "completed", "failed"]
    result: TurnResponse | None = None
    error: dict[str, Any] | None = None


class TitleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_words: int = Field(default=8, ge=3, le=12)
    hint: str | None = Field(default=None, max_length=200)
    force: bool = False


class TitleResponse(BaseModel):
    title: str
    schema_version: str = "3.1.0"


class LLMProviderInfo(BaseModel):
    name: str
    kind: str
    model: str


class AgentCapabilities(BaseModel):
    """GET /v1/meta/capabilities (never any key)."""

    model_config = ConfigDict(populate_by_name=True)

    llmProviders: list[LLMProviderInfo] = Field(default_factory=list)
    degraded: bool = False
    streaming: bool = True
    asyncTurns: bool = True
    redaction: bool = True
