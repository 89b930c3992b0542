"""The evidence routes through the gateway with the real processes (as `make run` starts
them): the real auth, case and evidence services talking over real HTTP, answers checked
against the reference OpenAPI schemas the browser extension speaks."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator

import httpx
import jsonschema
import pytest

from fm_common.devstack import Stack
from fm_common.testing.shared import reference_openapi_path

LOG = b"".join(
    f"2024-05-01T10:00:{i % 60:02d}Z ERROR pool exhausted (active={i})\n".encode()
    for i in range(2000)
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("evidence-system")
    stack = Stack(
        data_dir=root / "data",
        ports=Stack.free_ports(),
        only={"redis", "auth", "session", "case", "evidence", "gateway"},
        log_dir=root / "logs",
        extra_env={"FM_AUTH_BCRYPT_ROUNDS": "4", "FM_RETRY_AFTER_SECONDS": "5"},
    )
    try:
        stack.start(timeout=180)
    except Exception:
        stack.stop()
        raise
    yield stack
    stack.stop()


def _register(gateway: str) -> dict[str, str]:
    resp = httpx.post(
        f"{gateway}/api/v1/auth/register",
        json={"username": f"ev_{uuid.uuid4().hex[:10]}", "password": "evidence-pass-1"},
        timeout=30,
    )
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _validate(instance: object, schema_name: str) -> None:
    spec = json.loads(reference_openapi_path().read_text())
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    jsonschema.validate(instance, schema)


def _new_case(client: httpx.Client, headers: dict[str, str]) -> str:
    resp = client.post("/api/v1/cases", json={"title": None, "priority": "low"}, headers=headers)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["case_id"])


def test_upload_list_read_download_through_gateway(stack: Stack):
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        me = _register(stack.gateway_url)
        case_id = _new_case(client, me)
        up = client.post(
            "/api/v1/evidence",
            data={"case_id": case_id, "description": "api pods"},
            files={"file": ("../../var/log/api.log", LOG, "text/plain")},
            headers=me,
        )
        assert up.status_code == 201, up.text
        file = up.json()
        assert file["filename"] == "api.log"
        assert file["source_type"] == "logs"
        assert file["content_hash"] == hashlib.sha256(LOG).hexdigest()

        listed = client.get(f"/api/v1/cases/{case_id}/uploaded-files", headers=me)
        assert listed.status_code == 200
        _validate(listed.json(), "UploadedFilesList")
        assert [f["file_id"] for f in listed.json()["files"]] == [file["file_id"]]

        details = client.get(
            f"/api/v1/cases/{case_id}/uploaded-files/{file['file_id']}", headers=me
        )
        assert details.status_code == 200
        _validate(details.json(), "UploadedFileDetailsResponse")

        content = client.get(f"/api/v1/evidence/{file['file_id']}/content", headers=me)
        assert content.status_code == 200
        assert content.content == LOG
        assert content.headers["x-content-type-options"] == "nosniff"
        assert content.headers["content-disposition"].startswith("attachment")

        transition = client.post(
            f"/api/v1/cases/{case_id}/transition",
            json={"to_state": "investigating"},
            headers=me,
        )
        assert transition.status_code == 200, transition.text
        again = client.get(f"/api/v1/evidence/{file['file_id']}", headers=me)
        assert again.json() == file


def test_second_user_gets_404_everywhere_through_gateway(stack: Stack):
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        me, other = _register(stack.gateway_url), _register(stack.gateway_url)
        case_id = _new_case(client, me)
        fid = client.post(
            "/api/v1/evidence",
            data={"case_id": case_id},
            files={"file": ("a.log", LOG, "text/plain")},
            headers=me,
        ).json()["file_id"]
        answers = [
            client.get(f"/api/v1/evidence/{fid}", headers=other),
            client.get(f"/api/v1/evidence/{fid}/content", headers=other),
            client.delete(f"/api/v1/evidence/{fid}", headers=other),
            client.get(f"/api/v1/cases/{case_id}/uploaded-files", headers=other),
            client.get(f"/api/v1/cases/{case_id}/uploaded-files/{fid}", headers=other),
            client.post(
                "/api/v1/evidence",
                data={"case_id": case_id},
                files={"file": ("b.log", b"other user's line\n", "text/plain")},
                headers=other,
            ),
        ]
        assert [r.status_code for r in answers] == [404] * len(answers)
        assert client.get(f"/api/v1/evidence/{fid}", headers=me).status_code == 200


def test_case_service_down_gives_503_with_retry_after(stack: Stack):
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        me = _register(stack.gateway_url)
        case_id = _new_case(client, me)
        stack.stop_process("case")
        try:
            resp = client.post(
                "/api/v1/evidence",
                data={"case_id": case_id},
                files={"file": ("a.log", LOG + b"down\n", "text/plain")},
                headers=me,
            )
            assert resp.status_code == 503
            assert int(resp.headers["retry-after"]) >= 1
            assert "Traceback" not in resp.text
        finally:
            stack.start_process("case")
            stack.wait_healthy(timeout=60)
        retry = client.post(
            "/api/v1/evidence",
            data={"case_id": case_id},
            files={"file": ("a.log", LOG + b"down\n", "text/plain")},
            headers=me,
        )
        assert retry.status_code == 201, retry.text
