"""Wire models of the session service (API.md "Sessions"; reference SessionResponse)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

SessionStatus = Literal["active", "expired", "terminated"]
TIMEOUT_MIN_MINUTES = 60
TIMEOUT_MAX_MINUTES = 480
TIMEOUT_DEFAULT_MINUTES = 180
METADATA_MAX_BYTES = 8192


def _check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(json.dumps(value, default=str)) > METADATA_MAX_BYTES:
        raise ValueError(f"metadata must be at most {METADATA_MAX_BYTES} bytes as JSON")
    return value


Metadata = Annotated[dict[str, Any] | None, AfterValidator(_check_metadata)]


class SessionCreateRequest(BaseModel):
    client_id: str | None = Field(default=None, min_length=1, max_length=255)
    session_type: str | None = Field(default="troubleshooting", min_length=1, max_length=64)
    timeout_minutes: int | None = Field(
        default=TIMEOUT_DEFAULT_MINUTES, ge=TIMEOUT_MIN_MINUTES, le=TIMEOUT_MAX_MINUTES
    )
    metadata: Metadata = None


class SessionResponse(BaseModel):
    session_id: str
    client_id: str | None = None
    user_id: str | None = None
    created_at: str
    expires_at: str | None = None
    last_activity_at: str | None = None
    session_resumed: bool | None = False
    session_type: str = "troubleshooting"
    status: SessionStatus = "active"
    timeout_minutes: int = TIMEOUT_DEFAULT_MINUTES
    metadata: dict[str, Any] | None = None
    message: str | None = None
    schema_version: Literal["3.1.0"] = "3.1.0"


class SessionListResponse(BaseModel):
    sessions: list[SessionResponse]
    total_count: int
    limit: int
    offset: int
    has_more: bool


class SessionsEndedResponse(BaseModel):
    """Answer of the internal end-all route (logout of every session)."""

    ended_sessions: int
