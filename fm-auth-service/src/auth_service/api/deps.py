"""Dependency aliases of the auth service's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.config import Settings
from auth_service.flows import AuthContext
from fm_common.client_address import client_address
from fm_common.db import session_dependency


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_context(request: Request) -> AuthContext:
    ctx: AuthContext = request.app.state.auth
    return ctx


def get_client_address(request: Request) -> str:
    return client_address(request, get_settings(request).trusted_proxies)


def get_bind_session_id(
    x_session_id: Annotated[str | None, Header()] = None,
) -> str | None:
    return x_session_id or None


SettingsDep = Annotated[Settings, Depends(get_settings)]
ContextDep = Annotated[AuthContext, Depends(get_context)]
# scope="function": commit before the answer is sent, so a client that is told "created"
# can read what was created with its very next request.
DbDep = Annotated[AsyncSession, Depends(session_dependency, scope="function")]
ClientAddress = Annotated[str, Depends(get_client_address)]
BindSessionId = Annotated[str | None, Depends(get_bind_session_id)]
