"""Gateway settings: bad values stop the process at start with one line naming them."""

from __future__ import annotations

import pytest

from fm_common.settings import load_settings
from gateway.config import Settings


def test_a_wildcard_origin_is_refused_at_start(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FM_GATEWAY_CORS_ORIGINS", "chrome-extension://*,*")
    with pytest.raises(SystemExit, match="FM_GATEWAY_CORS_ORIGINS"):
        load_settings(Settings)


def test_an_unknown_critical_component_is_refused_at_start(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FM_GATEWAY_CRITICAL_COMPONENTS", "reddis,auth")
    with pytest.raises(SystemExit, match="FM_GATEWAY_CRITICAL_COMPONENTS"):
        load_settings(Settings)


def test_list_settings_take_commas_or_json(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FM_GATEWAY_CORS_ORIGINS", "https://a.example, moz-extension://*")
    monkeypatch.setenv("FM_GATEWAY_ALLOWED_EXTENSIONS", '[".md", ".log"]')
    settings = load_settings(Settings)
    assert settings.cors_origins == ["https://a.example", "moz-extension://*"]
    assert settings.allowed_extensions == [".md", ".log"]
