"""A `case` upload is checked against the real case service, with the knowledge service's
service token acting for the caller (minted by the test issuer, standing in for auth)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from fm_common.devstack import Stack
from fm_common.testing.tokens import SERVICE_CLIENT_SECRET, TokenIssuer


@pytest.fixture(scope="module")
def case_stack(
    tmp_path_factory: pytest.TempPathFactory, token_issuer: TokenIssuer
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("case-stack")
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(),
        only={"redis", "chroma", "case", "knowledge"},
        log_dir=root / "logs",
        extra_env={
            "FM_JWKS_URL": token_issuer.jwks_url,
            "FM_KNOWLEDGE_PRELOAD_MODEL": "false",
            # The case service's internal route takes service tokens only (ADR 0135).
            "FM_AUTH_URL": token_issuer.url,
            "FM_SERVICE_CLIENT_SECRET": SERVICE_CLIENT_SECRET,
        },
    )
    if "case" not in {s.name for s in stack.selected()}:
        pytest.skip("the case service is not installed")
    try:
        stack.start(timeout=120)
    except Exception:
        stack.stop()
        raise
    yield stack
    stack.stop()


def test_case_upload_needs_a_case_of_the_caller(
    case_stack: Stack, token_issuer: TokenIssuer
) -> None:
    alice, bob = f"alice-{uuid.uuid4()}", f"bob-{uuid.uuid4()}"
    with httpx.Client(base_url=case_stack.url("case"), timeout=30) as cases:
        resp = cases.post(
            "/api/v1/cases",
            headers={**token_issuer.headers(alice), "Idempotency-Key": uuid.uuid4().hex},
            json={"title": "checkout is down", "priority": "low"},
        )
        assert resp.status_code in (200, 201), resp.text
        case_id = resp.json()["case_id"]

    def upload(user: str, target: str) -> httpx.Response:
        with httpx.Client(base_url=case_stack.url("knowledge"), timeout=30) as client:
            return client.post(
                "/api/v1/knowledge/documents",
                headers=token_issuer.headers(user),
                data={
                    "title": "notes",
                    "document_type": "note",
                    "scope": "case",
                    "case_id": target,
                },
                files={"file": ("notes.txt", b"the checkout pods were OOMKilled", "text/plain")},
            )

    assert upload(alice, case_id).status_code == 202
    assert upload(bob, case_id).status_code == 404
    assert upload(alice, str(uuid.uuid4())).status_code == 404
