"""Post-mortems (run by the worker's `agent.generate_postmortem`).

Written by the provider chain from the case record (redacted, fenced), or, with no
provider configured, assembled from the case's own structured state: never invented.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from agent_service.domain.evidence.condense import condense_text
from agent_service.domain.privacy.safety import Fence, sanitize_markdown
from agent_service.domain.turns.prompt import postmortem_messages
from agent_service.runtime import AgentRuntime
from fm_common.contracts.case import CaseContext, Message, ReportStoreRequest
from fm_common.contracts.evidence import UploadedFilesList
from fm_common.errors import FMError

log = structlog.get_logger("agent.postmortem")
SECTIONS = ("## Summary", "## Impact", "## Timeline", "## Root cause", "## Resolution")
# The evidence whose text the post-mortem reads (the most recent first), and how much.
EVIDENCE_FILES = 10
EVIDENCE_READ_BYTES = 1_000_000


def case_facts(
    ctx: CaseContext,
    messages: list[Message],
    files: UploadedFilesList | None,
    evidence: list[tuple[str, str]] | None = None,
) -> str:
    """The case record as text: state, investigation, conversation, evidence (the list,
    and the condensed text of each attachment, pasted logs included)."""
    case, inv = ctx.case, ctx.investigation
    lines = [
        f"Title: {case.title}",
        f"State: {case.state.value}; opened {case.created_at.isoformat()}",
        f"Resolved at: {case.resolved_at.isoformat() if case.resolved_at else 'not resolved'}",
        f"Problem: {inv.problem_statement or case.description or 'not stated'}",
        f"Impact: {inv.user_impact or 'not recorded'}; severity: {inv.severity or 'unknown'}",
        "Milestones done: " + (", ".join(inv.milestones_completed) or "none"),
    ]
    for h in inv.hypotheses:
        lines.append(f"Hypothesis ({h.state}, likelihood {h.likelihood:.2f}): {h.text}")
    if inv.root_cause:
        lines.append(f"Root cause: {inv.root_cause.description}")
    if inv.solution:
        lines.append(f"Solution: {inv.solution.description}")
    lines.append("Conversation:")
    for m in messages:
        lines.append(f"- {m.created_at} {m.role}: {' '.join(m.content.split())[:600]}")
    if files and files.files:
        lines.append("Evidence:")
        for f in files.files:
            lines.append(f"- {f.uploaded_at.isoformat()} {f.filename} ({f.source_type})")
    for name, text in evidence or []:
        lines += [f"Evidence content of {name} (condensed):", text]
    return "\n".join(lines)


async def evidence_texts(
    rt: AgentRuntime, files: UploadedFilesList | None
) -> list[tuple[str, str]]:
    """(file name, text) of the case's text attachments, pasted content included; a file
    that cannot be read is left out (the post-mortem still has the list)."""
    if files is None:
        return []
    recent = sorted(files.files, key=lambda f: f.uploaded_at, reverse=True)[:EVIDENCE_FILES]

    async def one(file_id: str) -> bytes:
        return await rt.evidence.read_content(file_id, max_bytes=EVIDENCE_READ_BYTES)

    read = await asyncio.gather(*(one(f.file_id) for f in recent), return_exceptions=True)
    out: list[tuple[str, str]] = []
    for f, data in zip(recent, read, strict=True):
        if isinstance(data, FMError):
            log.warning("postmortem.evidence_unreadable", file_id=f.file_id, error=data.code)
            continue
        if isinstance(data, BaseException):
            raise data
        if b"\0" in data[:4096]:  # binary (an image, an archive): its name is listed
            continue
        out.append((f.filename, data.decode("utf-8", errors="replace")))
    return out


def structured_postmortem(
    ctx: CaseContext, messages: list[Message], files: UploadedFilesList | None
) -> str:
    """A post-mortem from the case's own structured state (no LLM)."""
    case, inv = ctx.case, ctx.investigation
    first_user = next((m.content for m in messages if m.role == "user"), "")
    summary = inv.problem_statement or case.description or " ".join(first_user.split())[:500]
    out = [f"# Post-mortem: {case.title}", "", "## Summary", summary or "Not recorded.", ""]
    out += [f"Case state: {case.state.value}.", "", "## Impact"]
    out.append(
        inv.user_impact or (f"Severity {inv.severity}." if inv.severity else "Not recorded.")
    )
    out += ["", "## Timeline", f"- {case.created_at.isoformat()} Case opened"]
    events: list[tuple[str, str]] = [
        (m.created_at, f"Reported: {' '.join(m.content.split())[:160]}")
        for m in messages
        if m.role == "user"
    ]
    if files:
        events += [
            (f.uploaded_at.isoformat(), f"Evidence added: {f.filename}") for f in files.files
        ]
    out += [f"- {at} {text}" for at, text in sorted(events)]
    if case.resolved_at:
        out.append(f"- {case.resolved_at.isoformat()} Case resolved")
    out += ["", "## Root cause"]
    if inv.root_cause:
        out.append(inv.root_cause.description)
    elif inv.hypotheses:
        best = max(inv.hypotheses, key=lambda h: h.likelihood)
        out.append(f"Not confirmed. Leading hypothesis ({best.likelihood:.0%}): {best.text}")
    else:
        out.append("Not identified.")
    if inv.hypotheses:
        out += ["", "### Hypotheses considered"]
        out += [f"- {h.text} ({h.state}, {h.likelihood:.0%})" for h in inv.hypotheses]
    out += ["", "## Resolution", inv.solution.description if inv.solution else "Not recorded."]
    out += ["", "## Action items"]
    out += [f"- [ ] {a}" for a in inv.next_actions]
    out.append("- [ ] Write or update the runbook for this failure mode")
    return "\n".join(out) + "\n"


