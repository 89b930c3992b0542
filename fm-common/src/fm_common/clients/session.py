"""Typed client of the session service (used by the auth service at login and logout)."""

from __future__ import annotations

from fm_common.clients.base import ServiceClient
from fm_common.contracts.session import (
    SessionCreateRequest,
    SessionListResponse,
    SessionResponse,
    SessionsEndedResponse,
)
from fm_common.errors import NotFound


class SessionClient(ServiceClient):
    service = "session"

    async def open_login_session(
        self, session_id: str, token: str, request: SessionCreateRequest | None = None
    ) -> SessionResponse:
        """Create (or return, on a retry) the login session `session_id`.

        `session_id` must be the `sid` claim of `token`; the PUT is idempotent, so the
        base client may retry it.
        """
        body = (request or SessionCreateRequest()).model_dump(mode="json")
        return await self.send_model(
            "PUT", f"/internal/v1/sessions/{session_id}", SessionResponse, token=token, json=body
        )

    async def bind(self, session_id: str, token: str) -> SessionResponse | None:
        """Bind an anonymous session to the token's user; None when it is gone or not theirs."""
        try:
            return await self.send_model(
                "PUT", f"/internal/v1/sessions/{session_id}/user", SessionResponse, token=token
            )
        except NotFound:
            return None

    async def get(self, session_id: str, token: str | None = None) -> SessionResponse:
        return await self.get_model(f"/api/v1/sessions/{session_id}", SessionResponse, token=token)

    async def end(self, session_id: str, token: str | None = None) -> bool:
        """End one session of the caller; False when it was already gone."""
        try:
            await self.request("DELETE", f"/api/v1/sessions/{session_id}", token=token)
        except NotFound:
            return False
        return True

    async def count_active(self, token: str | None = None) -> int:
        """How many sessions of the token's user are still active."""
        resp = await self.send_model(
            "GET", "/api/v1/sessions", SessionListResponse, params={"limit": 1}, token=token
        )
        return resp.total_count

    async def end_all(self, token: str | None = None) -> int:
        """End every session of the token's user; returns how many were live."""
        resp = await self.send_model(
            "DELETE", "/internal/v1/sessions", SessionsEndedResponse, token=token
        )
        return resp.ended_sessions
