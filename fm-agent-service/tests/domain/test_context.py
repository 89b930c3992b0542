"""Gathering a turn's context against the HTTP stand-ins of the case and knowledge routes."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest

from agent_service.domain.turns.context import TurnInput, prepare_turn
from agent_service.runtime import build_runtime
from fm_common.context import set_caller
from fm_common.errors import NotFound


def _recording(calls: list[str], name: str, fn: Any) -> Any:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return await fn(*args, **kwargs)

    return wrapper


async def _prepare(make_settings: Any, token: str, case_id: str, calls: list[str]) -> Any:
    async with httpx.AsyncClient() as http:
        rt = build_runtime(make_settings(), http, redis=None)
        rt.case.get_case = _recording(calls, "case", rt.case.get_case)  # type: ignore[method-assign]
        rt.knowledge.search = _recording(calls, "search", rt.knowledge.search)  # type: ignore[method-assign]
        # As the request's token check does: the user's token and the user it is.
        set_caller(token, jwt.decode(token, options={"verify_signature": False})["sub"])
        return await prepare_turn(
            rt, case_id, TurnInput(query="pgbouncer pool exhausted"), "k", time.monotonic() + 10
        )


async def test_the_retrieval_is_sent_before_the_case_read(
    make_settings: Any, standins: Any, token_issuer: Any, user_id: str
) -> None:
    # The search embeds the query (the long pole of the context): it goes out first.
    standins.add_document("Pool runbook", "pgbouncer pool exhausted: raise max_connections")
    case_id = standins.add_case(user_id)
    calls: list[str] = []
    prep = await _prepare(make_settings, token_issuer.token(user_id), case_id, calls)
    assert calls == ["search", "case"]
    assert [p.title for p in prep.passages] == ["Pool runbook"]
    assert prep.ctx.case.case_id == case_id


async def test_another_users_case_is_404_even_with_the_search_sent_first(
    make_settings: Any, standins: Any, token_issuer: Any, user_id: str
) -> None:
    case_id = standins.add_case("someone-else")
    calls: list[str] = []
    with pytest.raises(NotFound):
        await _prepare(make_settings, token_issuer.token(user_id), case_id, calls)
    assert calls == ["search", "case"]
