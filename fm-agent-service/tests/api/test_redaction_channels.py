"""The 30 canary kinds through every channel into the agent (query, pasted content, a
runbook passage, an attached log, the next turn's history, the title, the post-mortem),
with the fake provider recording every request: no secret reaches it, and the user still
sees the originals. (tests/system/test_redaction_canary.py does the same through the
whole running system.)"""

from __future__ import annotations

import re
from typing import Any

from agent_standins import provider, running, turn_json

from agent_service.domain.reports.postmortem import generate_postmortem
from fm_common.context import bearer_token_var
from fm_common.testing.canaries import canaries, leaks
from fm_common.testing.fake_llm import FakeLLMServer, FakeRequest

KINDS = canaries("api")
BLOCK = "\n".join(c.line for c in KINDS)
LOG = (
    "\n".join(f"2026-11-24T10:00:{i:02d}Z INFO orders request {i} served" for i in range(30))
    + "\n"
    + "\n".join(
        f"2026-11-24T10:01:{i:02d}Z ERROR config dump: {c.line}" for i, c in enumerate(KINDS)
    )
    + "\n"
)


def _echo(request: FakeRequest) -> str:
    """The model repeats every placeholder it was given: restored for the user, these
    are the originals, and they come back as history next turn."""
    if "TASK: title" in request.text:
        return "Orders " + " ".join(re.findall(r"<[A-Z]+_\d+>", request.text)[:3])
    if "TASK: postmortem" in request.text:
        found = " ".join(sorted(set(re.findall(r"<[A-Z]+_\d+>", request.text))))
        return (
            f"# Post-mortem: orders\n\n## Summary\nValues: {found}\n\n## Impact\nx\n\n"
            "## Timeline\n- 10:00 x\n\n## Root cause\nx\n\n## Resolution\nx\n\n"
            "## Action items\n- [ ] x\n"
        )
    last = request.body["messages"][-1]["content"]  # not the system prompt's examples
    found = sorted(set(re.findall(r"<(?:SECRET|EMAIL|IP|PHONE|CARD|SSN)_\d+>", last)))
    return turn_json("Seen: " + " ".join(found), cited_sources=[])


async def test_no_canary_reaches_the_provider_through_any_channel(
    make_settings: Any,
    standins: Any,
    token_issuer: Any,
    user_id: str,
    fake: FakeLLMServer,
) -> None:
    standins.add_document("Orders credentials runbook", "orders config\n" + BLOCK, scope="global")
    case_id = standins.add_case(user_id)
    settings = make_settings([provider(fake, "primary")], passage_chars=800)
    fake.responder = _echo
    auth = token_issuer.headers(user_id)
    channels: dict[str, list[str]] = {}
    async with running(settings) as client:
        url = f"/api/v1/cases/{case_id}/turns"

        async def turn(**data: Any) -> Any:
            files = data.pop("files", None)
            resp = await client.post(url, data=data, files=files, headers=auth)
            assert resp.status_code == 200, resp.text
            return resp.json()

        before = len(fake.requests)
        first = await turn(query="orders config " + BLOCK)
        channels["query + runbook passage"] = fake.requests[before:]
        # The user sees the originals the model referred to.
        assert sum(c.secrets[0] in first["agent_response"] for c in KINDS) >= 25

        before = len(fake.requests)
        await turn(query="what about this paste?", pasted_content=BLOCK)
        channels["pasted content + history"] = fake.requests[before:]

        before = len(fake.requests)
        await turn(query="and this log?", files={"files": ("app.log", LOG.encode(), "text/plain")})
        channels["attached log + history"] = fake.requests[before:]

        before = len(fake.requests)
        await turn(query="what next?")
        channels["history"] = fake.requests[before:]

        before = len(fake.requests)
        title = await client.post(
            f"/api/v1/cases/{case_id}/title",
            json={"force": True, "hint": KINDS[5].line},
            headers=auth,
        )
        assert title.status_code == 200, title.text
        channels["title"] = fake.requests[before:]

        before = len(fake.requests)
        # The worker runs it with its service token acting for the owner.
        token = bearer_token_var.set(token_issuer.service_token(user_id))
        try:
            runtime = client.app.state.runtime  # type: ignore[attr-defined]
            result = await generate_postmortem(runtime, case_id, "rep-canary")
        finally:
            bearer_token_var.reset(token)
        assert result["status"] == "completed"
        channels["post-mortem"] = fake.requests[before:]

    for channel, requests in channels.items():
        assert requests, channel
        sent = "\n".join(r.raw + r.text for r in requests)
        assert leaks(sent, KINDS) == [], channel
    # The history really carried the originals the user saw: they were re-redacted.
    history_turn = channels["history"][0].text
    assert history_turn.count("<SECRET_") >= 20


