"""Business rules of cases: open, list, read, update, archive, transition, messages, turns.

Every function takes the owner id of the caller; a case of another user is NotFound.
Functions never commit (the session dependency or the flow does).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from case_service.domain.cases.models import Case, CaseMessage, CaseTurn, IdempotencyRecord
from case_service.domain.cases.repository import CaseRepository
from case_service.domain.cases.schemas import (
    to_detail,
    to_message,
    to_summary,
    valid_next_states,
)
from fm_common.contracts.case import (
    TRANSITIONS,
    CaseCreateRequest,
    CaseDetail,
    CaseListResponse,
    CaseMessagesResponse,
    CaseState,
    CaseTransitionRequest,
    CaseUpdateRequest,
    InvestigationState,
    TurnAppendRequest,
    TurnAppendResult,
)
from fm_common.errors import Conflict, NotFound, Unprocessable

log = structlog.get_logger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


def case_not_found(case_id: str) -> NotFound:
    return NotFound(f"Case {case_id} was not found.", code="CASE_NOT_FOUND")


async def load_case(
    session: AsyncSession, owner_id: str, case_id: str, *, for_update: bool = False
) -> Case:
    case = await CaseRepository(session).get_owned(owner_id, case_id, for_update=for_update)
    if case is None:
        raise case_not_found(case_id)
    return case


# ---- create ----------------------------------------------------------------------


async def _placeholder_title(repo: CaseRepository, owner_id: str, at: datetime) -> str:
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    n = await repo.count_created_between(owner_id, day, day + timedelta(days=1)) + 1
    return f"Case-{at:%m%d}-{n}"


def _request_hash(body: CaseCreateRequest) -> str:
    raw = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


async def _new_case(
    session: AsyncSession, owner_id: str, body: CaseCreateRequest, organization_id: str
) -> Case:
    repo = CaseRepository(session)
    at = now()
    title = (body.title or "").strip() or await _placeholder_title(repo, owner_id, at)
    case = Case(
        id=str(uuid.uuid4()),
        owner_id=owner_id,
        title=title,
        description=body.description or "",
        state=CaseState.INQUIRY.value,
        priority=body.priority,
        source=body.source,
        organization_id=organization_id,
        version=1,
        current_turn=0,
        turns_without_progress=0,
        message_count=0,
        investigation=InvestigationState().model_dump(mode="json"),
        meta=body.metadata,
        created_at=at,
        updated_at=at,
        last_activity_at=at,
    )
    await repo.add(case)
    if body.initial_message and body.initial_message.strip():
        case.message_count = 1
        await repo.add_message(
            CaseMessage(
                id=str(uuid.uuid4()),
                case_id=case.id,
                seq=1,
                turn_number=0,
                role="user",
                content=body.initial_message,
                author_id=owner_id,
                meta={"source": "initial_message"},
                created_at=at,
            )
        )
    log.info("case.created", case_id=case.id, owner_id=owner_id)
    return case


async def open_case(
    session: AsyncSession,
    owner_id: str,
    body: CaseCreateRequest,
    *,
    organization_id: str,
    idempotency_key: str | None = None,
) -> tuple[int, dict[str, Any], bool]:
    """Create a case; returns (status, body, replayed).

    With an Idempotency-Key, the first answer is stored with the case in one transaction
    (unique on user + key); a repeat, even a racing one, gets that answer back.
    """
    if idempotency_key is None:
        case = await _new_case(session, owner_id, body, organization_id)
        return 201, to_summary(case).model_dump(mode="json"), False

    repo = CaseRepository(session)
    request_hash = _request_hash(body)
    for _ in range(2):
        found = await repo.get_idempotency(owner_id, idempotency_key)
        if found is not None:
            if found.request_hash != request_hash:
                raise Unprocessable(
                    "This Idempotency-Key was already used with a different request.",
                    code="IDEMPOTENCY_KEY_REUSED",
                )
            return found.status_code, dict(found.response), True
        try:
            async with session.begin_nested():
                case = await _new_case(session, owner_id, body, organization_id)
                answer = to_summary(case).model_dump(mode="json")
                await repo.add_idempotency(
                    IdempotencyRecord(
                        owner_id=owner_id,
                        key=idempotency_key,
                        request_hash=request_hash,
                        status_code=201,
                        response=answer,
                        created_at=now(),
                    )
                )
            return 201, answer, False
        except IntegrityError:
            # Another request with this key won the race; read its answer.
            log.info("case.idempotency_race", owner_id=owner_id)
    raise Conflict("A request with this Idempotency-Key is in progress.", code="IDEMPOTENCY_BUSY")


# ---- read ------------------------------------------------------------------------


async def list_cases(
    session: AsyncSession,
    owner_id: str,
    *,
    state: CaseState | None,
    source: str | None,
    q: str | None,
    include_archived: bool,
    include_empty: bool,
    limit: int,
    offset: int,
) -> CaseListResponse:
    """The caller's cases, newest activity first."""
    rows, total = await CaseRepository(session).list_owned(
        owner_id,
        state=state.value if state else None,
        source=source,
        q=q,
        include_archived=include_archived,
        include_empty=include_empty,
        limit=limit,
        offset=offset,
    )
    return CaseListResponse(
        cases=[to_summary(c) for c in rows],
        total_count=total,
        limit=limit,
        offset=offset,
        has_more=offset + len(rows) < total,
    )


async def get_case(session: AsyncSession, owner_id: str, case_id: str) -> CaseDetail:
    return to_detail(await load_case(session, owner_id, case_id))


# ---- change ----------------------------------------------------------------------


def _touch(case: Case, at: datetime | None = None) -> None:
    at = at or now()
    case.updated_at = at
    case.last_activity_at = at
    case.version += 1


