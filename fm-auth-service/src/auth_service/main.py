"""The auth service app: users, passwords, tokens and the JWKS."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth_service.api.routes import auth, internal
from auth_service.config import Settings
from auth_service.domain.tokens.issuer import TokenMinter
from auth_service.domain.tokens.keys import (
    KeyRing,
    load_or_create_signing_key,
    load_previous_key,
    previous_keys_from_pem,
    signing_key_from_pem,
)
from auth_service.domain.tokens.repository import TokenStore
from auth_service.domain.users.flows import AuthContext
from auth_service.domain.users.passwords import PasswordHasher
from auth_service.domain.users.service import bootstrap_admin
from auth_service.domain.users.throttle import LoginThrottle, RegistrationLimit
from fm_common.app import create_service_app
from fm_common.clients.session import SessionClient
from fm_common.db import open_database, ping
from fm_common.settings import load_settings

MIGRATIONS = Path(__file__).parent / "migrations"
# Answers that carry tokens or user data are never stored by a browser or proxy cache
# (RFC 6749 5.1); the JWKS and the public config stay cacheable.
_CACHEABLE = ("/api/v1/auth/.well-known/jwks.json", "/api/v1/auth/config")


class NoStore:
    """`Cache-Control: no-store` on every auth and token answer (issue 16 item 10)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in _CACHEABLE
            or not path.startswith(("/api/v1/auth/", "/internal/"))
        ):
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"cache-control", b"pragma")
                ]
                headers += [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_no_store)


def load_key_ring(settings: Settings) -> KeyRing:
    """The signing key and the retired ones, from the settings (ADR 0145)."""
    if settings.signing_key is not None:
        current = signing_key_from_pem(
            settings.signing_key.get_secret_value().encode(), "FM_AUTH_SIGNING_KEY"
        )
    else:
        current = load_or_create_signing_key(
            settings.effective_signing_key_path,
            create=settings.signing_key_path is None or settings.create_signing_key,
        )
    previous = tuple(load_previous_key(p) for p in settings.previous_key_paths)
    if settings.previous_keys is not None:
        previous += previous_keys_from_pem(
            settings.previous_keys.get_secret_value(), "FM_AUTH_PREVIOUS_KEYS"
        )
    return KeyRing(current=current, previous=previous)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)
    # The key is read (or made) before the app exists, so the app verifies its own tokens
    # with it instead of fetching its own JWKS over HTTP.
    keys = load_key_ring(settings)

    async def open_auth(app: FastAPI) -> None:
        """The minter, stores and limits on app.state.auth; the first admin when set."""
        minter = TokenMinter(
            keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl=settings.access_token_ttl_seconds,
            refresh_ttl=settings.refresh_token_ttl_seconds,
        )
        app.state.auth = AuthContext(
            settings=settings,
            minter=minter,
            store=TokenStore(
                app.state.redis,
                refresh_ttl=settings.refresh_token_ttl_seconds,
                access_ttl=settings.access_token_ttl_seconds,
            ),
            hasher=PasswordHasher(settings.bcrypt_rounds),
            throttle=LoginThrottle(
                app.state.redis,
                max_per_account=settings.login_max_failures_per_account,
                max_per_address=settings.login_max_failures_per_address,
                window_seconds=settings.login_failure_window_seconds,
            ),
            sessions=SessionClient(
                settings.session_url, app.state.http, retry_after=settings.retry_after_seconds
            ),
            registrations=RegistrationLimit(
                app.state.redis,
                max_per_address=settings.registrations_per_address,
                window_seconds=settings.registration_window_seconds,
            ),
        )
        if settings.bootstrap_admin_username and settings.bootstrap_admin_password:
            ctx = app.state.auth
            async with app.state.sessionmaker() as db:
                granted = await bootstrap_admin(
                    db,
                    ctx.hasher,
                    settings.bootstrap_admin_username,
                    settings.bootstrap_admin_password.get_secret_value(),
                )
                await db.commit()
            if granted:
                app.state.auth = dataclasses.replace(
                    ctx, bootstrap_admins=frozenset({settings.bootstrap_admin_username.lower()})
                )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_database(app, MIGRATIONS, settings.effective_database_url):
            await open_auth(app)
            yield

    def checks(app: FastAPI) -> dict:
        if not hasattr(app.state, "engine"):
            return {}
        return {"database": lambda: ping(app.state.engine)}

    app = create_service_app(
        settings,
        title="FaultMaven auth service",
        description="Users, passwords, access and refresh tokens, JWKS.",
        lifespan=lifespan,
        checks=checks,
        jwks=keys.jwks,
    )
    app.include_router(auth.router)
    app.include_router(internal.router)
    app.add_middleware(NoStore)
    return app
