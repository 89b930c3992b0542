"""The provider chain from FM_AGENT_PROVIDERS; keys stay secret."""

from __future__ import annotations

import json

import pytest

from agent_service.config import Settings
from fm_common.settings import load_settings


def test_providers_are_read_from_json_in_failover_order(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = [
        {"name": "main", "kind": "anthropic", "model": "claude-x", "api_key": "sk-secret-1"},
        {
            "name": "local",
            "kind": "openai_compatible",
            "model": "llama3",
            "base_url": "http://h/v1",
        },
    ]
    monkeypatch.setenv("FM_AGENT_PROVIDERS", json.dumps(chain))
    settings = load_settings(Settings)
    assert [p.name for p in settings.providers] == ["main", "local"]
    assert settings.providers[0].api_key is not None
    assert settings.providers[0].api_key.get_secret_value() == "sk-secret-1"
    assert "sk-secret-1" not in json.dumps(settings.redacted(), default=str)
    assert "sk-secret-1" not in repr(settings)


def test_an_unknown_provider_kind_stops_the_service_with_a_clear_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "FM_AGENT_PROVIDERS", json.dumps([{"name": "x", "kind": "nope", "model": "m"}])
    )
    with pytest.raises(SystemExit) as err:
        load_settings(Settings)
    assert "FM_AGENT_PROVIDERS" in str(err.value)


def test_no_providers_means_degraded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FM_AGENT_PROVIDERS", raising=False)
    assert load_settings(Settings).providers == []


def test_a_placeholder_redaction_key_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FM_ENVIRONMENT", "production")
    monkeypatch.setenv("FM_AGENT_REDACTION_KEY", "change-me")
    with pytest.raises(SystemExit) as err:
        load_settings(Settings)
    assert "FM_AGENT_REDACTION_KEY" in str(err.value)
    monkeypatch.setenv("FM_AGENT_REDACTION_KEY", "a-long-random-redaction-key-0123456789")
    settings = load_settings(Settings)
    assert settings.redaction_key.get_secret_value().startswith("a-long")
    assert settings.redaction_ttl_seconds == 0  # the map lives as long as the case
    assert "a-long-random" not in repr(settings)
