"""Is this case the caller's? Asked of the case service (its owner) on its internal route,
with a service token acting for the caller (ADR 0135)."""

from __future__ import annotations

import re

from fm_common.auth import Principal
from fm_common.clients.auth import AuthClient
from fm_common.clients.case import CaseClient
from fm_common.errors import NotFound, Unprocessable

_CASE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class CaseNotFound(NotFound):
    code, detail = "CASE_NOT_FOUND", "No such case."


def check_case_id(case_id: str) -> str:
    """A well-formed case id (opaque: letters, digits, '-' and '_'), else 422."""
    case_id = case_id.strip()
    if not _CASE_ID.match(case_id):
        raise Unprocessable(
            "case_id must be 1-64 letters, digits, '-' or '_'.", code="INVALID_CASE_ID"
        )
    return case_id


class CaseGate:
    def __init__(self, client: CaseClient, tokens: AuthClient) -> None:
        self.client = client
        self.tokens = tokens

    async def ensure_case(self, case_id: str, principal: Principal) -> None:
        """Return when the case exists and is the caller's; CaseNotFound otherwise.

        The case service answers 404 for another user's case, so this never tells them
        apart. Unavailable (503 + Retry-After) when the case service is down.
        """
        try:
            # Only the status matters here, so the body is not parsed into CaseContext.
            token = await self.tokens.token_for(principal)
            await self.client.request("GET", f"/internal/v1/cases/{case_id}", token=token)
        except NotFound:
            raise CaseNotFound() from None
