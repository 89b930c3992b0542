"""POST /api/v1/evidence: stored, classified, deduplicated; bad input refused cleanly."""

from __future__ import annotations

import hashlib

import pytest


async def test_upload_stores_file_and_answers_201_with_api_shape(kit, alice):
    resp = await kit.upload(alice, description="api logs")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["filename"] == "app.log"
    assert body["size_bytes"] == len(kit.log_text)
    assert body["content_hash"] == hashlib.sha256(kit.log_text).hexdigest()
    assert body["case_id"] == alice.case_id
    assert body["source_type"] == "logs"
    assert body["content_type"] == "text/plain"
    assert body["description"] == "api logs"
    assert body["duplicate_of"] is None
    assert body["uploaded_at"].endswith(("Z", "+00:00"))
    [path] = kit.stored()
    assert path.name == body["file_id"]
    assert path.read_bytes() == kit.log_text


async def test_same_bytes_to_same_case_return_existing_file_as_duplicate(kit, alice):
    first = (await kit.upload(alice)).json()
    again = await kit.upload(alice, filename="renamed.log")
    assert again.status_code == 200
    assert again.json()["file_id"] == first["file_id"]
    assert again.json()["duplicate_of"] == first["file_id"]
    assert again.json()["filename"] == "app.log"
    assert len(kit.stored()) == 1
    assert await kit.rows() == 1


async def test_same_bytes_to_another_case_are_stored_again(kit, alice, case_service):
    other_case = case_service.add_case(alice.user_id)
    first = (await kit.upload(alice)).json()
    second = await kit.upload(alice, case_id=other_case)
    assert second.status_code == 201
    assert second.json()["file_id"] != first["file_id"]
    assert second.json()["duplicate_of"] is None
    assert len(kit.stored()) == 2


async def test_png_is_stored_as_image(kit, alice):
    resp = await kit.upload(alice, kit.png, "screen.png", upload_source="screenshot")
    assert resp.status_code == 201, resp.text
    assert resp.json()["source_type"] == "image"
    assert resp.json()["content_type"] == "image/png"
    assert resp.json()["upload_source"] == "screenshot"


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        ("metrics.prom", b"# HELP up ok\n# TYPE up gauge\nup{job=\"api\"} 1\nup{job=\"db\"} 0\n",
         "metrics"),
        ("cpu.csv", b"timestamp,cpu,mem\n1714557600,0.5,120\n1714557660,0.7,130\n"
         b"1714557720,0.9,128\n", "metrics"),
        ("values.yaml", b"replicas: 3\nimage:\n  tag: 1.2.3\n", "configuration"),
        ("settings", b"[server]\nport = 8080\nhost = 0.0.0.0\n", "configuration"),
        ("handler.py", b"import os\n\ndef handle(event):\n    return os.getenv('X')\n", "code"),
        ("notes.txt", b"The outage began after the deploy. Users saw errors.\n", "text"),
        ("syslog", b"May  1 10:00:00 host sshd[1]: Accepted key\n"
         b"May  1 10:00:01 host sshd[1]: session opened\n", "logs"),
    ],
)  # fmt: skip
async def test_source_type_is_classified_from_content(kit, alice, filename, content, expected):
    resp = await kit.upload(alice, content, filename)
    assert resp.status_code == 201, resp.text
    assert resp.json()["source_type"] == expected


async def test_path_traversal_filename_keeps_only_the_base_name(kit, alice):
    resp = await kit.upload(alice, b"root:x:0:0:root:/root:/bin/bash\n", "../../etc/passwd")
    assert resp.status_code == 201, resp.text
    assert resp.json()["filename"] == "passwd"
    [path] = kit.stored()
    file_id = resp.json()["file_id"]
    assert path.key == f"files/{file_id[:2]}/{file_id}"


async def test_control_characters_and_windows_paths_are_stripped_from_name(kit, alice):
    raw = "C:\\logs\\bad\x07\x1b[31m\u202ename.log".encode()
    resp = await kit.upload_raw(alice, raw, kit.log_text)
    assert resp.status_code == 201, resp.text
    assert resp.json()["filename"] == "bad[31mname.log"


async def test_long_filename_is_capped_keeping_extension(kit, alice):
    resp = await kit.upload(alice, filename="a" * 400 + ".log")
    assert resp.status_code == 201, resp.text
    name = resp.json()["filename"]
    assert name.endswith(".log")
    assert len(name.encode()) <= 200


