"""Queries on reports (always through an owned case)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from case_service.domain.reports.models import Report
from fm_common.db import Repository


class ReportRepository(Repository[Report]):
    """Reports are read through their case (checked owned first), never by owner alone."""

    model = Report

    async def get_in_case(
        self, case_id: str, report_id: str, *, for_update: bool = False
    ) -> Report | None:
        stmt = select(Report).where(Report.id == report_id, Report.case_id == case_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_for_case(self, case_id: str) -> Sequence[Report]:
        stmt = (
            select(Report)
            .where(Report.case_id == case_id)
            .order_by(Report.created_at.desc(), Report.id)
        )
        return (await self.session.execute(stmt)).scalars().all()
