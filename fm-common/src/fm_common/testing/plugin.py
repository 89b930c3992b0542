"""pytest fixtures shared by every service's tests (loaded with -p fm_common.testing.plugin).

- `redis_server` (session): a real redis-server on a free port; `redis_url` gives each
  test a clean (flushed) database on it.
- `token_issuer` (session): signs test tokens; its JWKS is served over real HTTP.
- `sqlite_url`: a fresh SQLite file per test.
- `data_dir`: a fresh data dir per test.
- `postgres_server` (session) / `postgres_url`: a real PostgreSQL, a fresh database per test.
- `chroma_server` (session): a real Chroma server (`chroma run`) on a free port;
  `chroma_url` gives each test a clean server (every collection deleted).
- `s3_server` (session): a real S3-protocol server process (moto's server, started with
  `python -m moto.server`); `s3_storage` gives each test a new bucket on it and yields
  its FM_STORAGE_* settings as keyword arguments; `storage_settings` is those of the
  backend FM_TEST_STORAGE names (`{}` for local, the default; `s3_storage` for s3);
  `storage_env` (session) is the same as FM_* environment variables, one bucket for the
  session, for the processes a stack starts.

Every test and every stack a test starts share one ONNX export of the embedding model
(`FM_EMBEDDING_ONNX_DIR`, default `.cache/models` in the checkout), not one per data dir.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fm_common.testing.redis_server import RedisServer
from fm_common.testing.tokens import TokenIssuer


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001 (the hook signature)
    from fm_common.devstack import ROOT

    os.environ.setdefault("FM_EMBEDDING_ONNX_DIR", str(ROOT / ".cache" / "models"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def token_issuer() -> Iterator[TokenIssuer]:
    issuer = TokenIssuer().start()
    yield issuer
    issuer.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    # Imported here so services that never use Chroma do not load chromadb.
    from fm_common.testing.chroma import ChromaServer

    server = ChromaServer(tmp_path_factory.mktemp("chroma")).start()
    yield server
    server.stop()


@pytest.fixture
def chroma_url(chroma_server: object) -> str:
    from fm_common.testing.chroma import ChromaServer

    assert isinstance(chroma_server, ChromaServer)
    chroma_server.reset()
    return chroma_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A real PostgreSQL server for the session; skips loudly where it cannot start."""
    from fm_common.testing.postgres import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL UNAVAILABLE, PostgreSQL tests skipped: {exc}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: object) -> str:
    """A fresh, empty PostgreSQL database per test (postgresql+asyncpg:// URL)."""
    from fm_common.testing.postgres import PostgresServer

    assert isinstance(postgres_server, PostgresServer)
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[object]:
    from fm_common.testing.s3_server import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3_storage(s3_server: object) -> dict[str, Any]:
    """A new bucket on the S3 server; its settings (storage_url, endpoint, credentials)."""
    from fm_common.testing.s3_server import S3Server

    assert isinstance(s3_server, S3Server)
    return s3_server.settings(s3_server.create_bucket())


@pytest.fixture
def storage_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The blob store settings of the backend FM_TEST_STORAGE names (local: none)."""
    from fm_common.testing.s3_server import storage_backend

    if storage_backend() == "s3":
        return dict(request.getfixturevalue("s3_storage"))
    return {}


@pytest.fixture(scope="session")
def storage_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """FM_STORAGE_* variables of the backend FM_TEST_STORAGE names, for started processes."""
    from fm_common.testing.s3_server import S3Server, storage_backend

    if storage_backend() != "s3":
        return {}
    server = request.getfixturevalue("s3_server")
    assert isinstance(server, S3Server)
    return server.env(server.create_bucket())
