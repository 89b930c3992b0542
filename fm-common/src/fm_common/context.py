"""Per-request context carried across awaits and into every outgoing call and log line."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("fm_request_id", default=None)
# The caller's bearer token, forwarded on service-to-service calls (DESIGN.md "Identity").
bearer_token_var: ContextVar[str | None] = ContextVar("fm_bearer_token", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


def current_bearer_token() -> str | None:
    return bearer_token_var.get()
