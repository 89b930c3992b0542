"""Business rules of users: register, authenticate, dev users, profiles."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.domain.users.models import User
from auth_service.domain.users.passwords import PasswordHasher
from auth_service.domain.users.policy import check_password_strength
from auth_service.domain.users.repository import UserRepository
from auth_service.domain.users.throttle import LoginThrottle
from fm_common.auth import ROLE_ADMIN
from fm_common.contracts.auth import (
    DevLoginRequest,
    LoginRequest,
    RegisterRequest,
    UserInfoResponse,
    UserProfile,
)
from fm_common.db import utcnow
from fm_common.errors import Conflict, Forbidden, Unauthorized, Unprocessable

log = structlog.get_logger(__name__)

BAD_CREDENTIALS = "Invalid username or password."


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def roles_of(user: User, admin_usernames: frozenset[str]) -> list[str]:
    roles = ["user"]
    if user.username_key in admin_usernames:
        roles.append(ROLE_ADMIN)
    return roles


def profile(user: User, admin_usernames: frozenset[str]) -> UserProfile:
    return UserProfile(
        user_id=user.id,
        username=user.username,
        email=user.email or "",
        display_name=user.display_name,
        created_at=_iso(user.created_at) or "",
        is_dev_user=user.is_dev_user,
        roles=roles_of(user, admin_usernames),
    )


def user_info(user: User, admin_usernames: frozenset[str]) -> UserInfoResponse:
    return UserInfoResponse(
        **profile(user, admin_usernames).model_dump(), last_login=_iso(user.last_login_at)
    )


async def register_user(
    db: AsyncSession,
    hasher: PasswordHasher,
    body: RegisterRequest,
    *,
    enabled: bool,
    min_length: int = 8,
    min_score: int = 0,
) -> User:
    """Create a user (flushed, not committed); 409 on a taken username or email, 422
    WEAK_PASSWORD for a password the policy refuses."""
    if not enabled:
        raise Forbidden("Registration is turned off.", code="REGISTRATION_DISABLED")
    check_password_strength(
        body.password,
        min_length=min_length,
        min_score=min_score,
        user_inputs=[body.username, body.email or "", body.display_name or ""],
    )
    name_taken, email_taken = await UserRepository(db).taken(body.username, body.email)
    if name_taken:
        raise Conflict("That username is already taken.", code="USERNAME_TAKEN")
    if email_taken:
        raise Conflict("That email is already registered.", code="EMAIL_TAKEN")
    now = utcnow()
    user = User(
        id=str(uuid.uuid4()),
        username=body.username,
        username_key=body.username.lower(),
        email=body.email,
        email_key=body.email.lower() if body.email else None,
        display_name=(body.display_name or "").strip() or body.username,
        password_hash=await hasher.hash(body.password),
        is_dev_user=False,
        is_active=True,
        created_at=now,
        updated_at=now,
        last_login_at=now,
    )
    await UserRepository(db).add(user)
    log.info("auth.user_registered", user_id=user.id)
    return user


async def authenticate(
    db: AsyncSession,
    hasher: PasswordHasher,
    throttle: LoginThrottle,
    body: LoginRequest,
    address: str,
) -> User:
    """The user whose username or email and password match; one 401 for every miss."""
    identifier = body.username.strip()
    if "@" in identifier:
        user = await UserRepository(db).by_email(identifier)
    else:
        user = await UserRepository(db).by_username(identifier)
    account = user.id if user is not None else identifier.lower()
    await throttle.check(account, address)
    ok = await hasher.verify(body.password, user.password_hash if user is not None else None)
    if user is None or not ok or not user.is_active:
        await throttle.record_failure(account, address)
        log.info("auth.login_failed", known_account=user is not None)
        raise Unauthorized(BAD_CREDENTIALS, code="INVALID_CREDENTIALS")
    await throttle.clear_account(account)
    user.last_login_at = utcnow()
    return user


_NOT_USERNAME = re.compile(r"[^A-Za-z0-9._-]")


async def bootstrap_admin(
    db: AsyncSession, hasher: PasswordHasher, username: str, password: str
) -> bool:
    """The first admin, from the operator's settings (issue 16 item 7: whoever first
    registered the name `admin` became admin). Creates the account with that password
    when it does not exist; an existing account is made admin only when that password
    is its own (someone who registered the name first gets nothing). True when granted."""
    user = await UserRepository(db).by_username(username)
    if user is None:
        now = utcnow()
        user = User(
            id=str(uuid.uuid4()),
            username=username,
            username_key=username.lower(),
            email=None,
            email_key=None,
            display_name=username,
            password_hash=await hasher.hash(password),
            is_dev_user=False,
            is_active=True,
            created_at=now,
            updated_at=now,
            last_login_at=None,
        )
        try:
            await UserRepository(db).add(user)
        except Conflict:
            # Another replica starting at the same time created it first (one database,
            # several auth replicas: ADR 0145); theirs is checked like any existing one.
            found = await UserRepository(db).by_username(username)
            if found is None:
                raise
            user = found
        else:
            log.info("auth.bootstrap_admin_created", user_id=user.id)
            return True
    if user.password_hash and await hasher.verify(password, user.password_hash):
        return True
    log.error(
        "auth.bootstrap_admin_refused",
        user_id=user.id,
        reason="the account exists with another password; it is not made admin",
    )
    return False


async def dev_user(db: AsyncSession, body: DevLoginRequest) -> User:
    """The dev-login user named by username or email, created on first use."""
    identifier = body.username.strip()
    email = body.email
    if "@" in identifier:
        email = email or identifier
        username = _NOT_USERNAME.sub("-", identifier.split("@", 1)[0]).strip(".-_")
    else:
        username = identifier
    user = await UserRepository(db).by_email(email) if email else None
    user = user or await UserRepository(db).by_username(username)
    if user is None:
        if len(username) < 3 or _NOT_USERNAME.search(username):
            raise Unprocessable(
                "The username must be 3-50 letters, digits, dots, dashes or underscores.",
                code="INVALID_USERNAME",
            )
        now = utcnow()
        user = User(
            id=str(uuid.uuid4()),
            username=username,
            username_key=username.lower(),
            email=email or f"{username.lower()}@faultmaven.local",
            email_key=(email or f"{username.lower()}@faultmaven.local").lower(),
            display_name=(body.display_name or "").strip() or username,
            password_hash=None,
            is_dev_user=True,
            is_active=True,
            created_at=now,
            updated_at=now,
        )
        await UserRepository(db).add(user)
        log.info("auth.dev_user_created", user_id=user.id)
    user.last_login_at = utcnow()
    return user


async def current_user(db: AsyncSession, user_id: str) -> User:
    """The token's user; 401 when the account no longer exists or is disabled."""
    user = await UserRepository(db).get(user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account no longer exists.", code="ACCOUNT_DISABLED")
    return user
