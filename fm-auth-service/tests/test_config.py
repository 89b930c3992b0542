"""Settings of the auth service."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from auth_service.config import Settings


def test_dev_login_cannot_be_enabled_in_production():
    with pytest.raises(ValidationError, match="DEV_LOGIN"):
        Settings(environment="production", dev_login_enabled=True)
    assert Settings(environment="development", dev_login_enabled=True).dev_login_enabled


def test_shared_service_secret_is_read_from_fm_prefix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FM_SERVICE_CLIENT_SECRET", "from-the-shared-prefix-123")
    settings = Settings()
    assert settings.service_client_secret is not None
    assert settings.service_client_secret.get_secret_value() == "from-the-shared-prefix-123"
    assert "from-the-shared-prefix" not in repr(settings)


def test_admin_usernames_are_a_case_insensitive_comma_list():
    settings = Settings(admin_usernames="Admin, ops ,")
    assert settings.admin_username_set == frozenset({"admin", "ops"})


def test_placeholder_service_secret_is_refused_outside_development():
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(environment="production", service_client_secret="change-me")
