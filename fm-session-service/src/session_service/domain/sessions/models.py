"""A session as it is kept in Redis (one hash per session)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fm_common.contracts.session import SessionResponse

ANONYMOUS = ""


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class StoredSession:
    session_id: str
    user_id: str  # ANONYMOUS ("") until bound to a user
    client_id: str  # "" when the client sent none
    session_type: str
    timeout_minutes: int
    created_at: float
    last_activity_at: float
    expires_at: float
    metadata: dict[str, Any] | None

    @property
    def ttl_seconds(self) -> int:
        return self.timeout_minutes * 60

    def to_redis(self) -> dict[str, str]:
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "client_id": self.client_id,
            "session_type": self.session_type,
            "timeout_minutes": str(self.timeout_minutes),
            "created_at": repr(self.created_at),
            "last_activity_at": repr(self.last_activity_at),
            "expires_at": repr(self.expires_at),
            "metadata": json.dumps(self.metadata) if self.metadata is not None else "",
        }

    @classmethod
    def from_redis(cls, data: dict[str, str]) -> StoredSession:
        return cls(
            session_id=data["session_id"],
            user_id=data.get("user_id", ANONYMOUS),
            client_id=data.get("client_id", ""),
            session_type=data.get("session_type") or "troubleshooting",
            timeout_minutes=int(data["timeout_minutes"]),
            created_at=float(data["created_at"]),
            last_activity_at=float(data["last_activity_at"]),
            expires_at=float(data["expires_at"]),
            metadata=json.loads(data["metadata"]) if data.get("metadata") else None,
        )

    def to_response(self, *, resumed: bool = False, message: str | None = None) -> SessionResponse:
        return SessionResponse(
            session_id=self.session_id,
            client_id=self.client_id or None,
            user_id=self.user_id or None,
            created_at=iso(self.created_at),
            expires_at=iso(self.expires_at),
            last_activity_at=iso(self.last_activity_at),
            session_resumed=resumed,
            session_type=self.session_type,
            status="active",
            timeout_minutes=self.timeout_minutes,
            metadata=self.metadata,
            message=message,
        )
