"""The structured answer the model gives each turn, its validation, and streaming it.

The model answers one JSON object whose first key is `answer`; while it streams, the
`answer` string is decoded as it arrives (so the user reads it while the model still
writes the rest). A malformed object is retried once, then degraded to a plain answer.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

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

    @model_validator(mode="before")
    @classmethod
    def _drop_unreadable_items(cls, data: Any) -> Any:
        """A hypothesis, suggested action or evidence finding that fails its own shape (an
        empty statement, a likelihood of 7, a finding without its evidence id) is dropped,
        not the whole answer; a blank optional text is none. A small model's answer keeps
        what it got right (`make test-llm`: SmolLM2 wrote whole sentences as the evidence
        id, and lost two answers over it)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key, model in (
            ("hypotheses", LLMHypothesis),
            ("suggested_actions", LLMAction),
            ("evidence_findings", LLMEvidenceFinding),
        ):
            items = data.get(key)
            if isinstance(items, list):
                kept = []
                for item in items:
                    try:
                        kept.append(model.model_validate(item))
                    except ValidationError:
                        continue
                data[key] = kept
        for key in ("cited_sources", "milestone_updates"):
            if isinstance(data.get(key), list):
                data[key] = [v for v in data[key] if isinstance(v, str)]
        for key in ("working_conclusion", "root_cause"):
            value = data.get(key)
            if isinstance(value, str) and not value.strip():
                data[key] = None
        return data


# The name of the structured output (a JSON schema's name, an Anthropic tool's name).
ANSWER_TOOL = "turn_answer"
# Keywords the providers' constrained decoding does not take (OpenAI strict mode refuses
# them; llama.cpp would expand a maxLength of 40 000 into a grammar that large):
# pydantic still holds the answer to them after decoding.
_UNCONSTRAINED = frozenset({"title", "default", "minLength", "maxLength"})


def answer_json_schema(source_ids: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON schema a provider's constrained decoding holds the answer to, generated
    from `LLMTurnAnswer` (what is validated afterwards): every key required and in the
    model's order (`answer` first, so it streams first), no other keys, milestones from
    the known list, cited sources from this prompt's ids."""
    full = LLMTurnAnswer.model_json_schema()
    defs = full.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return walk(defs[ref.removeprefix("#/$defs/")])
        out = {k: walk(v) for k, v in node.items() if k not in _UNCONSTRAINED}
        if isinstance(out.get("properties"), dict):
            out["required"] = list(out["properties"])
            out["additionalProperties"] = False
        return out

    schema: dict[str, Any] = walk(full)
    props = schema["properties"]
    props["milestone_updates"]["items"] = {"type": "string", "enum": list(MILESTONES)}
    if source_ids:
        props["cited_sources"]["items"] = {"type": "string", "enum": list(source_ids)}
    return schema


class MalformedAnswer(ValueError):
    pass


_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.IGNORECASE)


def parse_answer(text: str) -> LLMTurnAnswer:
    """Validate the model's JSON answer; MalformedAnswer (with the reason) otherwise.

    Never raises anything else, whatever the text (bad escapes, lone surrogates, nesting
    deep enough to exhaust the parser): a parse error degrades the turn, never fails it.
    """
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise MalformedAnswer("the answer is not a JSON object")
    try:
        # strict=False: raw newlines and tabs inside strings, which small models write.
        data = _clean(json.loads(body[start : end + 1], strict=False))
    except json.JSONDecodeError as exc:
        raise MalformedAnswer(f"invalid JSON: {exc.msg} at {exc.pos}") from None
    except (ValueError, RecursionError) as exc:
        raise MalformedAnswer(f"invalid JSON: {type(exc).__name__}") from None
    try:
        return LLMTurnAnswer.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedAnswer(f"{where}: {first['msg']}") from None


def close_truncated(text: str) -> str | None:
    """A JSON object cut off at the output cap, closed where it stopped: an unfinished
    string is ended (a dangling escape dropped), a dangling key or comma removed, and the
    open arrays and objects closed. None when the text is not a cut-off object. Only for
    an answer the provider cut at the cap: what was written stays as it was written."""
    body = _FENCE.sub("", text.strip())
    start = body.find("{")
    if start < 0:
        return None
    body = body[start:]
    stack: list[str] = []
    in_string = False
    i = 0
    last_safe = 0  # where the text can be cut so that only closers are missing
    while i < len(body):
        ch = body[i]
        if in_string:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack:
                return None
            stack.pop()
            if not stack:
                return None  # the object was complete: not a truncation
        i += 1
        if not in_string:
            last_safe = i
    out = body
    if in_string:
        cut = body
        # Drop a dangling escape (`\\`, `\\u12`) at the very end.
        cut = re.sub(r"\\(u[0-9a-fA-F]{0,3})?$", "", cut)
        out = cut + '"'
    else:
        # A literal or number cut short (`nu`, `0.`) is dropped with its key below.
        out = re.sub(r"[A-Za-z0-9.+\-]+$", "", body[:last_safe].rstrip())
    # A key without its value, or a trailing comma, cannot be closed: drop it.
    out = re.sub(r'(,\s*"(?:[^"\\]|\\.)*"\s*:?\s*|,\s*|:\s*)$', "", out.rstrip())
    out = re.sub(
        r'([{,]\s*"(?:[^"\\]|\\.)*")\s*$',
        lambda m: m.group(1)[:1] if m.group(1)[0] == "{" else "",
        out,
    )
    return out + "".join(reversed(stack))


def _clean(value: Any) -> Any:
    """Lone surrogates (valid JSON escapes, not valid text) become U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def plain_answer(text: str) -> str:
    """The best plain reading of a malformed answer: its `answer` string, else the text."""
    extractor = AnswerExtractor()
    extracted = extractor.feed(text) + extractor.flush()
    if extractor.mode == "json" and extracted.strip():
        return extracted
    cleaned = _SURROGATE.sub("\ufffd", _FENCE.sub("", text.strip()))
    return cleaned if cleaned and not cleaned.lstrip().startswith("{") else ""


_KEY = re.compile(r'"answer"\s*:\s*"')
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_SURROGATE = re.compile("[\ud800-\udfff]")
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
                    decoded, used = _unicode_escape(buf, i)
                    if used == 0:  # the second half of a surrogate pair is still coming
                        break
                    out.append(decoded)
                    i += used
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


def _unicode_escape(buf: str, i: int) -> tuple[str, int]:
    """Decode the `\\u` escape at buf[i]: (text, characters used), or ("", 0) to wait
    for more. Invalid escapes (`\\uZZZZ`, lone surrogates) become U+FFFD, never an error."""
    head = buf[i + 2 : i + 6]
    if not _HEX4.fullmatch(head):
        return "\ufffd", 2  # skip the `\u`; what follows is read as text
    code = int(head, 16)
    if 0xD800 <= code < 0xDC00:  # a high surrogate needs its low half
        if i + 12 > len(buf):
            tail = buf[i + 6 :]
            if "\\u".startswith(tail[:2]) and all(c in "0123456789abcdefABCDEF" for c in tail[2:]):
                return "", 0
            return "\ufffd", 6
        low_head = buf[i + 8 : i + 12]
        if buf[i + 6 : i + 8] == "\\u" and _HEX4.fullmatch(low_head):
            low = int(low_head, 16)
            if 0xDC00 <= low < 0xE000:
                return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), 12
        return "\ufffd", 6
    if 0xDC00 <= code < 0xE000:
        return "\ufffd", 6
    return chr(code), 6
