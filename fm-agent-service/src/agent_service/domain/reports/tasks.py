"""`agent.generate_postmortem` (queue `agent`): a case's post-mortem, written by the worker
as the case's owner; a failure is stored on the report (never left pending)."""

from __future__ import annotations

import structlog

from agent_service.domain.turns.tasks import as_user
from agent_service.worker import agent_runtime
from fm_common.contracts.case import ReportStoreRequest
from fm_common.errors import FMError
from fm_common.tasks import Host, Kwargs, TaskContext, record_job_failure, task

log = structlog.get_logger("worker.agent")


def _fail_report(host: Host, kwargs: Kwargs, message: str, code: str) -> None:
    """The report is marked failed with the reason (never left pending)."""
    record_job_failure(host, kwargs, message, code)
    agent = agent_runtime(host)

    async def store() -> None:
        await agent.case.store_report(
            kwargs["case_id"],
            kwargs["report_id"],
            ReportStoreRequest(status="failed", error=f"{code}: {message}"[:4000]),
        )

    try:
        as_user(host, kwargs["owner_id"], store)
    except FMError as exc:  # the case service is down too: the job record says failed
        log.error("agent.report_fail_not_stored", report_id=kwargs.get("report_id"), error=exc.code)


@task("agent.generate_postmortem", queue="agent", give_up=_fail_report)
def generate_postmortem(
    ctx: TaskContext, case_id: str, report_id: str, owner_id: str
) -> dict[str, object]:
    """Write the case's post-mortem (LLM chain, or the case's structured state) and store it."""
    # Imported on first use (agent_service.worker says why).
    from agent_service.domain.reports.postmortem import generate_postmortem as generate

    agent = agent_runtime(ctx.host)
    return as_user(ctx.host, owner_id, lambda: generate(agent, case_id, report_id))