async def write_postmortem(rt: AgentRuntime, case_id: str) -> tuple[str, str | None]:
    """(Markdown, provider used or None)."""
    # The case with its conversation (one call) and the evidence list, side by side.
    ctx: CaseContext | BaseException
    listed: UploadedFilesList | BaseException
    ctx, listed = await asyncio.gather(
        rt.case.get_case(case_id, history=100),
        rt.evidence.list_case_files(case_id, limit=50),
        return_exceptions=True,
    )
    if isinstance(ctx, BaseException):
        raise ctx
    messages = ctx.recent_messages
    files: UploadedFilesList | None = None
    if isinstance(listed, FMError):
        log.warning("postmortem.evidence_unavailable", case_id=case_id, error=listed.code)
    elif isinstance(listed, BaseException):
        raise listed
    else:
        files = listed
    if not rt.chain.configured:
        return structured_postmortem(ctx, messages, files), None
    redactor = rt.redactor(case_id)
    # Messages redacted whole before case_facts cuts them; the attachments' text redacted
    # whole, then condensed (logs: templates, errors, timeline) within the evidence budget
    # shared between them; then the record as a whole.
    said = (await redactor.redact([m.content for m in messages])).texts
    redacted = [m.model_copy(update={"content": c}) for m, c in zip(messages, said, strict=True)]
    texts = await evidence_texts(rt, files)
    bodies = (await redactor.redact([t for _, t in texts])).texts if texts else []
    budget = max(200, rt.settings.evidence_token_budget // max(1, len(texts)))
    condensed = await asyncio.to_thread(lambda: [condense_text(b, budget) for b in bodies])
    evidence = [(name, c) for (name, _), c in zip(texts, condensed, strict=True)]
    facts = (await redactor.redact([case_facts(ctx, redacted, files, evidence)])).texts[0]
    deadline = time.monotonic() + rt.settings.turn_deadline_seconds
    result = await rt.chain.complete(
        postmortem_messages(Fence(), facts), redactor=redactor, deadline=deadline
    )
    markdown = sanitize_markdown(redactor.restore(result.text), rt.settings.link_allowlist)
    if sum(1 for s in SECTIONS if s.lower() in markdown.lower()) < 3:
        log.warning("postmortem.malformed", case_id=case_id, provider=result.provider)
        return structured_postmortem(ctx, messages, files), None
    return markdown.strip() + "\n", result.provider


async def save_to_knowledge(rt: AgentRuntime, case_id: str, markdown: str) -> str | None:
    """The report as a personal runbook of the owner (ingested by the worker); a failure
    here never fails the report."""
    title = markdown.splitlines()[0].lstrip("# ").strip()[:200] or "Post-mortem"
    try:
        resp = await rt.knowledge.request(
            "POST",
            "/api/v1/knowledge/documents",
            files={"file": (f"postmortem-{case_id}.md", markdown.encode(), "text/markdown")},
            data={
                "title": title,
                "document_type": "runbook",
                "scope": "personal",
                "tags": "postmortem",
                "description": f"Post-mortem of case {case_id}",
            },
        )
    except FMError as exc:
        log.warning("postmortem.knowledge_save_failed", case_id=case_id, error=exc.code)
        return None
    document_id = resp.json().get("document_id")
    return str(document_id) if document_id else None


async def generate_postmortem(rt: AgentRuntime, case_id: str, report_id: str) -> dict[str, object]:
    """Write the report and store it through the case service."""
    await rt.case.store_report(case_id, report_id, ReportStoreRequest(status="running"))
    markdown, provider = await write_postmortem(rt, case_id)
    await rt.case.store_report(
        case_id, report_id, ReportStoreRequest(status="completed", content=markdown)
    )
    document_id = None
    if rt.settings.save_postmortems_to_knowledge:
        document_id = await save_to_knowledge(rt, case_id, markdown)
    log.info(
        "postmortem.stored",
        case_id=case_id,
        report_id=report_id,
        provider=provider,
        knowledge_document_id=document_id,
    )
    return {
        "report_id": report_id,
        "case_id": case_id,
        "status": "completed",
        "provider": provider,
        "knowledge_document_id": document_id,
    }
