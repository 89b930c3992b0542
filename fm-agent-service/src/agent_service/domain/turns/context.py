"""Gathering a turn's context: the case, attachments, history, retrieval, redaction."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field, ValidationError, model_validator

from agent_service.domain.privacy.pixels import RedactedImage, redact_image
from agent_service.domain.privacy.redaction import CaseRedactor
from agent_service.domain.privacy.safety import Fence
from agent_service.domain.turns.prompt import EvidenceBlock, Passage
from agent_service.runtime import AgentRuntime
from fm_common.contracts.agent import (
    LEGACY_TRANSITION_INTENTS,
    TURN_INTENT_TYPES,
    AttachmentResult,
    ConfirmationIntent,
    HypothesisActionIntent,
    StatusTransitionIntent,
    TurnIntent,
)
from fm_common.contracts.case import CaseContext, Message
from fm_common.contracts.evidence import TEXT_SOURCE_TYPES, EvidenceText, text_is_extracted
from fm_common.errors import FMError, PayloadTooLarge, Unprocessable

log = structlog.get_logger("agent.turns")


CAPTURE_SOURCES = frozenset({"screenshot", "page_capture"})


class FileInput(BaseModel):
    filename: str
    content_type: str = "application/octet-stream"
    data: bytes = b""


class TurnInput(BaseModel):
    """What the user sent (also the payload of a queued turn, with files already stored)."""

    query: str | None = None
    pasted_content: str | None = None
    files: list[FileInput] = Field(default_factory=list, exclude=True)
    intent_type: str | None = None
    intent_data: dict[str, Any] | None = None
    input_type: str | None = None
    source_url: str | None = None
    observed_at: str | None = None
    # Set when the attachments were stored before (a queued turn): read them back.
    stored: list[AttachmentResult] = Field(default_factory=list)
    # The validated intent (from intent_type + intent_data); never serialised, rebuilt
    # when a queued turn is read back.
    intent: TurnIntent | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _normalise(self) -> TurnInput:
        """Once, for every way a turn comes in: the query stripped (blank is none), blank
        pasted content none, and the intent checked against its type (422 otherwise)."""
        if self.query is not None:
            self.query = self.query.strip() or None
        if self.pasted_content is not None and not self.pasted_content.strip():
            self.pasted_content = None
        self.intent = parse_intent(self.intent_type, self.intent_data)
        if self.intent is not None:
            self.intent_type = self.intent.type
        return self

    def fingerprint(self, case_id: str) -> str:
        h = hashlib.sha256()
        for part in (case_id, self.query or "", self.pasted_content or "", self.intent_type or ""):
            h.update(part.encode() + b"\0")
        h.update(json.dumps(self.intent_data, sort_keys=True, default=str).encode())
        for f in self.files:
            h.update(f.filename.encode() + hashlib.sha256(f.data).digest())
        return h.hexdigest()


_INTENT_MODELS: dict[str, type[BaseModel]] = {
    "status_transition": StatusTransitionIntent,
    "confirmation": ConfirmationIntent,
    "hypothesis_action": HypothesisActionIntent,
}


def parse_intent(intent_type: str | None, data: dict[str, Any] | None) -> TurnIntent | None:
    """The turn's intent, or None for a plain question; Unprocessable (INVALID_INTENT)
    for an unknown type or intent_data that does not fit it."""
    kind = (intent_type or "").strip().lower() or None
    if kind is None and data and isinstance(data.get("type"), str):
        kind = data["type"].strip().lower()
    if kind is None:
        return None
    if kind in LEGACY_TRANSITION_INTENTS:
        kind = "status_transition"
    model = _INTENT_MODELS.get(kind)
    if model is None:
        raise Unprocessable(
            f"intent_type must be one of {', '.join(TURN_INTENT_TYPES)}.", code="INVALID_INTENT"
        )
    body = dict(data or {})
    if body.get("type") in LEGACY_TRANSITION_INTENTS:
        body["type"] = "status_transition"
    if body.setdefault("type", kind) != kind:
        raise Unprocessable("intent_data.type does not match intent_type.", code="INVALID_INTENT")
    try:
        return model.model_validate(body)  # type: ignore[return-value]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "intent_data"
        raise Unprocessable(f"intent_data.{where}: {first['msg']}", code="INVALID_INTENT") from None


@dataclass
class PreparedTurn:
    case_id: str
    ctx: CaseContext
    inp: TurnInput
    turn_key: str
    deadline: float
    attachments: list[AttachmentResult]
    evidence: list[EvidenceBlock]
    passages: list[Passage]
    history: list[Message]
    redactor: CaseRedactor
    messages: list[BaseMessage] = field(default_factory=list)
    redaction_count: int = 0
    redaction_kinds: list[str] = field(default_factory=list)
    retrieval_ok: bool = True
    # The prompt's fence: its boundary is stripped from anything shown, stored or resent.
    fence: Fence = field(default_factory=Fence)
    # Attached images, pixel-redacted, for providers with send_images (ADR 0112).
    images: list[RedactedImage] = field(default_factory=list)
    # Which attachment each evidence block (E1, E2 ...) was read from.
    evidence_files: dict[str, AttachmentResult] = field(default_factory=dict)
    # Tokens each evidence block is condensed to, and characters of each passage, both
    # applied after redaction (see prompt.build_prompt).
    evidence_budget: int = 1500
    passage_chars: int = 1500
    # Milliseconds per phase (logged with the answer; see docs/agent.md).
    timings: dict[str, float] = field(default_factory=dict)
    # Tokens of every model call of the turn.
    input_tokens: int = 0
    output_tokens: int = 0
    # time.perf_counter() when the turn started (the whole turn's latency is measured).
    started: float = field(default_factory=time.perf_counter)

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def check_caps(rt: AgentRuntime, inp: TurnInput) -> None:
    s = rt.settings
    if inp.query and len(inp.query) > s.max_query_chars:
        raise PayloadTooLarge(f"The query is longer than {s.max_query_chars} characters.")
    if inp.pasted_content and len(inp.pasted_content) > s.max_pasted_chars:
        raise PayloadTooLarge(f"The pasted content is longer than {s.max_pasted_chars} characters.")
    if len(inp.files) > s.max_files:
        raise PayloadTooLarge(f"At most {s.max_files} files per turn.")
    for f in inp.files:
        if len(f.data) > s.max_file_bytes:
            raise PayloadTooLarge(f"{f.filename} is larger than {s.max_file_bytes} bytes.")


async def store_attachments(
    rt: AgentRuntime,
    case_id: str,
    inp: TurnInput,
    turn_number: int,
    deadline: float | None = None,
    *,
    read_text: bool = True,
) -> list[tuple[AttachmentResult, str]]:
    """Store files and pasted content as evidence; return them with their text (with
    `read_text` off, as a queued turn stores them, the worker's reading is not awaited)."""
    # The extension's page capture and screenshot send their kind as `input_type`.
    source = inp.input_type if inp.input_type in CAPTURE_SOURCES else "file_upload"
    uploads: list[tuple[FileInput, str]] = [(f, source) for f in inp.files]
    if inp.pasted_content and inp.pasted_content.strip():
        data = inp.pasted_content.encode()
        uploads.append(
            (
                FileInput(filename="pasted-content.txt", content_type="text/plain", data=data),
                "paste",
            )
        )

    async def one(f: FileInput, source: str) -> tuple[AttachmentResult, str]:
        stored = await rt.evidence.upload(
            case_id,
            f.data,
            f.filename,
            upload_source=source,  # type: ignore[arg-type]
            uploaded_at_turn=turn_number,
            source_url=inp.source_url,
            content_type=f.content_type or "application/octet-stream",
        )
        result = AttachmentResult(
            file_id=stored.duplicate_of or stored.file_id,
            filename=stored.filename,
            file_size=stored.size_bytes,
            processing_status="completed",
            source_type=stored.source_type,
            upload_source=source,
            uploaded_at=stored.uploaded_at.isoformat(),
            duplicate_of=stored.duplicate_of,
        )
        if text_is_extracted(stored.source_type, stored.content_type):
            # An image (OCR) or office document: the worker reads it; wait for its text.
            return result, (await extracted_text(rt, result, deadline) if read_text else "")
        text = (
            f.data.decode("utf-8", errors="replace")
            if stored.source_type in TEXT_SOURCE_TYPES
            else ""
        )
        return result, text

    return list(await asyncio.gather(*(one(f, src) for f, src in uploads)))


async def extracted_text(
    rt: AgentRuntime, attachment: AttachmentResult, deadline: float | None
) -> str:
    """The text the worker read from an image or office document, waiting for it at most
    `attachment_text_wait_seconds` (and never past a third of what is left of the turn);
    a note instead when it could not be read, so the model can say so."""
    try:
        found = await wait_for_text(rt, attachment.file_id, deadline)
    except FMError as exc:  # the file is stored; only its text is out of reach now
        log.warning("turn.attachment_text_unavailable", file_id=attachment.file_id, error=exc.code)
        return "[The text of this file could not be fetched; it is not part of this answer.]"
    if found.status == "ready":
        return found.text or ""
    if found.status == "failed":
        return f"[No text could be read from this file: {found.error or 'unreadable'}]"
    if found.status == "pending":
        return "[The text of this file is still being read; it is not part of this answer.]"
    return ""


async def wait_for_text(rt: AgentRuntime, file_id: str, deadline: float | None) -> EvidenceText:
    wait = rt.settings.attachment_text_wait_seconds
    if deadline is not None:
        wait = min(wait, max(0.0, (deadline - time.monotonic()) / 3))
    return await rt.evidence.wait_text(file_id, timeout=wait)


async def read_stored(
    rt: AgentRuntime, stored: list[AttachmentResult], deadline: float | None = None
) -> list[tuple[AttachmentResult, str]]:
    """The text of attachments stored earlier (a queued turn run by the worker)."""
    limit = rt.settings.max_file_bytes

    async def one(a: AttachmentResult) -> tuple[AttachmentResult, str]:
        if a.source_type == "image":
            return a, await extracted_text(rt, a, deadline)
        if a.source_type not in TEXT_SOURCE_TYPES:
            return a, ""
        found = await rt.evidence.read_text(a.file_id)
        if found.status != "none":  # an office document: the text the worker read
            return a, await extracted_text(rt, a, deadline)
        data = await rt.evidence.read_content(a.file_id, max_bytes=limit)
        return a, data.decode("utf-8", errors="replace")

    return list(await asyncio.gather(*(one(a) for a in stored)))


async def vision_images(
    rt: AgentRuntime, attachments: list[AttachmentResult]
) -> list[RedactedImage]:
    """The attached images as the vision providers may see them: each a copy with every
    word the redactor flags in its OCR text blacked out. An image whose OCR text or
    layout is missing, or whose redaction fails, is left out (fail closed)."""
    out: list[RedactedImage] = []
    for a in attachments:
        if a.source_type != "image":
            continue
        try:
            found = await rt.evidence.read_text(a.file_id)
            if found.status != "ready":
                log.info("vision.not_sent", filename=a.filename, reason=f"ocr_{found.status}")
                continue
            data = await rt.evidence.read_content(a.file_id, max_bytes=rt.settings.max_file_bytes)
        except FMError as exc:
            log.warning("vision.not_sent", filename=a.filename, reason=exc.code)
            continue
        image = await asyncio.to_thread(redact_image, data, a.filename, found.text, found.layout)
        if image is not None:
            out.append(image)
    return out


async def _search(rt: AgentRuntime, case_id: str, query: str) -> tuple[list[Passage], bool]:
    if not query.strip() or rt.settings.retrieval_limit == 0:
        return [], True
    try:
        found = await rt.knowledge.search(
            query[:4000],
            limit=rt.settings.retrieval_limit,
            scopes=["personal", "global", "case"],
            case_id=case_id,
            mode=rt.settings.retrieval_mode,
            timeout=min(10.0, rt.settings.turn_deadline_seconds / 3),
        )
    except FMError as exc:
        # An answer without the knowledge base beats no answer; the prompt says so.
        log.warning("turn.retrieval_unavailable", case_id=case_id, error=exc.code)
        return [], False
    passages = [
        Passage(
            sid=f"S{i}",
            document_id=r.document_id,
            chunk_id=r.chunk_id,
            title=r.title,
            scope=r.scope,
            score=round(r.score, 4),
            # Whole: cut to passage_chars only once redacted (build_prompt), never a
            # secret cut in half that no detector recognizes any more.
            content=r.content,
        )
        for i, r in enumerate(found.results, start=1)
    ]
    return passages, True


def _search_text(inp: TurnInput, texts: list[str]) -> str:
    if inp.query and inp.query.strip():
        return inp.query
    for text in texts:
        if text.strip():
            return text[:1000]
    return ""


async def prepare_turn(
    rt: AgentRuntime, case_id: str, inp: TurnInput, turn_key: str, deadline: float
) -> PreparedTurn:
    """Everything the model will see, redacted and fenced (raises before any text leaves)."""
    started = time.perf_counter()
    # An intent turn is decided without the model: nothing to search for.
    decided = inp.intent is not None
    has_query = bool(inp.query) and not decided
    # The case (which proves ownership) with its recent history in one call and, when
    # there is a query, the retrieval run side by side; each is scoped to the caller.
    # The retrieval is sent first: it is the long pole (the query is embedded).
    search = asyncio.ensure_future(_search(rt, case_id, inp.query or "")) if has_query else None
    first: list[Any] = [rt.case.get_case(case_id, history=rt.settings.history_messages)]
    if search is not None:
        first.append(search)
    if inp.stored:
        first.append(read_stored(rt, inp.stored, deadline))
    done: list[Any] = list(await asyncio.gather(*first, return_exceptions=True))
    for outcome in done:  # the case's answer first: a 404 wins over anything else
        if isinstance(outcome, BaseException):
            raise outcome
    ctx: CaseContext = done[0]
    history = ctx.recent_messages
    rest = done[1:]
    passages, retrieval_ok = rest.pop(0) if search is not None else ([], True)
    if inp.stored:
        attached = rest.pop(0)
    else:
        attached = await store_attachments(rt, case_id, inp, ctx.case.current_turn + 1, deadline)
    if not has_query and not decided:
        texts = [t for _, t in attached]
        passages, retrieval_ok = await _search(rt, case_id, _search_text(inp, texts))
    redactor = rt.redactor(case_id)
    attachments = [a for a, _ in attached]
    images = await vision_images(rt, attachments) if rt.settings.sends_images else []
    texts = [(a, t) for a, t in attached if t.strip()]
    budget = max(200, rt.settings.evidence_token_budget // max(1, len(texts)))
    # The whole text: it is redacted before it is condensed (build_prompt), so a secret
    # the condenser would cut apart (a private key's header and body) is seen whole.
    evidence = [
        EvidenceBlock(
            eid=f"E{i}",
            label=f"{a.filename} ({a.source_type}, {a.upload_source})",
            content=t,
        )
        for i, (a, t) in enumerate(texts, start=1)
    ]
    return PreparedTurn(
        case_id=case_id,
        ctx=ctx,
        inp=inp,
        turn_key=turn_key,
        deadline=deadline,
        attachments=attachments,
        evidence=evidence,
        evidence_files={f"E{i}": a for i, (a, _) in enumerate(texts, start=1)},
        passages=passages,
        history=history,
        redactor=redactor,
        retrieval_ok=retrieval_ok,
        images=images,
        evidence_budget=budget,
        passage_chars=rt.settings.passage_chars,
        timings={"context_ms": round((time.perf_counter() - started) * 1000, 2)},
        started=started,
    )