async def test_a_redacted_secret_shown_to_the_user_is_not_sent_back_as_history(
    make_settings: Any, standins: Any, token_issuer: Any, user_id: str, fake: FakeLLMServer
) -> None:
    """Turn 1's `password=X` is redacted, the model answers with the placeholder, the
    user sees X; turn 2's history must carry the placeholder, not X."""
    case_id = standins.add_case(user_id)
    fake.responder = _echo
    auth = token_issuer.headers(user_id)
    async with running(make_settings([provider(fake, "primary")])) as client:
        url = f"/api/v1/cases/{case_id}/turns"
        first = await client.post(
            url, data={"query": "login password=Hist0ry9pw fails"}, headers=auth
        )
        assert first.status_code == 200, first.text
        assert "Seen: Hist0ry9pw" in first.json()["agent_response"]  # restored for the user
        second = await client.post(url, data={"query": "and now?"}, headers=auth)
        assert second.status_code == 200, second.text
    history = fake.requests[-1].body["messages"][1:-1]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert "Seen: <SECRET_1>" in history[1]["content"]
    assert "Hist0ry9pw" not in fake.all_text()


async def test_a_private_key_cut_short_in_a_pasted_log_never_reaches_the_provider(
    make_settings: Any, standins: Any, token_issuer: Any, user_id: str, fake: FakeLLMServer
) -> None:
    """BEGIN line and body, no END (a truncated dump), inside a log the condenser cuts
    into lines: redaction runs on the whole text before condensing."""
    body = [
        f"TUlJRXBBSUJBQUtDQVFFQTBaM1ZTNUpKY2RzM3hmbi95Z1d5RjhQYm5H{i}eTBBSEI3TWhn" for i in range(6)
    ]
    log = "\n".join(f"2026-11-24T10:00:{i:02d}Z INFO request {i} ok" for i in range(40))
    log += "\n2026-11-24T10:01:00Z ERROR tls: key dump follows\n-----BEGIN RSA PRIVATE KEY-----\n"
    log += "\n".join(body) + "\n"
    case_id = standins.add_case(user_id)
    async with running(make_settings([provider(fake, "primary")])) as client:
        resp = await client.post(
            f"/api/v1/cases/{case_id}/turns",
            data={"query": "why does tls fail?", "pasted_content": log},
            headers=token_issuer.headers(user_id),
        )
    assert resp.status_code == 200, resp.text
    sent = fake.all_text()
    assert "key dump follows" in sent  # the evidence did reach the model, condensed
    assert not [line for line in body if line in sent]


async def test_failover_and_the_malformed_answer_retry_send_only_redacted_text(
    make_settings: Any, standins: Any, token_issuer: Any, user_id: str, fake: FakeLLMServer
) -> None:
    """The primary fails (the secondary gets the prompt), the secondary's first answer is
    not JSON and quotes the secret (the retry sends that answer back): no request holds
    a secret, not even the retry's copy of the model's own words."""
    case_id = standins.add_case(user_id)
    fake.fail("primary", 500)
    fake.script(
        "not json: the root password is Fa1lover9pw",  # quoted by the model, then retried
        turn_json("ok"),
    )
    # The secondary speaks the OpenAI protocol: a forced Anthropic tool call always
    # answers a JSON object (ADR 0085), so only a text answer can be malformed.
    settings = make_settings([provider(fake, "primary"), provider(fake, "secondary")])
    async with running(settings) as client:
        resp = await client.post(
            f"/api/v1/cases/{case_id}/turns",
            data={"query": "mysql -u root -pFa1lover9pw fails; the root password is Fa1lover9pw"},
            headers=token_issuer.headers(user_id),
        )
    assert resp.status_code == 200, resp.text
    paths = [r.path for r in fake.requests]
    assert any("primary" in p for p in paths)
    assert sum("secondary" in p for p in paths) == 2  # the answer and its retry
    assert "Fa1lover9pw" not in fake.all_text()
    assert "<SECRET_1>" in fake.requests[-1].text
