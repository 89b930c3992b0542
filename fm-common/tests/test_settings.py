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


class _Sql(BaseServiceSettings):
    service_name: ClassVar[str] = "sql"
    uses_database: ClassVar[bool] = True
    model_config = SettingsConfigDict(env_prefix="FM_SQL_", extra="ignore", frozen=True)


def test_self_hosted_is_the_default_and_keeps_sqlite_in_the_data_dir():
    s = _Sql()
    assert s.deployment == "self-hosted"
    assert s.effective_database_url.startswith("sqlite+aiosqlite:///")


@pytest.mark.parametrize("url", [None, "sqlite+aiosqlite:////var/lib/fm/sql.db"])
def test_enterprise_refuses_sqlite_with_one_line(monkeypatch: pytest.MonkeyPatch, url):
    from fm_common.settings import load_settings

    monkeypatch.setenv("FM_DEPLOYMENT", "enterprise")
    if url:
        monkeypatch.setenv("FM_SQL_DATABASE_URL", url)
    with pytest.raises(SystemExit) as exc:
        load_settings(_Sql)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("invalid configuration: FM_DEPLOYMENT=enterprise")
    assert "FM_SQL_DATABASE_URL" in message


def test_enterprise_takes_postgresql_and_services_without_sql(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FM_DEPLOYMENT", "enterprise")
    monkeypatch.setenv("FM_DATABASE_URL", "postgresql+asyncpg://fm@db/fm")
    assert _Sql().deployment == "enterprise"
    monkeypatch.delenv("FM_DATABASE_URL")
    assert _Lists().local_state() == []  # no SQL: nothing to refuse


def test_an_unknown_deployment_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FM_DEPLOYMENT", "cluster")
    with pytest.raises(ValueError, match="self-hosted"):
        _Lists()


class _Files(BaseServiceSettings):
    service_name: ClassVar[str] = "files"
    uses_blobs: ClassVar[bool] = True
    model_config = SettingsConfigDict(env_prefix="FM_FILES_", extra="ignore", frozen=True)


def test_enterprise_refuses_local_blob_storage(monkeypatch: pytest.MonkeyPatch, tmp_path):
    from fm_common.settings import load_settings

    monkeypatch.setenv("FM_DEPLOYMENT", "enterprise")
    for local in ("", str(tmp_path), f"file://{tmp_path}"):
        monkeypatch.setenv("FM_STORAGE_URL", local)
        with pytest.raises(SystemExit, match="FM_STORAGE_URL is a local directory"):
            load_settings(_Files)
    monkeypatch.setenv("FM_STORAGE_URL", "s3://fm-bucket/prod")
    assert _Files().local_state() == []
