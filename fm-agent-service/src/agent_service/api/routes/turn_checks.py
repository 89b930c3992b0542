"""Checks of a turn's raw form fields before anything is spent on it (issue 16, item 9).

A NUL byte in a text field was stored only after the provider had answered (and billed),
where the database refused it: 500. `intent_data` nested 1,000 deep broke the JSON
parser's recursion: 500. Both are refused here as 422, before any provider call.
"""

from __future__ import annotations

import json
from typing import Any

from fm_common.errors import Unprocessable

# No legitimate intent is deeper than a few levels.
MAX_INTENT_DEPTH = 20


def refuse_nul(**fields: str | None) -> None:
    """422 INVALID_TEXT for a NUL byte in any text field (no store keeps it)."""
    for name, value in fields.items():
        if value is not None and "\x00" in value:
            raise Unprocessable(f"{name} contains a NUL byte.", code="INVALID_TEXT")


def parse_intent_data(raw: str) -> dict[str, Any]:
    """The intent JSON object, or 422 INVALID_INTENT (not JSON, too deep, not an object,
    a NUL byte in a string)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in raw:  # bracket depth outside strings, before the recursive parser runs
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_INTENT_DEPTH:
                raise Unprocessable(
                    f"intent_data is nested more than {MAX_INTENT_DEPTH} levels deep.",
                    code="INVALID_INTENT",
                )
        elif ch in "]}":
            depth -= 1
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise Unprocessable("intent_data is not valid JSON.", code="INVALID_INTENT") from None
    if not isinstance(data, dict):
        raise Unprocessable("intent_data must be a JSON object.", code="INVALID_INTENT")
    stack: list[Any] = [data]
    while stack:  # keys and string values, without recursion
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and "\x00" in node:
            raise Unprocessable("intent_data contains a NUL byte.", code="INVALID_INTENT")
    return data
