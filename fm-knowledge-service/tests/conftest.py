"""Fixtures of the knowledge tests.

`kstack` (session): the real processes as `make run` starts them (Redis, the Chroma
server, the knowledge service, a Celery worker) on free ports, trusting the test token
issuer. `runbooks` (session): the prometheus-operator runbooks uploaded once through
the API as global documents and processed by the worker; every search test shares them.
With FM_TEST_STORAGE=s3 the stack stores its files in a bucket of a real S3-protocol
server process (fm_common.testing.s3_server) instead of its data dir.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fm_common.devstack import Stack
from fm_common.testing.shared import SHARED
from fm_common.testing.tokens import TokenIssuer

RUNBOOKS = SHARED / "data" / "runbooks" / "prometheus-operator"
ADMIN_ID = "admin-0000-0000-0000-000000000001"


def runbook_files() -> list[Path]:
    return sorted(p for p in RUNBOOKS.rglob("*.md") if p.name != "SOURCE.md")


@pytest.fixture(scope="session")
def kstack(
    tmp_path_factory: pytest.TempPathFactory, token_issuer: TokenIssuer, storage_env: dict[str, str]
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("kstack")
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(),
        only={"redis", "chroma", "knowledge", "worker"},
        log_dir=root / "logs",
        extra_env={
            "FM_JWKS_URL": token_issuer.jwks_url,
            "FM_LOG_FORMAT": "json",
            "FM_WORKER_CONCURRENCY": "1",
            # No case service in this stack: case ownership is proven by the local
            # record of who first wrote to the case (tests/system covers the real check).
            "FM_KNOWLEDGE_VERIFY_CASE_OWNERSHIP": "false",
            # Small embedding groups, so a worker can be killed between two of them.
            "FM_KNOWLEDGE_EMBED_BATCH_SIZE": "8",
            "HF_HUB_OFFLINE": "1",
            # FM_TEST_STORAGE=s3: the service and the worker share a bucket, not a disk.
            **storage_env,
        },
    )
    try:
        stack.start(timeout=120)
    except Exception:
        stack.stop()
        raise
    stack.root = root  # type: ignore[attr-defined]
    yield stack
    stack.stop()


def kurl(stack: Stack) -> str:
    return stack.url("knowledge")


def upload(
    client: httpx.Client,
    headers: dict[str, str],
    name: str,
    data: bytes,
    *,
    title: str | None = None,
    scope: str = "personal",
    document_type: str = "runbook",
    **form: str,
) -> httpx.Response:
    fields = {"title": title or name, "document_type": document_type, "scope": scope, **form}
    return client.post(
        "/api/v1/knowledge/documents",
        headers=headers,
        data=fields,
        files={"file": (name, data, "application/octet-stream")},
    )


def wait_documents(
    client: httpx.Client, headers: dict[str, str], ids: list[str], timeout: float = 300
) -> dict[str, dict[str, Any]]:
    """Poll until every document left `processing`; their final bodies.

    One document is polled by id; many through the list (a few requests per round).
    """
    deadline = time.monotonic() + timeout
    wanted = set(ids)
    while True:
        if len(ids) == 1:
            resp = client.get(f"/api/v1/knowledge/documents/{ids[0]}", headers=headers)
            seen = {ids[0]: resp.json()}
        else:
            seen, offset = {}, 0
            while True:
                page = client.get(
                    "/api/v1/knowledge/documents",
                    headers=headers,
                    params={"limit": 100, "offset": offset},
                ).json()
                seen.update(
                    {d["document_id"]: d for d in page["documents"] if d["document_id"] in wanted}
                )
                if not page["has_more"]:
                    break
                offset += 100
        if len(seen) == len(wanted) and all(d["status"] != "processing" for d in seen.values()):
            return seen
        if time.monotonic() > deadline:
            pending = [
                i for i in wanted if seen.get(i, {}).get("status", "processing") == "processing"
            ]
            raise TimeoutError(f"{len(pending)} documents still processing")
        time.sleep(0.3)


@pytest.fixture(scope="session")
def runbooks(kstack: Stack, token_issuer: TokenIssuer) -> dict[str, str]:
    """Runbook file stem -> document id, all processed (global scope, uploaded by an admin)."""
    if not RUNBOOKS.is_dir():
        pytest.skip(f"the runbook corpus is not at {RUNBOOKS} (../shared/data of the repo)")
    files = runbook_files()
    limit = int(os.environ.get("FM_TEST_RUNBOOK_LIMIT", "0"))
    if limit:
        files = files[:limit]
    admin = token_issuer.headers(ADMIN_ID, roles=["user", "admin"], ttl=3600)
    ids: dict[str, str] = {}
    with httpx.Client(base_url=kurl(kstack), timeout=30) as client:
        for path in files:
            resp = upload(
                client,
                admin,
                path.name,
                path.read_bytes(),
                title=path.stem,
                scope="global",
                tags=f"runbook,{path.parent.name}",
                category=path.parent.name,
            )
            assert resp.status_code == 202, resp.text
            ids[path.stem] = resp.json()["document_id"]
        final = wait_documents(client, admin, list(ids.values()), timeout=600)
    failed = {k: v["error"] for k, v in final.items() if v["status"] != "processed"}
    assert not failed, failed
    return ids


class KnowledgeApi:
    """A small synchronous client of the running knowledge service for the tests."""

    def __init__(self, stack: Stack, issuer: TokenIssuer) -> None:
        self.stack = stack
        self.issuer = issuer
        self.client = httpx.Client(base_url=kurl(stack), timeout=60)

    def headers(self, user_id: str, admin: bool = False) -> dict[str, str]:
        roles = ["user", "admin"] if admin else ["user"]
        return self.issuer.headers(user_id, roles=roles, ttl=3600)

    def upload(self, user_id: str, name: str, data: bytes, **form: Any) -> httpx.Response:
        return upload(
            self.client, self.headers(user_id, form.pop("admin", False)), name, data, **form
        )

    def ingest(self, user_id: str, name: str, data: bytes, **form: Any) -> dict[str, Any]:
        """Upload and wait until processed or failed; the final document."""
        resp = self.upload(user_id, name, data, **form)
        assert resp.status_code == 202, resp.text
        doc_id = resp.json()["document_id"]
        return wait_documents(self.client, self.headers(user_id), [doc_id])[doc_id]

    def search(self, user_id: str, query: str, **body: Any) -> httpx.Response:
        return self.client.post(
            "/api/v1/knowledge/search", headers=self.headers(user_id), json={"query": query, **body}
        )

    def get(self, user_id: str, path: str) -> httpx.Response:
        return self.client.get(path, headers=self.headers(user_id))

    def delete(self, user_id: str, path: str) -> httpx.Response:
        return self.client.delete(path, headers=self.headers(user_id))

    def chroma_count(self, collection: str, document_id: str) -> tuple[int, int]:
        """(chunks of the document in the collection, distinct chunk indexes among them)."""
        import chromadb

        client = chromadb.HttpClient(host="127.0.0.1", port=self.stack.ports["chroma"])
        col = client.get_collection(collection, embedding_function=None)
        got = col.get(where={"document_id": document_id}, include=["metadatas"])
        indexes = {m["chunk_index"] for m in got["metadatas"]}
        return len(got["ids"]), len(indexes)


@pytest.fixture(scope="session")
def kapi(kstack: Stack, token_issuer: TokenIssuer) -> Iterator[KnowledgeApi]:
    api = KnowledgeApi(kstack, token_issuer)
    yield api
    api.client.close()


# -- PDFs made by hand: a text page, an encrypted one, a corrupt one, a decompression bomb.
def _pdf(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _page_pdf(stream: bytes, filters: bytes = b"") -> bytes:
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d %s>>\nstream\n" % (len(stream), filters) + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


class Pdfs:
    @staticmethod
    def text(text: str) -> bytes:
        lines = b"".join(
            b"(%s) Tj 0 -16 Td " % line.encode().replace(b"(", b"").replace(b")", b"")
            for line in text.splitlines()
        )
        return _page_pdf(b"BT /F1 12 Tf 72 720 Td " + lines + b"ET")

    @staticmethod
    def encrypted(text: str = "secret runbook") -> bytes:
        import io

        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(Pdfs.text(text))))
        writer.encrypt(user_password="s3cret", owner_password="owner", algorithm="AES-128")
        buf = io.BytesIO()
        writer.write(buf)
        return buf.getvalue()

    @staticmethod
    def corrupt() -> bytes:
        return b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\n\x00\xff garbage \x13\x37"

    @staticmethod
    def bomb(inflated_mb: int = 200) -> bytes:
        import zlib

        # Hundreds of MB of text-showing operators, compressed to well under a megabyte.
        block = b"(AAAAAAAAAAAAAAAA) Tj " * (1024 * 1024 // 22)
        comp = zlib.compressobj(9)
        parts = [comp.compress(b"BT /F1 12 Tf 72 720 Td ")]
        parts += [comp.compress(block) for _ in range(inflated_mb)]
        parts += [comp.compress(b"ET"), comp.flush()]
        return _page_pdf(b"".join(parts), b"/Filter /FlateDecode ")


@pytest.fixture(scope="session")
def pdfs() -> type[Pdfs]:
    return Pdfs
