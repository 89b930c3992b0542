"""The side-panel view of a case (`GET /cases/{id}/ui`)."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from case_service.domain.cases.schemas import to_ui
from case_service.domain.cases.service import load_case
from case_service.domain.reports.service import report_availability
from fm_common.contracts.case import CaseState


async def case_ui(session: AsyncSession, owner_id: str, case_id: str) -> BaseModel:
    """The CaseUIResponse variant of the case's state."""
    case = await load_case(session, owner_id, case_id)
    reports = []
    if CaseState(case.state) in (CaseState.RESOLVED, CaseState.CLOSED):
        reports = await report_availability(session, case_id)
    return to_ui(case, reports)
