"""What the agent service reads about a case (internal routes)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from case_service.domain.cases.schemas import investigation_of, to_detail
from case_service.domain.cases.service import load_case
from fm_common.contracts.case import CaseContext


async def case_context(session: AsyncSession, owner_id: str, case_id: str) -> CaseContext:
    """The case, its state and its investigation (NotFound when not the caller's)."""
    case = await load_case(session, owner_id, case_id)
    return CaseContext(
        case=to_detail(case),
        owner_id=case.owner_id,
        priority=case.priority,  # type: ignore[arg-type]
        investigation=investigation_of(case),
    )
