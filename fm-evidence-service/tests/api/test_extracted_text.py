"""Office documents are accepted by their content; the text the worker reads from an
image or office document is stored (PUT /internal/v1/evidence/{id}/text) and served
(GET /api/v1/evidence/{id}/text) to the file's owner only."""

from __future__ import annotations

import io
import zipfile

import pytest

from fm_common.contracts.evidence import OFFICE_CONTENT_TYPES
from fm_common.testing import documents
from fm_common.testing.tokens import TokenIssuer

OFFICE = {
    "r.docx": lambda: documents.docx("T", [("S", ["p"])]),
    "r.pptx": lambda: documents.pptx([("T", ["b"])]),
    "r.xlsx": lambda: documents.xlsx({"S": [["a", "b"], [1, 2]]}),
    "r.odt": lambda: documents.odt("T", [("S", ["p"])]),
    "r.ods": lambda: documents.ods({"S": [["a"]]}),
}


def _worker(issuer: TokenIssuer, user_id: str) -> dict[str, str]:
    return issuer.headers("service:worker", roles=["service"], on_behalf_of=user_id)


@pytest.mark.parametrize("name", sorted(OFFICE))
async def test_office_documents_are_accepted_as_text_evidence(kit, alice, name) -> None:  # type: ignore[no-untyped-def]
    resp = await kit.upload(alice, OFFICE[name](), name)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["content_type"] == OFFICE_CONTENT_TYPES["." + name.split(".")[1]]
    assert body["source_type"] == "text"


async def test_an_office_document_under_another_office_name_is_refused(kit, alice) -> None:  # type: ignore[no-untyped-def]
    resp = await kit.upload(alice, OFFICE["r.docx"](), "r.xlsx")
    assert resp.status_code == 415
    assert "Word document" in resp.json()["detail"]


async def test_a_plain_zip_named_docx_is_refused(kit, alice) -> None:  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.bin", b"\0" * 100)
    resp = await kit.upload(alice, out.getvalue(), "r.docx")
    assert resp.status_code == 415
    assert "ZIP archive" in resp.json()["detail"]


async def test_text_is_pending_then_ready_with_its_layout(
    kit, alice, bob, client, token_issuer
) -> None:  # type: ignore[no-untyped-def]
    file_id = (await kit.upload(alice, kit.png, "shot.png")).json()["file_id"]
    url = f"/api/v1/evidence/{file_id}/text"
    assert (await client.get(url, headers=alice.headers)).json() == {
        "file_id": file_id,
        "status": "pending",
        "text": None,
        "layout": None,
        "error": None,
    }
    layout = {
        "width": 200,
        "height": 40,
        "words": [
            {"text": "ERROR", "left": 4, "top": 5, "width": 50, "height": 12, "start": 0, "end": 5}
        ],
    }
    put = await client.put(
        f"/internal/v1/evidence/{file_id}/text",
        json={"text": "ERROR disk full", "layout": layout},
        headers=_worker(token_issuer, alice.user_id),
    )
    assert put.status_code == 204, put.text
    got = (await client.get(url, headers=alice.headers)).json()
    assert got["status"] == "ready"
    assert got["text"] == "ERROR disk full"
    assert got["layout"] == layout
    # The owner's own token may not write it: the worker's reports are service-only.
    own = await client.put(
        f"/internal/v1/evidence/{file_id}/text", json={"text": "x"}, headers=alice.headers
    )
    assert own.status_code == 403
    assert own.json()["code"] == "SERVICE_ONLY"
    # Another user: as if it did not exist, to read and to write.
    assert (await client.get(url, headers=bob.headers)).status_code == 404
    other = await client.put(
        f"/internal/v1/evidence/{file_id}/text",
        json={"text": "x"},
        headers=_worker(token_issuer, bob.user_id),
    )
    assert other.status_code == 404


async def test_a_failed_read_says_why_and_text_files_need_none(
    kit, alice, client, token_issuer
) -> None:  # type: ignore[no-untyped-def]
    image = (await kit.upload(alice, kit.png, "shot.png")).json()["file_id"]
    await client.put(
        f"/internal/v1/evidence/{image}/analysis",
        json={"analysis_status": "failed", "summary": "No text could be read in the image."},
        headers=_worker(token_issuer, alice.user_id),
    )
    got = (await client.get(f"/api/v1/evidence/{image}/text", headers=alice.headers)).json()
    assert got["status"] == "failed"
    assert got["error"] == "No text could be read in the image."
    log = (await kit.upload(alice)).json()["file_id"]
    got = (await client.get(f"/api/v1/evidence/{log}/text", headers=alice.headers)).json()
    assert got["status"] == "none"


async def test_text_over_the_cap_is_refused(kit, alice, client, token_issuer) -> None:  # type: ignore[no-untyped-def]
    file_id = (await kit.upload(alice, kit.png, "shot.png")).json()["file_id"]
    resp = await client.put(
        f"/internal/v1/evidence/{file_id}/text",
        json={"text": "x" * 1_000_001},
        headers=_worker(token_issuer, alice.user_id),
    )
    assert resp.status_code == 422