def _apply_transition(case: Case, to_state: CaseState, closure_reason: str | None) -> None:
    current = CaseState(case.state)
    allowed = TRANSITIONS[current]
    if to_state not in allowed:
        raise Conflict(
            f"A case cannot go from {current.value} to {to_state.value}.",
            code="INVALID_TRANSITION",
            extra={
                "current_state": current.value,
                "requested_state": to_state.value,
                "valid_next_states": [s.value for s in allowed],
            },
        )
    at = now()
    case.state = to_state.value
    if to_state == CaseState.RESOLVED:
        case.resolved_at = at
    elif to_state == CaseState.CLOSED:
        case.closed_at = at
    if closure_reason is not None:
        case.closure_reason = closure_reason
    log.info("case.transitioned", case_id=case.id, from_state=current.value, to=to_state.value)


def _check_version(case: Case, if_match: int | None) -> None:
    if if_match is not None and if_match != case.version:
        raise Conflict(
            "The case was changed by someone else; reload it and try again.",
            code="VERSION_CONFLICT",
            headers={"x-expected-version": str(if_match), "x-actual-version": str(case.version)},
            extra={"expected_version": if_match, "actual_version": case.version},
        )


async def update_case(
    session: AsyncSession,
    owner_id: str,
    case_id: str,
    body: CaseUpdateRequest,
    *,
    if_match: int | None,
) -> CaseDetail:
    """Change title/description/priority; a `state` goes through the state machine."""
    case = await load_case(session, owner_id, case_id, for_update=True)
    _check_version(case, if_match)
    before = (case.title, case.description, case.priority, case.state)
    if body.title is not None:
        case.title = body.title.strip() or case.title
    if body.description is not None:
        case.description = body.description
    if body.priority is not None:
        case.priority = body.priority
    if body.state is not None and body.state.value != case.state:
        _apply_transition(case, body.state, None)
    if (case.title, case.description, case.priority, case.state) != before:
        _touch(case)  # a PUT that changes nothing keeps the version
        await session.flush()
    return to_detail(case)


async def transition_case(
    session: AsyncSession, owner_id: str, case_id: str, body: CaseTransitionRequest
) -> CaseDetail:
    case = await load_case(session, owner_id, case_id, for_update=True)
    _apply_transition(case, body.to_state, body.closure_reason)
    _touch(case)
    await session.flush()
    return to_detail(case)


async def archive_case(session: AsyncSession, owner_id: str, case_id: str) -> CaseDetail:
    """Hide the case from the default list (idempotent)."""
    case = await load_case(session, owner_id, case_id, for_update=True)
    if case.archived_at is None:
        case.archived_at = now()
        case.updated_at = case.archived_at
        case.version += 1
        await session.flush()
        log.info("case.archived", case_id=case_id)
    return to_detail(case)


# ---- messages and turns ----------------------------------------------------------


async def list_messages(
    session: AsyncSession, owner_id: str, case_id: str, *, limit: int, offset: int
) -> CaseMessagesResponse:
    """The conversation, oldest first."""
    await load_case(session, owner_id, case_id)
    rows, total = await CaseRepository(session).list_messages(case_id, limit=limit, offset=offset)
    has_more = offset + len(rows) < total
    return CaseMessagesResponse(
        messages=[to_message(m) for m in rows],
        total_count=total,
        retrieved_count=len(rows),
        has_more=has_more,
        next_offset=offset + len(rows) if has_more else None,
    )


async def append_turn(
    session: AsyncSession, owner_id: str, case_id: str, body: TurnAppendRequest
) -> TurnAppendResult:
    """Store one agent turn atomically; a repeated `turn_key` returns the first result."""
    repo = CaseRepository(session)
    case = await load_case(session, owner_id, case_id, for_update=True)
    stored = await repo.get_turn(case_id, body.turn_key)
    if stored is not None:
        return TurnAppendResult.model_validate({**stored.result, "replayed": True})
    if body.to_state is not None and body.to_state.value != case.state:
        _apply_transition(case, body.to_state, body.closure_reason)
    at = now()
    turn_number = case.current_turn + 1
    ids = (str(uuid.uuid4()), str(uuid.uuid4()))
    for offset, (role, msg, author) in enumerate(
        (("user", body.user_message, owner_id), ("assistant", body.assistant_message, "agent"))
    ):
        await repo.add_message(
            CaseMessage(
                id=ids[offset],
                case_id=case_id,
                seq=case.message_count + 1 + offset,
                turn_number=turn_number,
                role=role,
                content=msg.content,
                author_id=author,
                token_count=msg.token_count,
                meta=msg.metadata,
                created_at=at,
            )
        )
    case.message_count += 2
    case.current_turn = turn_number
    case.turns_without_progress = 0 if body.progress_made else case.turns_without_progress + 1
    if body.investigation is not None:
        case.investigation = body.investigation.model_dump(mode="json")
    _touch(case, at)
    inv = InvestigationState.model_validate(case.investigation or {})
    result = TurnAppendResult(
        case_id=case_id,
        turn_number=turn_number,
        case_state=CaseState(case.state),
        user_message_id=ids[0],
        assistant_message_id=ids[1],
        milestones_completed=inv.milestones_completed,
    )
    await repo.add_turn(
        CaseTurn(
            case_id=case_id,
            turn_key=body.turn_key,
            turn_number=turn_number,
            result=result.model_dump(mode="json"),
            created_at=at,
        )
    )
    await session.flush()
    log.info("case.turn_appended", case_id=case_id, turn_number=turn_number)
    return result


__all__ = [
    "append_turn",
    "archive_case",
    "get_case",
    "list_cases",
    "list_messages",
    "open_case",
    "transition_case",
    "update_case",
    "valid_next_states",
]
