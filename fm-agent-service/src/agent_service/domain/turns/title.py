"""Naming a case from its conversation (POST /cases/{id}/title)."""

from __future__ import annotations

import re
import time
from typing import Literal

import structlog

from agent_service.domain.llm.chain import LLMUnavailable
from agent_service.domain.privacy.safety import Fence
from agent_service.domain.turns.prompt import title_messages
from agent_service.runtime import AgentRuntime
from fm_common.contracts.agent import TitleRequest, TitleResponse
from fm_common.contracts.case import CaseUpdateRequest
from fm_common.errors import Unprocessable

TitleSource = Literal["generated", "existing"]

log = structlog.get_logger("agent.title")
DEFAULT_TITLE = re.compile(r"^Case-\d{4}-\d+$")
MIN_CONTEXT_CHARS = 10


def clean_title(text: str, max_words: int) -> str:
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^(?:title\s*:\s*)", "", line.strip(), flags=re.IGNORECASE)
    line = re.sub(r"[*_`#>\"“”]+", "", line).strip(" '.,;:!-")
    words = line.split()[:max_words]
    return " ".join(words)[:100].strip()


def heuristic_title(conversation: str, max_words: int) -> str:
    words = re.findall(r"[\w.:/-]+", conversation)
    return clean_title(" ".join(words[:max_words]).capitalize(), max_words)


async def generate_title(
    rt: AgentRuntime, case_id: str, req: TitleRequest
) -> tuple[TitleResponse, TitleSource]:
    """A concise title from the conversation, stored when the current one is a default
    (or `force`); with where it came from: "generated" now, or the "existing" one."""
    ctx = await rt.case.get_case(case_id, history=10)
    messages = ctx.recent_messages
    # What the user wrote: not the status changes and Yes / No of intent turns.
    written = [
        m.content
        for m in messages
        if m.role == "user" and not (m.metadata or {}).get("intent_type")
    ]
    conversation = "\n".join(written)[:4000]
    conversation = conversation or ctx.case.description
    if len(conversation.strip()) < MIN_CONTEXT_CHARS:
        raise Unprocessable(
            "There is not enough conversation to name this case yet.", code="INSUFFICIENT_CONTEXT"
        )
    if not req.force and not DEFAULT_TITLE.match(ctx.case.title):
        return TitleResponse(title=ctx.case.title), "existing"
    title = ""
    if rt.chain.configured:
        redactor = rt.redactor(case_id)
        # Each message redacted whole, then cut (a cut must never halve a secret).
        said = written or [ctx.case.description or ""]
        redacted = "\n".join((await redactor.redact(said)).texts)[:4000]
        prompt = title_messages(Fence(), redacted, req.max_words, req.hint)
        deadline = time.monotonic() + min(20.0, rt.settings.turn_deadline_seconds)
        try:
            result = await rt.chain.complete(prompt, redactor=redactor, deadline=deadline)
            title = clean_title(redactor.restore(result.text), req.max_words)
        except LLMUnavailable:
            log.warning("title.llm_unavailable", case_id=case_id)
    title = title or heuristic_title(conversation, req.max_words)
    if not title:
        raise Unprocessable("No title could be made from this conversation.", code="TITLE_FAILED")
    await rt.case.update_case(case_id, CaseUpdateRequest(title=title))
    return TitleResponse(title=title), "generated"
