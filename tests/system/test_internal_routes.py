"""Every /internal route of every running service refuses a user's own token (issue 16
item 10: with a service's port reachable, a user's token on the case service's internal
turn route forged an assistant message). ADR 0135.

The routes are read from each real process's own OpenAPI document, so a route added
later is checked too; the whole-system tests in this directory prove that the callers
(agent, evidence, knowledge, worker, auth) get through with their service tokens.
"""

from __future__ import annotations

import re
import uuid

import httpx

from fm_common.devstack import Stack

PASSWORD = "correct horse battery staple"
SERVICES = ("auth", "session", "case", "knowledge", "evidence", "agent")
# The mint itself: it takes the client credentials in its body, not a bearer token.
MINT = ("auth", "/internal/v1/service-token")


def _user_token(stack: Stack) -> str:
    username = f"insider_{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=stack.gateway_url, timeout=30, verify=False) as gateway:
        resp = gateway.post(
            "/api/v1/auth/register", json={"username": username, "password": PASSWORD}
        )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["access_token"])


def test_every_internal_route_refuses_a_users_own_token(system_stack: Stack) -> None:
    user = {"Authorization": f"Bearer {_user_token(system_stack)}"}
    checked: dict[str, int] = {}
    with httpx.Client(timeout=30) as http:
        for name in SERVICES:
            base = system_stack.url(name)
            doc = http.get(f"{base}/openapi.json").json()
            for path, operations in doc["paths"].items():
                if not path.startswith("/internal/"):
                    continue
                url = base + re.sub(r"\{[^}]+\}", "a1b2c3d4", path)
                for method in operations:
                    if (name, path) == MINT:
                        guess = {"client_id": "worker", "client_secret": "guess"}
                        resp = http.post(url, json=guess, headers=user)
                        assert resp.status_code == 401, resp.text
                        continue
                    resp = http.request(method.upper(), url, json={}, headers=user)
                    assert resp.status_code == 403, (name, method, path, resp.status_code)
                    assert resp.json()["code"] == "SERVICE_ONLY"
                    anonymous = http.request(method.upper(), url, json={})
                    assert anonymous.status_code == 401, (name, method, path)
                    checked[name] = checked.get(name, 0) + 1
    # Each service's internal routes were found and checked (case 3, session 3,
    # evidence 5, knowledge 1); the agent has none (its capabilities are not internal).
    assert checked.get("case", 0) >= 3
    assert checked.get("session", 0) >= 3
    assert checked.get("evidence", 0) >= 5
    assert checked.get("knowledge", 0) >= 1
    assert "agent" not in checked
