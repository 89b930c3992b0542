"""Per-request context carried across awaits and into every outgoing call and log line."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("fm_request_id", default=None)
# The caller's bearer token, forwarded on service-to-service calls (DESIGN.md "Identity").
bearer_token_var: ContextVar[str | None] = ContextVar("fm_bearer_token", default=None)
# (token, user) of a request verified with the user's own token: a service's /internal
# calls go out with a service token acting for this user, never with the user's token
# (internal routes take service tokens only, ADR 0135). Kept with the token it came
# with, so it never outlives a change of the bearer token (the worker sets its own).
acting_user_var: ContextVar[tuple[str, str] | None] = ContextVar("fm_acting_user", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


def current_bearer_token() -> str | None:
    return bearer_token_var.get()


def set_caller(token: str, user_id: str | None) -> None:
    """The verified caller of this request: their bearer token, forwarded on public-route
    calls, and the user it belongs to when it is their own (None for a service token)."""
    bearer_token_var.set(token)
    acting_user_var.set((token, user_id) if user_id else None)


def current_acting_user() -> str | None:
    """The user whose own token is this request's bearer token, if it is one."""
    acting = acting_user_var.get()
    if acting is None or acting[0] != bearer_token_var.get():
        return None
    return acting[1]
