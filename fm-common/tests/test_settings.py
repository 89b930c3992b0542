"""List settings (StrList / StrTuple) and ../shared found by fm_common.testing.shared."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic_settings import SettingsConfigDict

from fm_common.settings import BaseServiceSettings, StrList, StrTuple
from fm_common.testing.shared import REPO, SHARED, shared_path


class _Lists(BaseServiceSettings):
    service_name: ClassVar[str] = "lists"
    model_config = SettingsConfigDict(env_prefix="FM_LISTS_", extra="ignore", frozen=True)

    names: StrList = ["a"]
    kinds: StrTuple = ("x",)


def test_list_settings_read_commas_or_json(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FM_LISTS_NAMES", " one, two ,, three ")
    monkeypatch.setenv("FM_LISTS_KINDS", '["p", "q"]')
    s = _Lists()
    assert s.names == ["one", "two", "three"]
    assert s.kinds == ("p", "q")


def test_list_settings_keep_their_defaults_and_take_an_empty_list(
    monkeypatch: pytest.MonkeyPatch,
):
    assert _Lists().names == ["a"]
    monkeypatch.setenv("FM_LISTS_KINDS", "")
    assert _Lists().kinds == ()


def test_a_missing_shared_path_skips_naming_it():
    with pytest.raises(pytest.skip.Exception, match="no-such-folder"):
        shared_path("no-such-folder")


def test_shared_is_looked_for_beside_the_repository_root():
    assert (REPO / "pyproject.toml").is_file()
    assert (REPO / "fm-common").is_dir()
    assert SHARED == REPO.parent / "shared"
