"""Stable per-case placeholders, kept in Redis with the case, and their restoration.

Every value `find_sensitive` reports is replaced by `<LABEL_N>`; the same value gets the
same placeholder in every turn of the case (so the model can correlate), and the map
restores the originals in what the user sees. Any failure raises RedactionFailed: the
caller sends nothing (fail closed).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

import structlog

from agent_service.domain.privacy.detect import LABELS, PLACEHOLDER_RE, find_sensitive
from fm_common.errors import Unavailable

log = structlog.get_logger("agent.redaction")

# One round trip for a batch: ARGV = ttl, then (digest, label, original) triples.
_ALLOCATE = """
local out = {}
for i = 2, #ARGV, 3 do
  local digest, label, original = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ph = redis.call('HGET', KEYS[1], 'v:' .. digest)
  if not ph then
    local n = redis.call('HINCRBY', KEYS[1], 'n:' .. label, 1)
    ph = '<' .. label .. '_' .. n .. '>'
    redis.call('HSET', KEYS[1], 'v:' .. digest, ph, 'p:' .. ph, original)
  end
  table.insert(out, ph)
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return out
"""


class RedactionFailed(Unavailable):
    code, detail = (
        "REDACTION_UNAVAILABLE",
        "Sensitive data could not be redacted, so nothing was sent to the model.",
    )


def map_key(case_id: str) -> str:
    return f"fm:agent:redact:{case_id}"


@dataclass
class RedactionResult:
    texts: list[str]
    count: int = 0
    kinds: list[str] = field(default_factory=list)


class CaseRedactor:
    """Redacts text for one case; `restore` turns placeholders back into originals."""

    def __init__(self, redis: object, case_id: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.case_id = case_id
        self.ttl = ttl_seconds
        self.originals: dict[str, str] = {}
        self.kinds: Counter[str] = Counter()

    async def redact(self, texts: list[str]) -> RedactionResult:
        """Each text with every sensitive value replaced by its case placeholder."""
        try:
            found = [find_sensitive(t) for t in texts]
            unique: dict[str, str] = {}
            for findings in found:
                for f in findings:
                    unique.setdefault(f.value, LABELS[f.kind])
            placeholders: dict[str, str] = {}
            if unique:
                argv: list[str | int] = [self.ttl]
                values = list(unique)
                for value in values:
                    digest = hashlib.sha256(value.encode()).hexdigest()
                    argv += [digest, unique[value], value]
                result = await self.redis.eval(_ALLOCATE, 1, map_key(self.case_id), *argv)  # type: ignore[attr-defined]
                placeholders = dict(zip(values, (str(p) for p in result), strict=True))
            out: list[str] = []
            count = 0
            kinds: list[str] = []
            for text, findings in zip(texts, found, strict=True):
                parts: list[str] = []
                pos = 0
                for f in findings:
                    parts.append(text[pos : f.start])
                    ph = placeholders[f.value]
                    parts.append(ph)
                    self.originals[ph] = f.value
                    self.kinds[f.kind] += 1
                    kinds.append(f.kind)
                    count += 1
                    pos = f.end
                parts.append(text[pos:])
                out.append("".join(parts))
        except Exception as exc:  # fail closed: whatever broke, nothing may leave
            log.warning("redaction.failed", case_id=self.case_id, error=type(exc).__name__)
            raise RedactionFailed() from exc
        return RedactionResult(out, count, sorted(set(kinds)))

    async def load(self) -> None:
        """Load every placeholder of the case (to restore text written in earlier turns)."""
        try:
            data = await self.redis.hgetall(map_key(self.case_id))  # type: ignore[attr-defined]
        except Exception as exc:
            raise RedactionFailed() from exc
        for k, v in data.items():
            if k.startswith("p:"):
                self.originals.setdefault(k[2:], v)

    def restore(self, text: str) -> str:
        return PLACEHOLDER_RE.sub(lambda m: self.originals.get(m.group(0), m.group(0)), text)

    def stream_restorer(self) -> StreamRestorer:
        return StreamRestorer(self.restore)


_PARTIAL = re.compile(r"<[A-Z]{0,6}(?:_\d{0,6})?$")


class StreamRestorer:
    """Restores placeholders in a token stream, holding back a placeholder split across
    chunks (`<IP` + `_1>`) until it is complete."""

    def __init__(self, restore: object) -> None:
        self._restore = restore
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        m = _PARTIAL.search(text)
        if m:
            self._held, text = text[m.start() :], text[: m.start()]
        else:
            self._held = ""
        return self._restore(text)  # type: ignore[operator]

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self._restore(text)  # type: ignore[operator]
