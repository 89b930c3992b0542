"""The side-panel view of a case (`GET /cases/{id}/ui`)."""

from __future__ import annotations

import asyncio

import structlog
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from case_service.domain.cases.schemas import to_ui
from case_service.domain.cases.service import load_case
from case_service.domain.reports.service import report_availability
from fm_common.clients.evidence import EvidenceClient
from fm_common.contracts.case import CaseState
from fm_common.errors import FMError

log = structlog.get_logger(__name__)

# The panel must render even when the evidence service is slow or down.
FILES_COUNT_TIMEOUT = 2.0


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