async def test_oversize_upload_is_413_and_leaves_nothing(kit, alice):
    big = b"2024-05-01T10:00:00Z INFO x\n" * (kit.settings.max_file_bytes // 20)
    resp = await kit.upload(alice, big, "big.log")
    assert resp.status_code == 413
    assert resp.json()["code"] == "FILE_TOO_LARGE"
    assert kit.stored() == []
    assert await kit.rows() == 0


async def test_oversize_declared_length_is_refused_before_reading(kit, alice, client):
    read = 0

    async def body():
        nonlocal read
        for _ in range(100):
            read += 1
            yield b"x" * 65536

    resp = await client.post(
        "/api/v1/evidence",
        content=body(),
        headers={
            **alice.headers,
            "Content-Type": "multipart/form-data; boundary=abc",
            "Content-Length": str(kit.settings.max_file_bytes * 10),
        },
    )
    assert resp.status_code == 413
    assert read <= 1  # nothing of the body was consumed by the service
    assert kit.stored() == []


async def test_lying_extension_is_415_with_a_clear_message(kit, alice):
    zip_bytes = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 4
    resp = await kit.upload(alice, zip_bytes, "server.log")
    assert resp.status_code == 415
    assert resp.json()["code"] == "UNSUPPORTED_FILE_TYPE"
    assert "ZIP archive" in resp.json()["detail"]
    assert kit.stored() == []
    assert await kit.rows() == 0


async def test_jpeg_named_png_is_415(kit, alice):
    resp = await kit.upload(alice, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64, "a.png")
    assert resp.status_code == 415
    assert "JPEG" in resp.json()["detail"]


async def test_text_named_png_is_415(kit, alice):
    resp = await kit.upload(alice, b"just some text\n", "shot.png")
    assert resp.status_code == 415


async def test_binary_after_a_text_start_is_415_and_leaves_nothing(kit, alice):
    content = b"2024-05-01 INFO ok\n" * 1000 + b"\x00\x01\x02" * 10
    resp = await kit.upload(alice, content, "mixed.log")
    assert resp.status_code == 415
    assert kit.stored() == []


async def test_extension_not_allowed_is_415(kit, alice):
    resp = await kit.upload(alice, b"echo hi\n", "run.exe")
    assert resp.status_code == 415
    assert "'.exe'" in resp.json()["detail"]


async def test_client_content_type_is_ignored(kit, alice, client):
    resp = await client.post(
        "/api/v1/evidence",
        data={"case_id": alice.case_id},
        files={"file": ("image.png", kit.log_text, "image/png")},
        headers=alice.headers,
    )
    assert resp.status_code == 415


async def test_empty_file_is_422_with_clear_message(kit, alice):
    resp = await kit.upload(alice, b"", "empty.log")
    assert resp.status_code == 422
    assert resp.json()["code"] == "EMPTY_FILE"
    assert "empty" in resp.json()["detail"]
    assert kit.stored() == []


async def test_multipart_without_file_part_is_422(client, alice, kit):
    resp = await client.post(
        "/api/v1/evidence",
        files={"case_id": (None, alice.case_id)},
        headers=alice.headers,
    )
    assert resp.status_code == 422
    assert resp.json()["code"] == "FILE_REQUIRED"


async def test_empty_multipart_body_is_422(client, alice):
    boundary = "b0undary"
    resp = await client.post(
        "/api/v1/evidence",
        content=f"--{boundary}--\r\n".encode(),
        headers={**alice.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status_code == 422
    assert resp.json()["code"] == "FILE_REQUIRED"


async def test_missing_case_id_is_422(client, alice, kit):
    resp = await client.post(
        "/api/v1/evidence",
        files={"file": ("a.log", kit.log_text, "text/plain")},
        headers=alice.headers,
    )
    assert resp.status_code == 422
    assert "case_id" in resp.json()["detail"]
    assert kit.stored() == []


async def test_malformed_case_id_is_422(kit, alice):
    resp = await kit.upload(alice, case_id="../../etc")
    assert resp.status_code == 422
    assert resp.json()["code"] == "INVALID_CASE_ID"


async def test_json_body_is_415(client, alice):
    resp = await client.post("/api/v1/evidence", json={"case_id": "x"}, headers=alice.headers)
    assert resp.status_code == 415
    assert resp.json()["code"] == "MULTIPART_REQUIRED"


async def test_truncated_multipart_is_400_and_leaves_nothing(client, alice, kit):
    boundary = "trunc"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="case_id"\r\n\r\n'
        f'{alice.case_id}\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="a.log"\r\n\r\n'
    ).encode() + kit.log_text
    resp = await client.post(
        "/api/v1/evidence",
        content=body,
        headers={**alice.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == "INCOMPLETE_MULTIPART"
    assert kit.stored() == []


async def test_upload_without_token_is_401(client, alice, kit):
    resp = await client.post(
        "/api/v1/evidence",
        data={"case_id": alice.case_id},
        files={"file": ("a.log", kit.log_text, "text/plain")},
    )
    assert resp.status_code == 401
    assert kit.stored() == []


async def test_uploaded_at_turn_and_source_url_are_kept(kit, alice):
    resp = await kit.upload(
        alice, uploaded_at_turn="3", upload_source="page_capture", source_url="https://x.test/a"
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["uploaded_at_turn"] == 3
    assert resp.json()["source_metadata"] == {"source_url": "https://x.test/a"}


async def test_invalid_upload_source_is_422(kit, alice):
    resp = await kit.upload(alice, upload_source="carrier_pigeon")
    assert resp.status_code == 422
    assert "upload_source" in resp.json()["detail"]


async def test_huge_part_header_is_400_and_not_accumulated(client, alice, kit):
    boundary = "hdr"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.log"\r\n'
        f"X-Junk: {'j' * 100_000}\r\n\r\nline\r\n--{boundary}--\r\n"
    ).encode()
    resp = await client.post(
        "/api/v1/evidence",
        content=body,
        headers={**alice.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == "MALFORMED_MULTIPART"
    assert kit.stored() == []


async def test_endless_epilogue_without_length_is_cut_at_the_limit(client, alice, kit):
    sent = 0

    async def body():
        nonlocal sent
        yield (
            f'--end\r\nContent-Disposition: form-data; name="case_id"\r\n\r\n{alice.case_id}'
            f'\r\n--end\r\nContent-Disposition: form-data; name="file"; filename="a.log"'
            f"\r\n\r\nline\r\n--end--\r\n"
        ).encode()
        while sent < 100:
            sent += 1
            yield b"epilogue that goes on and on " * 4000

    resp = await client.post(
        "/api/v1/evidence",
        content=body(),
        headers={**alice.headers, "Content-Type": "multipart/form-data; boundary=end"},
    )
    assert resp.status_code == 413
    assert sent < 100  # stopped reading once past the limit
    assert kit.stored() == []
