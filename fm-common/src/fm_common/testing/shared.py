"""../shared beside the repository: the product spec, the reference OpenAPI document and
the real runbook corpora that tests read there (never copied into the repository).

A clone without it still runs the suite: a test that needs it is skipped, and the skip
names the missing path (shown in pytest's `-ra` summary).
"""

from __future__ import annotations

from pathlib import Path

import pytest

# fm-common/src/fm_common/testing/shared.py -> the repository root -> its sibling.
REPO = Path(__file__).resolve().parents[4]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A file or folder under ../shared; skips the calling test where it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared beside the repository): skipped")
    return path


def reference_openapi_path() -> Path:
    """The Copilot extension's OpenAPI document (../shared/reference)."""
    return shared_path("reference", "faultmaven-openapi-core.json")
