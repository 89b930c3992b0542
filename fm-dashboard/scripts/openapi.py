"""The merged OpenAPI document the gateway serves at /openapi.json, built offline.

Each service's app is built (never started) with its default settings in a scratch data
directory, and the documents are merged as the gateway merges them
(`gateway.domain.openapi.merge`). The dashboard's API types are generated from the result:

    npm run gen:api     # in fm-dashboard: this script, then openapi-typescript

`tests/test_dashboard_api_types.py` fails when the committed document is stale.
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from gateway.domain.openapi import merge, own_schema

DASHBOARD = Path(__file__).resolve().parents[1]
DOCUMENT = DASHBOARD / "src" / "api" / "openapi.json"
SERVICES = ("auth", "session", "case", "knowledge", "evidence", "agent")


def _app_openapi(module: str, data_dir: Path) -> dict[str, Any]:
    main = importlib.import_module(f"{module}.main")
    config = importlib.import_module(f"{module}.config")
    app = main.create_app(config.Settings(data_dir=data_dir, environment="development"))
    return app.openapi()  # type: ignore[no-any-return]


def document() -> dict[str, Any]:
    """The merged document, as the gateway serves it with every service up."""
    with tempfile.TemporaryDirectory(prefix="fm-openapi-") as tmp:
        data_dir = Path(tmp)
        docs = {name: _app_openapi(f"{name}_service", data_dir) for name in SERVICES}
        gateway = importlib.import_module("gateway.main")
        config = importlib.import_module("gateway.config")
        meta = gateway.create_app(config.Settings(data_dir=data_dir)).meta_app
        return merge(own_schema(meta), docs)


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCUMENT
    target.write_text(render(document()))


if __name__ == "__main__":
    main()
