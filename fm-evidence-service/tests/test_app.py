"""The app as a whole: readiness, metrics, settings, and migrations matching the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import evidence_service
from evidence_service.config import Settings
from evidence_service.domain.models import Base
from evidence_service.main import create_app
from fm_common.db import create_engine, migrate

MIGRATIONS = Path(evidence_service.__file__).parent / "migrations"


async def test_ready_reports_database_storage_and_redis(client):
    resp = await client.get("/ready")
    assert resp.status_code == 200
    checks = resp.json()["checks"]
    assert {checks[k]["status"] for k in ("database", "storage", "redis")} == {"healthy"}


async def test_ready_is_503_when_the_store_is_gone(client, app, settings):
    if settings.storage_location.scheme == "s3":
        bucket = settings.storage_location.bucket
        app.state.file_store.blobs.client.delete_bucket(Bucket=bucket)
    else:
        (settings.effective_storage_dir / "tmp").rmdir()
    resp = await client.get("/ready")
    assert resp.status_code == 503
    assert resp.json()["checks"]["storage"]["status"] != "healthy"


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_uploads(kit, alice, client):
    before = (await client.get("/metrics")).text
    await kit.upload(alice)
    await kit.upload(alice)
    resp = await client.get("/metrics")
    assert 'route="/api/v1/evidence",service="evidence",status="201"' in resp.text
    stored = 'fm_evidence_uploads_total{outcome="stored"}'
    duplicate = 'fm_evidence_uploads_total{outcome="duplicate"}'
    assert _sample(resp.text, stored) == _sample(before, stored) + 1
    assert _sample(resp.text, duplicate) == _sample(before, duplicate) + 1
    size = "fm_evidence_uploaded_bytes_total"
    assert _sample(resp.text, size) == _sample(before, size) + len(kit.log_text)


def test_settings_read_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FM_EVIDENCE_MAX_FILE_BYTES", "1234")
    monkeypatch.setenv("FM_EVIDENCE_ALLOWED_EXTENSIONS", '[".log", ".png"]')
    monkeypatch.setenv("FM_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.max_file_bytes == 1234
    assert settings.allowed_extensions == (".log", ".png")
    assert settings.effective_storage_dir == tmp_path / "evidence"
    assert settings.effective_database_url.endswith(f"{tmp_path}/evidence.db")


def test_list_settings_accept_comma_separated_values(monkeypatch):
    monkeypatch.setenv("FM_EVIDENCE_ALLOWED_EXTENSIONS", ".LOG, txt,.png")
    monkeypatch.setenv("FM_EVIDENCE_ALLOWED_IMAGE_TYPES", "image/png")
    monkeypatch.setenv("FM_EVIDENCE_STORAGE_DIR", "")
    monkeypatch.setenv("FM_DATA_DIR", "/srv/fm")
    settings = Settings()
    assert settings.effective_storage_dir == Path("/srv/fm/evidence")
    assert settings.allowed_extensions == (".log", ".txt", ".png")
    assert settings.allowed_image_types == ("image/png",)


def test_bad_setting_stops_with_one_clear_line(monkeypatch):
    monkeypatch.setenv("FM_EVIDENCE_MAX_FILE_BYTES", "-5")
    with pytest.raises(SystemExit) as info:
        create_app()
    assert "FM_EVIDENCE_MAX_FILE_BYTES" in str(info.value)


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    try:
        return request.getfixturevalue("postgres_url")
    except pytest.FixtureLookupError:
        pytest.skip("PostgreSQL SKIPPED: the `postgres_url` fixture is missing")


async def test_migrations_match_the_models(any_db_url):
    await migrate(MIGRATIONS, any_db_url)
    engine = create_engine(any_db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []
