"""Business rules of sessions: create or resume, read, heartbeat, bind, end."""

from __future__ import annotations

import time
import uuid

import structlog

from fm_common.auth import Principal
from fm_common.contracts.session import (
    TIMEOUT_DEFAULT_MINUTES,
    SessionCreateRequest,
    SessionListResponse,
    SessionResponse,
    SessionsEndedResponse,
)
from fm_common.errors import Forbidden, NotFound, RateLimited, SessionExpired
from session_service.domain.sessions.models import ANONYMOUS, StoredSession
from session_service.domain.sessions.repository import SessionStore

log = structlog.get_logger(__name__)

NOT_FOUND = "Session not found."


def _owner(principal: Principal | None) -> str:
    return principal.user_id if principal is not None else ANONYMOUS


def _new_session(session_id: str, owner: str, request: SessionCreateRequest) -> StoredSession:
    now = time.time()
    timeout = request.timeout_minutes or TIMEOUT_DEFAULT_MINUTES
    return StoredSession(
        session_id=session_id,
        user_id=owner,
        client_id=request.client_id or "",
        session_type=request.session_type or "troubleshooting",
        timeout_minutes=timeout,
        created_at=now,
        last_activity_at=now,
        expires_at=now + timeout * 60,
        metadata=request.metadata,
    )


async def check_creation_rate(
    store: SessionStore,
    principal: Principal | None,
    address: str,
    *,
    limit: int,
    window_seconds: int,
) -> None:
    """429 with Retry-After past `limit` creations in a window: per address for anonymous
    callers, per user for authenticated ones (many users may share one address)."""
    who = f"user:{principal.user_id}" if principal is not None else f"addr:{address}"
    count, left = await store.count_creation(who, window_seconds, time.time())
    if count > limit:
        log.info("session.create_rate_limited", anonymous=principal is None, count=count)
        raise RateLimited(left, "Too many sessions created; retry later.")


async def open_session(
    store: SessionStore, principal: Principal | None, request: SessionCreateRequest
) -> SessionResponse:
    """Create a session, or resume the caller's active one of the same client_id."""
    owner = _owner(principal)
    if request.client_id:
        existing_id = await store.session_for_client(owner, request.client_id)
        if existing_id is not None:
            touched = await store.touch(existing_id, owner, time.time())
            if touched.status == "extended":
                session = await store.get(existing_id)
                if session is not None and session.user_id == owner:
                    log.info("session.resumed", session_id=session.session_id)
                    return session.to_response(resumed=True, message="Session resumed successfully")
    session = _new_session(str(uuid.uuid4()), owner, request)
    await store.create(session)
    log.info("session.created", session_id=session.session_id, anonymous=owner == ANONYMOUS)
    return session.to_response(message="Session created successfully")


async def open_login_session(
    store: SessionStore, principal: Principal, session_id: str, request: SessionCreateRequest
) -> SessionResponse:
    """Create the session a login named in its (auth service's) token's `sid`; a retry
    returns it again."""
    if principal.session_id != session_id:
        raise Forbidden("The token does not name this session.", code="SESSION_ID_MISMATCH")
    existing = await store.get(session_id)
    if existing is not None:
        if existing.user_id != principal.user_id:
            raise NotFound(NOT_FOUND, code="SESSION_NOT_FOUND")
        return existing.to_response()
    session = _new_session(session_id, principal.user_id, request)
    await store.create(session)
    log.info("session.created", session_id=session_id, login=True)
    return session.to_response(message="Session created successfully")


async def bind_session(
    store: SessionStore, principal: Principal, session_id: str
) -> SessionResponse:
    """Bind an anonymous session to the caller (at login); 404 if gone or someone else's."""
    if not await store.bind(session_id, principal.user_id, time.time()):
        raise NotFound(NOT_FOUND, code="SESSION_NOT_FOUND")
    session = await store.get(session_id)
    if session is None or session.user_id != principal.user_id:
        raise NotFound(NOT_FOUND, code="SESSION_NOT_FOUND")
    log.info("session.bound", session_id=session_id)
    return session.to_response()


async def get_session(
    store: SessionStore, principal: Principal, session_id: str
) -> SessionResponse:
    session = await store.get(session_id)
    if session is None or session.user_id != principal.user_id:
        raise NotFound(NOT_FOUND, code="SESSION_NOT_FOUND")
    return session.to_response()


async def list_sessions(
    store: SessionStore, principal: Principal, *, limit: int, offset: int
) -> SessionListResponse:
    """The caller's active sessions, most recently active first."""
    ids = await store.live_ids_of(principal.user_id, time.time())
    sessions = await store.many(principal.user_id, ids)
    sessions.sort(key=lambda s: s.last_activity_at, reverse=True)
    page = sessions[offset : offset + limit]
    return SessionListResponse(
        sessions=[s.to_response() for s in page],
        total_count=len(sessions),
        limit=limit,
        offset=offset,
        has_more=offset + len(page) < len(sessions),
    )


async def heartbeat(store: SessionStore, principal: Principal, session_id: str) -> SessionResponse:
    """Extend the session's TTL; 401 SESSION_EXPIRED once the caller's session is gone.

    A signed-in caller's heartbeat on a live *anonymous* session binds it to them: the
    real extension opens its session without a token at every start, also when it is
    still logged in, and then keeps that session alive with its token.
    """
    now = time.time()
    touched = await store.touch(session_id, principal.user_id, now)
    if touched.status == "expired":
        raise SessionExpired()
    if touched.status == "unknown":
        if principal.is_service or not await store.bind(session_id, principal.user_id, now):
            # Gone (ended, expired past the tombstone, never existed, or another user's:
            # one answer for all): the client opens a new session and retries once.
            raise SessionExpired()
        log.info("session.bound", session_id=session_id, via="heartbeat")
    session = await store.get(session_id)
    if session is None or session.user_id != principal.user_id:
        raise SessionExpired()  # expired or ended between the two calls
    return session.to_response()


async def end_session(store: SessionStore, principal: Principal, session_id: str) -> None:
    if not await store.delete(session_id, principal.user_id):
        raise NotFound(NOT_FOUND, code="SESSION_NOT_FOUND")
    log.info("session.ended", session_id=session_id)


async def end_all_sessions(store: SessionStore, principal: Principal) -> SessionsEndedResponse:
    """End every session of the caller (logout of all sessions)."""
    ids = await store.live_ids_of(principal.user_id, time.time())
    ended = 0
    for sid in ids:
        if await store.delete(sid, principal.user_id):
            ended += 1
    log.info("session.ended_all", count=ended)
    return SessionsEndedResponse(ended_sessions=ended)
