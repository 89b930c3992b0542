"""Fixtures of the evidence service tests.

The files go to the blob store FM_TEST_STORAGE names: the local directory (default) or a
bucket on a real S3-protocol server process (`s3`; fm_common.testing.s3_server).

The case service is the owner of cases; here a small stand-in of its
`GET /internal/v1/cases/{case_id}` runs over real HTTP (uvicorn on a free port) and
verifies the token like the real one does (a service token, minted by the test issuer),
so the evidence service's ownership check, its error mapping and its 503 path all go
through a real network hop.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from evidence_service.config import Settings
from evidence_service.main import create_app
from fm_common.auth import TokenVerifier
from fm_common.blobs import BlobStore, open_blob_store
from fm_common.errors import FMError
from fm_common.testing.servers import AppServer
from fm_common.testing.tokens import SERVICE_CLIENT_SECRET, TokenIssuer


@dataclass
class CaseStandIn:
    """Cases by id -> owner; answers like the case service (404 for another user's)."""

    issuer: TokenIssuer
    owners: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    port: int = 0
    _server: AppServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_case(self, owner_id: str) -> str:
        case_id = str(uuid.uuid4())
        self.owners[case_id] = owner_id
        return case_id

    def app(self) -> FastAPI:
        app = FastAPI()
        verifier = TokenVerifier(
            issuer=self.issuer.issuer, audience=self.issuer.audience, jwks=self.issuer.jwks
        )

        async def lookup(case_id: str, request: Request) -> JSONResponse:
            self.calls += 1
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            try:
                principal = await verifier.verify(token)
            except FMError as exc:
                return JSONResponse({"detail": exc.detail, "code": exc.code}, 401)
            if not principal.is_service:  # as the real route (ADR 0135)
                return JSONResponse({"detail": "Service only.", "code": "SERVICE_ONLY"}, 403)
            if self.owners.get(case_id) != principal.user_id:
                return JSONResponse({"detail": "Case not found.", "code": "NOT_FOUND"}, 404)
            return JSONResponse({"case": {"case_id": case_id}, "owner_id": principal.user_id})

        app.add_api_route("/internal/v1/cases/{case_id}", lookup, methods=["GET"])
        return app

    def start(self) -> CaseStandIn:
        self._server = AppServer(self.app(), lifespan="off").start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


@pytest.fixture(scope="session")
def case_service(token_issuer: TokenIssuer) -> Iterator[CaseStandIn]:
    standin = CaseStandIn(token_issuer).start()
    yield standin
    standin.stop()


def make_settings(
    *,
    redis_url: str,
    token_issuer: TokenIssuer,
    data_dir: Path,
    database_url: str,
    case_url: str,
    **overrides: Any,
) -> Settings:
    return Settings(
        environment="test",
        redis_url=redis_url,
        jwks_url=token_issuer.jwks_url,
        # The test issuer mints the service tokens of the case-ownership check.
        auth_url=token_issuer.url,
        service_client_secret=SERVICE_CLIENT_SECRET,
        data_dir=data_dir,
        database_url=database_url,
        case_url=case_url,
        retry_after_seconds=7,
        **overrides,
    )


@pytest.fixture
def settings(
    redis_url: str,
    token_issuer: TokenIssuer,
    data_dir: Path,
    sqlite_url: str,
    case_service: CaseStandIn,
    storage_settings: dict[str, Any],
) -> Settings:
    return make_settings(
        redis_url=redis_url,
        token_issuer=token_issuer,
        data_dir=data_dir,
        database_url=sqlite_url,
        case_url=case_service.url,
        max_file_bytes=1024 * 1024,
        **storage_settings,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://evidence") as c:
        yield c


@dataclass
class User:
    user_id: str
    headers: dict[str, str]
    case_id: str


def new_user(token_issuer: TokenIssuer, case_service: CaseStandIn) -> User:
    user_id = str(uuid.uuid4())
    return User(user_id, token_issuer.headers(user_id), case_service.add_case(user_id))


@pytest.fixture
def alice(token_issuer: TokenIssuer, case_service: CaseStandIn) -> User:
    return new_user(token_issuer, case_service)


@pytest.fixture
def bob(token_issuer: TokenIssuer, case_service: CaseStandIn) -> User:
    return new_user(token_issuer, case_service)


LOG_TEXT = (
    b"2024-05-01T10:00:00Z INFO api started on :8080\n"
    b"2024-05-01T10:00:05Z WARN slow query took 2300ms\n"
    b"2024-05-01T10:00:09Z ERROR upstream timeout talking to payments\n"
)

PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7"
    b"5\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)


@dataclass(frozen=True)
class Stored:
    """A blob of the evidence store: its key's last part and its bytes (None while it is
    an upload in flight)."""

    key: str
    blobs: BlobStore
    placed: bool

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    def read_bytes(self) -> bytes:
        return self.blobs.read(self.key)


def blob_store(settings: Settings) -> BlobStore:
    """The evidence service's store as it opens it (local dir or S3 bucket)."""
    return open_blob_store(settings, "evidence", local_root=settings.effective_storage_dir)


def stored(settings: Settings) -> list[Stored]:
    """Every file in the evidence store of `settings`: placed files and uploads in flight."""
    blobs = blob_store(settings)
    placed = [Stored(b.key, blobs, True) for b in blobs.list_blobs("files/")]
    return placed + [Stored(key, blobs, False) for key in blobs.pending()]


@pytest.fixture
def stored_in() -> Callable[[Settings], list[Stored]]:
    """`stored_in(settings)`: every file in that evidence store (placed and in flight)."""
    return stored


@pytest.fixture
def blobs_of() -> Callable[[Settings], BlobStore]:
    """`blobs_of(settings)`: the evidence service's blob store for those settings."""
    return blob_store


@dataclass
class Kit:
    """Helpers of the API tests: uploads as a user, what is on disk."""

    client: httpx.AsyncClient
    settings: Settings
    log_text: bytes = LOG_TEXT
    png: bytes = PNG_BYTES

    async def upload(
        self,
        user: User,
        content: bytes = LOG_TEXT,
        filename: str = "app.log",
        *,
        case_id: str | None = None,
        **fields: str,
    ) -> httpx.Response:
        data = {"case_id": case_id or user.case_id, **fields}
        return await self.client.post(
            "/api/v1/evidence",
            data=data,
            files={"file": (filename, content, "application/octet-stream")},
            headers=user.headers,
        )

    async def upload_raw(
        self, user: User, filename: bytes, content: bytes, case_id: str | None = None
    ) -> httpx.Response:
        """An upload whose multipart body is written by hand (raw bytes in the name)."""
        boundary = "rawboundary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="case_id"\r\n\r\n'
            f"{case_id or user.case_id}\r\n--{boundary}\r\n".encode()
            + b'Content-Disposition: form-data; name="file"; filename="'
            + filename
            + b'"\r\n\r\n'
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return await self.client.post(
            "/api/v1/evidence",
            content=body,
            headers={**user.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )

    def stored(self) -> list[Stored]:
        """Every file in the store: placed files and uploads in flight."""
        return stored(self.settings)

    async def rows(self) -> int:
        from sqlalchemy import text

        from fm_common.db import create_engine

        engine = create_engine(self.settings.effective_database_url)
        try:
            async with engine.connect() as conn:
                return int(
                    (await conn.execute(text("SELECT count(*) FROM evidence_files"))).scalar()
                )
        finally:
            await engine.dispose()


@pytest.fixture
def kit(client: httpx.AsyncClient, settings: Settings) -> Kit:
    return Kit(client, settings)


@pytest.fixture
def reference() -> Callable[[str, Any], None]:
    """`reference("UploadedFilesList", body)` validates against the reference schema."""
    from fm_common.testing.reference import assert_matches

    return assert_matches
