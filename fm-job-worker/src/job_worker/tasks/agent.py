"""Agent tasks (queue `agent`): queued turns and post-mortems.

Both run the agent service's own flows (agent_service.domain) with a service token
acting for the case's owner, so the case, knowledge and evidence services scope every
call to that user exactly as for the user's own request.
"""

from __future__ import annotations

from typing import Any

import structlog

from fm_common.context import bearer_token_var
from fm_common.errors import FMError
from fm_common.settings import load_settings
from job_worker.app import app, settings
from job_worker.base import PermanentError, TaskContext, record_job_failure, tracked_task
from job_worker.runtime import Runtime

log = structlog.get_logger("worker.agent")

AGENT = {
    "queue": "agent",
    "soft_time_limit": settings.maintenance_soft_time_limit,
    "time_limit": settings.maintenance_time_limit,
}


def agent_runtime(rt: Runtime) -> Any:
    """The agent's runtime (clients, provider chain) on this worker process's loop."""
    cached = getattr(rt, "_fm_agent", None)
    if cached is None:
        from agent_service.config import Settings as AgentSettings
        from agent_service.runtime import build_runtime

        cached = build_runtime(load_settings(AgentSettings), rt.http, rt.aredis)
        rt._fm_agent = cached  # type: ignore[attr-defined]
    return cached


def _as_user(rt: Runtime, owner_id: str, coro_fn: Any) -> Any:
    token = rt.service_token(owner_id)

    async def go() -> Any:
        bearer_token_var.set(token)
        return await coro_fn()

    return rt.run(go())


@tracked_task(app, "agent.run_turn", **AGENT)
def run_turn(
    ctx: TaskContext, case_id: str, owner_id: str, turn_key: str, turn: dict[str, Any]
) -> Any:
    """A queued turn, through the same flow as a direct one; the result is a TurnResponse."""
    from agent_service.domain.llm.chain import LLMUnavailable
    from agent_service.domain.turns.context import TurnInput
    from agent_service.domain.turns.flows import run_turn as run_agent_turn

    agent = agent_runtime(ctx.rt)
    _read_attachments(ctx.rt, owner_id, turn.get("stored") or [])

    async def answer() -> Any:
        response = await run_agent_turn(agent, case_id, TurnInput.model_validate(turn), turn_key)
        return response.model_dump(mode="json")

    try:
        return _as_user(ctx.rt, owner_id, answer)
    except LLMUnavailable as exc:
        # The user's message is stored with a note; asking again is the user's call.
        raise PermanentError(exc.detail, code=exc.code) from None


def _read_attachments(rt: Runtime, owner_id: str, stored: list[dict[str, Any]]) -> None:
    """The text of the turn's images and office documents, read here if their index
    task has not yet (it may be queued behind this very task on a one-child worker)."""
    from job_worker.tasks.knowledge import read_pending_text

    for item in stored:
        # Images; office documents are "text" (a plain text file answers "none" at once).
        if item.get("source_type") not in ("image", "text"):
            continue
        try:
            read_pending_text(rt, item["file_id"], owner_id)
        except FMError as exc:  # the turn still runs; it says the text is missing
            log.warning("turn.attachment_read_failed", file_id=item["file_id"], error=exc.code)


def _fail_report(rt: Runtime, kwargs: dict[str, Any], message: str, code: str) -> None:
    """The report is marked failed with the reason (never left pending)."""
    from fm_common.contracts.case import ReportStoreRequest

    record_job_failure(rt, kwargs, message, code)
    agent = agent_runtime(rt)

    async def store() -> None:
        await agent.case.store_report(
            kwargs["case_id"],
            kwargs["report_id"],
            ReportStoreRequest(status="failed", error=f"{code}: {message}"[:4000]),
        )

    try:
        _as_user(rt, kwargs["owner_id"], store)
    except FMError as exc:  # the case service is down too: the job record says failed
        log.error("agent.report_fail_not_stored", report_id=kwargs.get("report_id"), error=exc.code)


@tracked_task(app, "agent.generate_postmortem", give_up=_fail_report, **AGENT)
def generate_postmortem(ctx: TaskContext, case_id: str, report_id: str, owner_id: str) -> Any:
    """Write the case's post-mortem (LLM chain, or the case's structured state) and store it."""
    from agent_service.domain.reports.postmortem import generate_postmortem as generate

    agent = agent_runtime(ctx.rt)
    return _as_user(ctx.rt, owner_id, lambda: generate(agent, case_id, report_id))
