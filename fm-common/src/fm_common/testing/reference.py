"""The reference OpenAPI document (../shared/reference) for schema checks in tests, with
the deviations API.md documents applied (where the two disagree, API.md wins)."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

import jsonschema
from referencing import Registry, Resource

from fm_common.testing.shared import reference_openapi_path

# API.md "resolved / closed case panel": null where nothing was recorded (never a
# placeholder sentence), no resolved_at on a closed case.
_NULLABLE: dict[str, tuple[str, ...]] = {
    "CaseUIResponse_Resolved": (
        "resolved_at",
        "root_cause",
        "solution_applied",
        "verification_status",
    ),
}


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [prop, {"type": "null"}]}


@lru_cache(maxsize=1)
def reference_document() -> dict[str, Any]:
    # Skips the calling test where ../shared is absent.
    doc = json.loads(reference_openapi_path().read_text())
    doc = copy.deepcopy(doc)
    schemas = doc["components"]["schemas"]
    for name, fields in _NULLABLE.items():
        props = schemas[name]["properties"]
        for field in fields:
            props[field] = _nullable(props[field])
    return doc


def assert_matches(schema_name: str, instance: Any) -> None:
    """Raise when `instance` does not satisfy components/schemas/<schema_name>."""
    registry = Registry().with_resource("urn:ref", Resource.opaque(reference_document()))
    schema = {"$ref": f"urn:ref#/components/schemas/{schema_name}"}
    validator = jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=jsonschema.FormatChecker()
    )
    validator.validate(instance)
