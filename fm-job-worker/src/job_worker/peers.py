"""Where one service's task meets another service's code in the worker process.

Services never import each other; the worker, which hosts them all, passes each task the
few operations it needs of another (`fm_common.tasks.Peers`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_service import worker as agent
from knowledge_service.domain.ingest.tasks import evidence as evidence_tasks

if TYPE_CHECKING:
    from fm_common.tasks import Host


class Peers:
    def __init__(self, host: Host) -> None:
        self.host = host

    def redact(self, case_id: str, texts: list[str], *, chunks: bool) -> list[str]:
        return agent.redact(self.host, case_id, texts, chunks=chunks)

    def drop_redaction_map(self, case_id: str) -> None:
        agent.drop_redaction_map(self.host, case_id)

    def read_pending_text(self, file_id: str, owner_id: str) -> str:
        return evidence_tasks.read_pending_text(self.host, file_id, owner_id)
