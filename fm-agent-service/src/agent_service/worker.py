"""The agent's code in the Celery worker: its runtime there, and what it does for the
other services' tasks (redaction with a case's placeholders, through the worker's peers).

The agent's own modules (the provider SDKs, ~35 MB) are imported on first use, here and
in the agent's task modules: the worker's main process imports every task module, and
would otherwise hold them at idle for a queue it may rarely serve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fm_common.errors import Unavailable
from fm_common.settings import load_settings
from fm_common.tasks import Host

if TYPE_CHECKING:
    from agent_service.runtime import AgentRuntime


def _build(host: Host) -> AgentRuntime:
    from agent_service.config import Settings
    from agent_service.runtime import build_runtime

    return build_runtime(load_settings(Settings), host.http, host.aredis)


def agent_runtime(host: Host) -> AgentRuntime:
    """The agent's runtime (clients, provider chain) on this worker process's loop."""
    return host.resource(_build)


def redact(host: Host, case_id: str, texts: list[str], *, chunks: bool) -> list[str]:
    """The texts with every sensitive value replaced by the case's placeholder (its map
    in Redis, originals encrypted); `chunks`: each was cut out of a longer document."""
    redactor = agent_runtime(host).redactor(case_id)
    every = frozenset(range(len(texts))) if chunks else frozenset()
    return list(host.run(redactor.redact(texts, chunks=every)).texts)


def drop_redaction_map(host: Host, case_id: str) -> None:
    """The case's redaction map (its originals, encrypted) goes with the case; Redis
    down: the cleanup is retried like any other step."""
    from agent_service.domain.privacy.redaction import delete_case_map

    try:
        host.run(delete_case_map(host.aredis, case_id))
    except Exception as exc:
        raise Unavailable("Redis is unavailable.", code="CLEANUP_PENDING") from exc
