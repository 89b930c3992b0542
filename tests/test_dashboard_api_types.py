"""The dashboard's API types are generated from the merged OpenAPI document: the committed
document must be the one the services describe today (fm-dashboard/scripts/openapi.py).
The TypeScript generated from it is checked fresh by the dashboard's own tests
(src/api/schema.test.ts, `npm test`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "fm-dashboard" / "scripts" / "openapi.py"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("dashboard_openapi", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_openapi_document_matches_the_services():
    script = _script()
    committed = script.DOCUMENT.read_text()
    fresh = script.render(script.document())
    assert committed == fresh, (
        f"{script.DOCUMENT.relative_to(REPO)} is stale: run `npm run gen:api` in fm-dashboard"
        " and commit the result"
    )


def test_merged_document_has_every_services_public_paths_and_the_milestones():
    doc = _script().document()
    paths = doc["paths"]
    for path in (
        "/api/v1/auth/login",
        "/api/v1/sessions",
        "/api/v1/cases/{case_id}/ui",
        "/api/v1/knowledge/documents",
        "/api/v1/evidence",
        "/api/v1/cases/{case_id}/turns",
        "/v1/meta/capabilities",
    ):
        assert path in paths, path
    assert not [p for p in paths if p.startswith("/internal")]
    assert "x-services-unavailable" not in doc["info"]
    milestone = doc["components"]["schemas"]["Milestone"]
    assert milestone["enum"][0] == "symptom_verified"
    assert len(milestone["enum"]) == 8
