"""The one choke point between FaultMaven and a model provider.

`ProviderChain.complete` passes every message of every call through `redact_outbound`
before the first provider sees it (turns, their history, the retry of a malformed
answer, every provider of a failover, titles, post-mortems, the worker's queued turns):
the detectors and the case's known originals run over the whole text once more, so a
caller that forgot to redact, or text that reached the prompt another way (an answer
restored for the user and sent back as history, a title hint), still leaves redacted.
Redacting text that was already redacted changes nothing (placeholders are not values).
ADR 0100.
"""

from __future__ import annotations

from typing import Any

import structlog
from langchain_core.messages import BaseMessage

from agent_service.domain.privacy.redaction import CaseRedactor

log = structlog.get_logger("agent.llm")


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            (b if isinstance(b, str) else str(b.get("text", "")))
            for b in content
            if isinstance(b, str) or (isinstance(b, dict) and "text" in b)
        ]
    return []


def _replace(content: Any, texts: list[str]) -> Any:
    if isinstance(content, str):
        return texts[0]
    out: list[Any] = []
    it = iter(texts)
    for b in content:
        if isinstance(b, str):
            out.append(next(it))
        elif isinstance(b, dict) and "text" in b:
            out.append({**b, "text": next(it)})
        else:
            out.append(b)
    return out


async def redact_outbound(messages: list[BaseMessage], redactor: CaseRedactor) -> list[BaseMessage]:
    """The messages as they may leave: every text redacted for the case (fails closed
    with RedactionFailed, and then nothing is sent)."""
    pieces = [_texts(m.content) for m in messages]
    flat = [t for texts in pieces for t in texts]
    result = await redactor.redact(flat)
    if result.count:
        # Text a caller should have redacted earlier; the count says how often it happens.
        log.info("redaction.caught_at_chain", case_id=redactor.case_id, count=result.count)
    it = iter(result.texts)
    out: list[BaseMessage] = []
    for m, texts in zip(messages, pieces, strict=True):
        redacted = [next(it) for _ in texts]
        if redacted == texts:
            out.append(m)
        else:
            out.append(m.model_copy(update={"content": _replace(m.content, redacted)}))
    return out
