"""Issue 16, item 9: input that used to be a 500 (after the provider was billed) is a
422 before any provider call."""

from __future__ import annotations

from typing import Any

import pytest
from agent_standins import provider, running

from fm_common.testing.fake_llm import FakeLLMServer


@pytest.fixture
def case_id(standins: Any, user_id: str) -> str:
    return standins.add_case(user_id)


@pytest.fixture
def settings(make_settings: Any, fake: FakeLLMServer) -> Any:
    return make_settings([provider(fake, "primary")])


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"query": "disk full on\x00 node-3"}, "INVALID_TEXT"),
        ({"query": "see log", "pasted_content": "line 1\x00line 2"}, "INVALID_TEXT"),
        ({"query": "hi", "intent_data": "[" * 1000 + "]" * 1000}, "INVALID_INTENT"),
        ({"query": "hi", "intent_data": '{"a":' * 1000 + "1" + "}" * 1000}, "INVALID_INTENT"),
        ({"query": "hi", "intent_data": '{"to_state": "x\\u0000"}'}, "INVALID_INTENT"),
    ],
)
async def test_bad_text_is_422_before_the_provider_is_called(
    settings: Any,
    case_id: str,
    auth: dict[str, str],
    fake: FakeLLMServer,
    standins: Any,
    fields: dict[str, str],
    code: str,
) -> None:
    async with running(settings) as client:
        resp = await client.post(f"/api/v1/cases/{case_id}/turns", data=fields, headers=auth)
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == code
    assert fake.requests == []
    assert standins.state.messages.get(case_id, []) == []


async def test_a_user_over_the_concurrent_turn_cap_gets_429_before_the_provider(
    settings: Any,
    case_id: str,
    auth: dict[str, str],
    fake: FakeLLMServer,
    user_id: str,
    redis_url: str,
) -> None:
    # Issue 16 item 5: one user's turns held everyone else's. Their slots are taken (as by
    # two turns still running in any agent process): a third waits its turn with a 429.
    import redis.asyncio as aioredis

    from agent_service.domain.turns.fairness import PREFIX

    r = aioredis.from_url(redis_url)
    await r.set(PREFIX + user_id, settings.max_concurrent_turns_per_user, ex=60)
    try:
        async with running(settings) as client:
            resp = await client.post(
                f"/api/v1/cases/{case_id}/turns", data={"query": "disk full"}, headers=auth
            )
            assert resp.status_code == 429
            assert resp.json()["code"] == "TOO_MANY_TURNS"
            assert int(resp.headers["retry-after"]) >= 1
            assert fake.requests == []
            # One of them ends: the next turn runs, and gives its slot back.
            await r.decr(PREFIX + user_id)
            ok = await client.post(
                f"/api/v1/cases/{case_id}/turns", data={"query": "disk full"}, headers=auth
            )
            assert ok.status_code == 200, ok.text
            assert int(await r.get(PREFIX + user_id)) == settings.max_concurrent_turns_per_user - 1
    finally:
        await r.delete(PREFIX + user_id)
        await r.aclose()
