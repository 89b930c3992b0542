"""Office documents ingest through the real service and worker and are found by search
like Markdown runbooks, their passages carrying the section they come from."""

from __future__ import annotations

import random
import uuid

import pytest

from fm_common.testing import documents


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def _office_files(tag: str) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, the sentence a search must find), one per format."""
    return {
        "pool.docx": (
            documents.docx(
                "Orders pool runbook",
                [
                    ("Symptoms", [f"Checkout returns 502 on cluster {tag}-docx."]),
                    ("Fix", [f"Restart pgbouncer-{tag} after lowering the pool size."]),
                ],
                [["Metric", "Threshold"], [f"waiting-{tag}", "0"]],
            ),
            f"Restart pgbouncer-{tag} after lowering the pool size.",
        ),
        "review.pptx": (
            documents.pptx([("Mitigation", [f"Drain node-{tag}-pptx before the upgrade"])]),
            f"Drain node-{tag}-pptx before the upgrade",
        ),
        "errors.xlsx": (
            documents.xlsx(
                {"Errors": [["host", "errors"], [f"web-{tag}", 3], ["total", "=SUM(B2:B2)"]]},
                cached={"Errors!B3": 3},
            ),
            f"host: web-{tag}; errors: 3",
        ),
        "notes.odt": (
            documents.odt("Notes", [("Cause", [f"The certificate of ingress-{tag} expired."])]),
            f"The certificate of ingress-{tag} expired.",
        ),
        "hosts.ods": (
            documents.ods({"Hosts": [["name", "zone"], [f"db-{tag}", "eu-west-1a"]]}),
            f"name: db-{tag}; zone: eu-west-1a",
        ),
    }


@pytest.mark.parametrize("mode", ["semantic", "hybrid"])
def test_office_documents_are_searchable_with_their_sections(kapi, mode) -> None:  # type: ignore[no-untyped-def]
    user, tag = _user(), uuid.uuid4().hex[:6]
    files = _office_files(tag)
    docs = {}
    for name, (data, _) in files.items():
        doc = kapi.ingest(user, name, data, title=name.split(".")[0])
        assert doc["status"] == "processed", doc
        docs[name] = doc
    for name, (_, sentence) in files.items():
        # This user's own collection: the global runbooks other tests of the module
        # ingested (a kubelet certificate one among them) are not what is tested here.
        resp = kapi.search(user, sentence, mode=mode, limit=3, scopes=["personal"])
        assert resp.status_code == 200, resp.text
        top = resp.json()["results"][0]
        assert top["document_id"] == docs[name]["document_id"], (name, resp.json())
        assert sentence in top["content"]
    # The Word document's passage starts with its section path and names the next
    # section where it starts; the table's row carries its columns.
    resp = kapi.search(user, f"restart pgbouncer-{tag}", mode=mode, limit=1, scopes=["personal"])
    hit = resp.json()["results"][0]
    assert hit["content"].startswith("pool > Orders pool runbook > Symptoms\n"), hit
    assert "columns: Metric, Threshold\n\nMetric: waiting-" in hit["content"]
    assert "\n\nFix\n\nRestart pgbouncer-" in hit["content"]
    assert hit["metadata"]["section"] == "pool > Orders pool runbook > Symptoms"
    # The document's content is the extracted structure, not the ZIP's bytes.
    body = kapi.get(user, f"/api/v1/knowledge/documents/{docs['pool.docx']['document_id']}")
    assert "# Fix" in body.json()["content"]


def test_a_zip_named_docx_fails_with_its_reason(kapi) -> None:  # type: ignore[no-untyped-def]
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "not a word document")
    doc = kapi.ingest(_user(), "fake.docx", out.getvalue())
    assert doc["status"] == "failed"
    assert "corrupt" in doc["error"]


_READABLE_WORDS = ("harbor", "meadow", "silver", "garden", "window", "market", "copper", "summer")


def test_a_scanned_pdf_runbook_is_searchable(kapi) -> None:  # type: ignore[no-untyped-def]
    from knowledge_service.domain.ingest.ocr import tesseract_path

    if tesseract_path() is None:
        pytest.skip("tesseract is not installed")
    # A dictionary word, which tesseract's language model reads reliably: random tags
    # failed runs when it read the hex "03ddb9" as "O3ddb9" and "wgwqkf" as "wgwgkf".
    # (The user is unique to the test; the tag only has to be read back. Each of these
    # words was run through the test.)
    user, tag = _user(), random.choice(_READABLE_WORDS)
    data = documents.scanned_pdf(
        [["Runbook: etcd quorum lost"], [f"Restore member etcd-{tag} from the last snapshot"]]
    )
    doc = kapi.ingest(user, "scan.pdf", data, title="etcd scan")
    assert doc["status"] == "processed", doc
    resp = kapi.search(user, f"restore etcd-{tag} snapshot", limit=1)
    hit = resp.json()["results"][0]
    assert hit["document_id"] == doc["document_id"]
    assert f"etcd-{tag}" in hit["content"]
