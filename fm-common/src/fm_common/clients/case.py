"""Typed client of the case service (used by the agent service and the worker).

Every call carries a bearer token (the caller's, forwarded from the request context, or
the `token=` given: a worker service token acting on behalf of the case's owner); the
case service scopes every answer to that user, so another user's case is NotFound.
"""

from __future__ import annotations

from fm_common.clients.base import ServiceClient
from fm_common.contracts.case import (
    CaseContext,
    CaseDetail,
    CaseUpdateRequest,
    Report,
    ReportStoreRequest,
    TurnAppendRequest,
    TurnAppendResult,
)


class CaseClient(ServiceClient):
    service = "case"

    async def get_case(
        self, case_id: str, *, history: int = 0, token: str | None = None
    ) -> CaseContext:
        """The case with its state and investigation (NotFound when not the caller's);
        with `history` > 0 also its last `history` messages, oldest first."""
        params = {"history": history} if history > 0 else None
        return await self.get_model(
            f"/internal/v1/cases/{case_id}", CaseContext, params=params, token=token
        )

    async def append_turn(
        self, case_id: str, turn: TurnAppendRequest, *, token: str | None = None
    ) -> TurnAppendResult:
        """Store a user message + assistant message + investigation update atomically.

        Idempotent by `turn.turn_key`: a repeat returns the first result (`replayed`).
        Conflict (code INVALID_TRANSITION) when `to_state` is not allowed.
        """
        return await self.send_model(
            "POST",
            f"/internal/v1/cases/{case_id}/turns",
            TurnAppendResult,
            json=turn.model_dump(mode="json"),
            token=token,
        )

    async def update_case(
        self, case_id: str, update: CaseUpdateRequest, *, token: str | None = None
    ) -> CaseDetail:
        """PUT the case (e.g. a generated title); last write wins unless If-Match is used."""
        return await self.send_model(
            "PUT",
            f"/api/v1/cases/{case_id}",
            CaseDetail,
            json=update.model_dump(mode="json", exclude_none=True),
            token=token,
        )

    async def store_report(
        self,
        case_id: str,
        report_id: str,
        report: ReportStoreRequest,
        *,
        token: str | None = None,
    ) -> Report:
        """The worker stores a generated report (status, markdown, error)."""
        return await self.send_model(
            "PUT",
            f"/internal/v1/cases/{case_id}/reports/{report_id}",
            Report,
            json=report.model_dump(mode="json"),
            token=token,
        )
