"""`agent.run_turn` (queue `agent`): a queued turn, run by the worker.

It runs the same flow as a direct turn with a service token acting for the case's
owner, so the case, knowledge and evidence services scope every call to that user
exactly as for the user's own request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from agent_service.worker import agent_runtime
from fm_common.context import bearer_token_var
from fm_common.errors import FMError
from fm_common.tasks import Host, PermanentError, TaskContext, task

log = structlog.get_logger("worker.agent")
T = TypeVar("T")


def as_user(host: Host, owner_id: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work()` on the worker's loop with a service token acting for `owner_id`."""
    token = host.service_token(owner_id)

    async def go() -> T:
        bearer_token_var.set(token)
        return await work()

    return host.run(go())


@task("agent.run_turn", queue="agent")
def run_turn(
    ctx: TaskContext, case_id: str, owner_id: str, turn_key: str, turn: dict[str, Any]
) -> dict[str, Any]:
    """A queued turn, through the same flow as a direct one; the result is a TurnResponse."""
    # Imported on first use (agent_service.worker says why).
    from agent_service.domain.llm.chain import LLMUnavailable
    from agent_service.domain.turns.context import TurnInput
    from agent_service.domain.turns.fairness import turn_left_queue
    from agent_service.domain.turns.flows import run_turn as run_agent_turn

    host = ctx.host
    agent = agent_runtime(host)
    # Out of the owner's queued count, which ranks their next queued turns (ADR 0136).
    host.run(turn_left_queue(agent.redis, owner_id))
    _read_attachments(host, owner_id, turn.get("stored") or [])

    async def answer() -> dict[str, Any]:
        response = await run_agent_turn(agent, case_id, TurnInput.model_validate(turn), turn_key)
        return response.model_dump(mode="json")

    try:
        return as_user(host, owner_id, answer)
    except LLMUnavailable as exc:
        # The user's message is stored with a note; asking again is the user's call.
        raise PermanentError(exc.detail, code=exc.code) from None


def _read_attachments(host: Host, owner_id: str, stored: list[dict[str, Any]]) -> None:
    """The text of the turn's images and office documents, read here if their index
    task has not yet (it may be queued behind this very task on a one-child worker)."""
    for item in stored:
        # Images; office documents are "text" (a plain text file answers "none" at once).
        if item.get("source_type") not in ("image", "text"):
            continue
        try:
            host.peers.read_pending_text(item["file_id"], owner_id)
        except FMError as exc:  # the turn still runs; it says the text is missing
            log.warning("turn.attachment_read_failed", file_id=item["file_id"], error=exc.code)
