"""Dependency aliases of the auth service's routes."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from fastapi import Depends, Header, Request

from auth_service.config import Settings
from auth_service.domain.users.flows import AuthContext
from fm_common.client_address import client_address
from fm_common.db import DbSession


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
# Committed before the response is sent (see fm_common.db.DbSession).
SessionDep: TypeAlias = DbSession
ClientAddress = Annotated[str, Depends(get_client_address)]
BindSessionId = Annotated[str | None, Depends(get_bind_session_id)]
