"""What a turn concluded from each attachment: the file's derived evidence, shown by the
extension's evidence link and details window (API.md; docs/evidence.md).

Built from the processed attachment whatever its type (the source type is the evidence
kind: logs, metrics, configuration, code, text, image): the model's finding for its
evidence block when it gave one, else a summary of what was read from it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from agent_service.domain.evidence.condense import condense_log, looks_like_log
from agent_service.domain.turns.answer import LLMTurnAnswer
from agent_service.domain.turns.context import PreparedTurn
from agent_service.runtime import AgentRuntime
from fm_common.contracts.case import EvidenceItem, InvestigationState
from fm_common.contracts.evidence import DerivedEvidenceCreate, derived_source_type
from fm_common.errors import FMError

log = structlog.get_logger("agent.turns")
MAX_SUMMARY = 500
# Evidence items kept in the investigation state (the newest).
MAX_INVESTIGATION_EVIDENCE = 100


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 3] + "..."


def read_summary(content: str) -> str:
    """A summary of what was read, without a model: a condensed log's header lines and
    first error, else the first lines of the text (CPU work for a big log: run it off the
    event loop)."""
    if not content.lstrip().startswith("Log summary:") and looks_like_log(content):
        content = condense_log(content, token_budget=300).text
    lines = [line.strip() for line in content.splitlines() if line.strip()]
    if lines and lines[0].startswith("Log summary:"):
        picked = [lines[0].removeprefix("Log summary: ")]
        picked += [line for line in lines[1:3] if line.startswith("Levels:")]
        errors = [
            line.removeprefix("- ")
            for i, line in enumerate(lines)
            if i > 0 and lines[i - 1].startswith("Errors")
        ]
        if errors:
            picked.append("first error: " + errors[0])
        return _cut("; ".join(picked))
    return _cut(" ".join(lines[:3]))


def evidence_id(turn_key: str, file_id: str) -> str:
    digest = hashlib.sha256(f"{turn_key}\0{file_id}".encode()).hexdigest()
    return f"ev-{digest[:32]}"


def derived_evidence(
    prep: PreparedTurn,
    answer: LLMTurnAnswer | None,
    inv: InvestigationState,
    turn_number: int,
    restore: Callable[[str], str],
) -> list[tuple[str, DerivedEvidenceCreate]]:
    """(file_id, what this turn derived from it) for each attachment of the turn."""
    findings = {f.evidence: f for f in answer.findings_by_block()} if answer else {}
    by_text = {h.text.strip().lower(): h.hypothesis_id for h in inv.hypotheses}
    blocks = {e.eid: e for e in prep.evidence}
    eid_of = {a.file_id: eid for eid, a in prep.evidence_files.items()}
    question = (prep.inp.query or "")[:200] or None
    out: list[tuple[str, DerivedEvidenceCreate]] = []
    seen: set[str] = set()
    for a in prep.attachments:
        if a.file_id in seen:
            continue
        seen.add(a.file_id)
        eid = eid_of.get(a.file_id)
        finding = findings.get(eid) if eid else None
        related: list[str] = []
        if answer is not None and eid:
            for h in answer.hypotheses:
                hid = by_text.get(restore(h.statement)[:500].strip().lower())
                if eid in h.evidence and hid and hid not in related:
                    related.append(hid)
        if finding is not None:
            summary, category = _cut(restore(finding.summary)), finding.category
        elif eid and eid in blocks:
            summary, category = read_summary(blocks[eid].content), "OTHER"
        else:
            summary = f"{a.filename}: no text could be read from this {a.source_type} file."
            category = "OTHER"
        out.append(
            (
                a.file_id,
                DerivedEvidenceCreate(
                    evidence_id=evidence_id(prep.turn_key, a.file_id),
                    summary=summary or f"{a.filename} ({a.source_type})",
                    category=category,
                    source_type=derived_source_type(a.source_type),
                    collected_at_turn=turn_number,
                    primary_purpose=question,
                    related_hypothesis_ids=related[:20],
                ),
            )
        )
    return out


def with_evidence(
    inv: InvestigationState,
    prep: PreparedTurn,
    items: list[tuple[str, DerivedEvidenceCreate]],
) -> InvestigationState:
    """The investigation with this turn's derived evidence added (replayed ids once)."""
    names = {a.file_id: a.filename for a in prep.attachments}
    state = inv.model_copy(deep=True)
    known = {e.evidence_id for e in state.evidence}
    now = datetime.now(UTC)
    for file_id, d in items:
        if d.evidence_id in known:
            continue
        state.evidence.append(
            EvidenceItem(
                evidence_id=d.evidence_id,
                type=d.source_type.lower(),
                summary=d.summary,
                timestamp=now,
                category=d.category,
                collected_at_turn=d.collected_at_turn,
                source_filename=names.get(file_id),
            )
        )
    state.evidence = state.evidence[-MAX_INVESTIGATION_EVIDENCE:]
    return state


async def record_derived(
    rt: AgentRuntime, case_id: str, items: list[tuple[str, DerivedEvidenceCreate]]
) -> int:
    """Store them with the evidence service; the turn is already stored, so a failure is
    logged, not raised. Returns how many were stored."""

    async def one(file_id: str, body: DerivedEvidenceCreate) -> bool:
        try:
            await rt.evidence.add_derived(file_id, body)
        except FMError as exc:
            log.warning("turn.derived_evidence_failed", case_id=case_id, error=exc.code)
            return False
        return True

    done = await asyncio.gather(*(one(f, b) for f, b in items))
    return sum(done)
