"""What the agent service reads about a case (internal routes)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from case_service.domain.cases.repository import CaseRepository
from case_service.domain.cases.schemas import investigation_of, to_detail, to_message
from case_service.domain.cases.service import load_case
from fm_common.contracts.case import CaseContext


async def case_context(
    session: AsyncSession, owner_id: str, case_id: str, *, history: int = 0
) -> CaseContext:
    """The case, its state and its investigation (NotFound when not the caller's); with
    `history` > 0 also the last `history` messages, oldest first (a turn's one read)."""
    case = await load_case(session, owner_id, case_id)
    rows = await CaseRepository(session).recent_messages(case_id, history) if history > 0 else []
    return CaseContext(
        case=to_detail(case),
        owner_id=case.owner_id,
        priority=case.priority,  # type: ignore[arg-type]
        investigation=investigation_of(case),
        recent_messages=[to_message(m) for m in rows],
    )
