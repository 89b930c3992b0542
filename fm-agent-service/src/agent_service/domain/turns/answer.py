"""The structured answer the model gives each turn, its validation, and streaming it.

The model answers one JSON object whose first key is `answer`; while it streams, the
`answer` string is decoded as it arrives (so the user reads it while the model still
writes the rest). A malformed object is retried once, then degraded to a plain answer.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from fm_common.contracts.case import MILESTONES

ANSWER_SCHEMA = """{
  "answer": "<your reply to the user, Markdown, citing sources as [S1]>",
  "cited_sources": ["S1"],
  "milestone_updates": ["<milestones this turn completed, from: MILESTONES>"],
  "hypotheses": [{"statement": "...", "likelihood": 0.0-1.0, "evidence": ["S1", "E1"]}],
  "working_conclusion": "<one sentence or null>",
  "root_cause": "<only once identified, else null>",
  "proposed_state": "<investigating | resolved | closed, or null>",
  "evidence_findings": [{"evidence": "E1", "summary": "<what this attachment shows>",
    "category": "SYMPTOM_EVIDENCE|CAUSAL_EVIDENCE|SYMPTOM_ABSENCE_EVIDENCE|
    CAUSAL_ABSENCE_EVIDENCE|OTHER"}],
  "suggested_actions": [{"label": "...", "type": "DECIDE|RUN|EVIDENCE|FREE_SPEECH",
    "payload": "<DECIDE: the exact message the user would send next; RUN: the exact
    command to run; EVIDENCE: what data to collect and how; else null>"}]
}""".replace("MILESTONES", ", ".join(MILESTONES))


class LLMHypothesis(BaseModel):
    statement: str = Field(min_length=1, max_length=500)
    likelihood: float = Field(default=0.5, ge=0.0, le=1.0)
    evidence: list[str] = Field(default_factory=list, max_length=20)


# The extension's card types (fm_common.contracts.agent.SuggestedActionType), and the
# older names a model may still use, read as the nearest one.
_ACTION_ALIASES = {
    "question": "DECIDE",
    "answer": "DECIDE",
    "reply": "DECIDE",
    "command": "RUN",
    "run": "RUN",
    "upload_data": "EVIDENCE",
    "evidence": "EVIDENCE",
    "data": "EVIDENCE",
}


class LLMAction(BaseModel):
    label: str = Field(min_length=1, max_length=200)
    type: Literal["DECIDE", "RUN", "EVIDENCE", "FREE_SPEECH"] = "FREE_SPEECH"
    payload: str | None = Field(default=None, max_length=2000)

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return "FREE_SPEECH"
        upper = value.strip().upper()
        if upper in ("DECIDE", "RUN", "EVIDENCE", "FREE_SPEECH"):
            return upper
        return _ACTION_ALIASES.get(value.strip().lower(), "FREE_SPEECH")


class LLMEvidenceFinding(BaseModel):
    """What the model concluded from one attachment (E1, E2 ...): the file's derived
    evidence in the uploaded-files details."""

    evidence: str = Field(min_length=1, max_length=10)
    summary: str = Field(min_length=1, max_length=500)
    category: Literal[
        "SYMPTOM_EVIDENCE",
        "CAUSAL_EVIDENCE",
        "SYMPTOM_ABSENCE_EVIDENCE",
        "CAUSAL_ABSENCE_EVIDENCE",
        "OTHER",
    ] = "OTHER"

    @field_validator("category", mode="before")
    @classmethod
    def _known_category(cls, value: Any) -> Any:
        known = (
            "SYMPTOM_EVIDENCE",
            "CAUSAL_EVIDENCE",
            "SYMPTOM_ABSENCE_EVIDENCE",
            "CAUSAL_ABSENCE_EVIDENCE",
        )
        return value.upper() if isinstance(value, str) and value.upper() in known else "OTHER"


class LLMTurnAnswer(BaseModel):
    answer: str = Field(min_length=1, max_length=40_000)
    cited_sources: list[str] = Field(default_factory=list, max_length=50)
    milestone_updates: list[str] = Field(default_factory=list)
    hypotheses: list[LLMHypothesis] = Field(default_factory=list, max_length=10)
    working_conclusion: str | None = Field(default=None, max_length=1000)
    root_cause: str | None = Field(default=None, max_length=1000)
    proposed_state: Literal["investigating", "resolved", "closed"] | None = None
    suggested_actions: list[LLMAction] = Field(default_factory=list, max_length=10)
    evidence_findings: list[LLMEvidenceFinding] = Field(default_factory=list, max_length=20)

    def findings_by_block(self) -> list[LLMEvidenceFinding]:
        """The findings, the first one for each evidence block."""
        seen: set[str] = set()
        out = []
        for f in self.evidence_findings:
            key = f.evidence.strip().upper()
            if key not in seen:
                seen.add(key)
                out.append(f.model_copy(update={"evidence": key}))
        return out

    @field_validator("milestone_updates")
    @classmethod
    def _known_milestones(cls, value: list[str]) -> list[str]:
        return [m for m in value if m in MILESTONES]

    @field_validator("proposed_state", mode="before")
    @classmethod
    def _blank_state(cls, value: Any) -> Any:
        return None if value in ("", "null", "none", "None") else value


class MalformedAnswer(ValueError):
    pass


_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.IGNORECASE)


def parse_answer(text: str) -> LLMTurnAnswer:
    """Validate the model's JSON answer; MalformedAnswer (with the reason) otherwise."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise MalformedAnswer("the answer is not a JSON object")
    try:
        data = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise MalformedAnswer(f"invalid JSON: {exc.msg} at {exc.pos}") from None
    try:
        return LLMTurnAnswer.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedAnswer(f"{where}: {first['msg']}") from None


def plain_answer(text: str) -> str:
    """The best plain reading of a malformed answer: its `answer` string, else the text."""
    extractor = AnswerExtractor()
    extracted = extractor.feed(text) + extractor.flush()
    if extractor.mode == "json" and extracted.strip():
        return extracted
    cleaned = _FENCE.sub("", text.strip())
    return cleaned if cleaned and not cleaned.lstrip().startswith("{") else ""


_KEY = re.compile(r'"answer"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class AnswerExtractor:
    """Decodes the `answer` string of a streamed JSON object as it arrives.

    Prose (the model ignored the format) is passed through as it is.
    """

    def __init__(self) -> None:
        self.mode: Literal["detect", "json", "prose"] = "detect"
        self._buf = ""
        self._state: Literal["seek", "string", "done"] = "seek"

    def feed(self, chunk: str) -> str:
        self._buf += chunk
        if self.mode == "detect":
            stripped = self._buf.lstrip()
            if stripped.startswith("```"):
                if "\n" not in stripped:
                    return ""
                stripped = stripped.split("\n", 1)[1].lstrip()
            if not stripped:
                return ""
            self.mode = "json" if stripped.startswith("{") else "prose"
        if self.mode == "prose":
            out, self._buf = self._buf, ""
            return out
        return self._decode()

    def _decode(self) -> str:
        if self._state == "seek":
            m = _KEY.search(self._buf)
            if not m:
                return ""
            self._buf = self._buf[m.end() :]
            self._state = "string"
        if self._state != "string":
            return ""
        out: list[str] = []
        i, buf = 0, self._buf
        while i < len(buf):
            ch = buf[i]
            if ch == '"':
                self._state = "done"
                i += 1
                break
            if ch == "\\":
                if i + 1 >= len(buf):
                    break
                esc = buf[i + 1]
                if esc == "u":
                    if i + 6 > len(buf):
                        break
                    code = int(buf[i + 2 : i + 6], 16)
                    if 0xD800 <= code < 0xDC00:  # a surrogate pair needs its second half
                        if i + 12 > len(buf):
                            break
                        low = int(buf[i + 8 : i + 12], 16)
                        out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                        i += 12
                        continue
                    out.append(chr(code))
                    i += 6
                    continue
                out.append(_ESCAPES.get(esc, esc))
                i += 2
                continue
            out.append(ch)
            i += 1
        self._buf = buf[i:]
        return "".join(out)

    def flush(self) -> str:
        if self.mode == "detect":
            out, self._buf = self._buf, ""
            self.mode = "prose"
            return out
        return ""
