"""Dependency aliases of the session service's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fm_common.client_address import client_address
from session_service.config import Settings
from session_service.domain.sessions.repository import SessionStore


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.session_store
    return store


def get_client_address(request: Request) -> str:
    return client_address(request, get_settings(request).trusted_proxies)


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[SessionStore, Depends(get_store)]
ClientAddress = Annotated[str, Depends(get_client_address)]
