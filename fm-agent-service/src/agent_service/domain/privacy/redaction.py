"""Stable per-case placeholders, kept in Redis with the case, and their restoration.

Every value `find_sensitive` reports is replaced by `<LABEL_N>`; the same value gets the
same placeholder in every turn of the case (so the model can correlate), and the map
restores the originals in what the user sees. Values the case's map already holds are
replaced wherever they appear, context or not: an answer restored for the user ("your
password hunter2 is ...") never goes back to a provider as history (ADR 0100).

The map (`fm:agent:redact:<case_id>`) keeps originals encrypted (AES-256-GCM, key from
FM_AGENT_REDACTION_KEY, the case id as associated data) under an HMAC of the value, so
neither a Redis dump nor a guess at a short password reveals them; it lives as long as
the case (deleted by the case's cleanup). Any failure raises RedactionFailed: the caller
sends nothing (fail closed).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent_service.domain.privacy.detect import LABELS, PLACEHOLDER_RE, Finding, find_sensitive
from fm_common.errors import Unavailable

log = structlog.get_logger("agent.redaction")

# One round trip for a batch: ARGV = ttl (0: none), then (digest, label, sealed) triples.
_ALLOCATE = """
local out = {}
for i = 2, #ARGV, 3 do
  local digest, label, sealed = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ph = redis.call('HGET', KEYS[1], 'v:' .. digest)
  if not ph then
    local n = redis.call('HINCRBY', KEYS[1], 'n:' .. label, 1)
    ph = '<' .. label .. '_' .. n .. '>'
    redis.call('HSET', KEYS[1], 'v:' .. digest, ph, 'p:' .. ph, sealed)
  end
  table.insert(out, ph)
end
if tonumber(ARGV[1]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
else
  redis.call('PERSIST', KEYS[1])
end
return out
"""
_SEALED_PREFIX = "e1:"
# Known values shorter than this are only redacted where a detector finds them (a
# three-letter original would otherwise be cut out of ordinary words).
_KNOWN_MIN_CHARS = 4
_KNOWN_GLUED_CHARS = 8
_INLINE_CHARS = 256 * 1024


class RedactionFailed(Unavailable):
    code, detail = (
        "REDACTION_UNAVAILABLE",
        "Sensitive data could not be redacted, so nothing was sent to the model.",
    )


def map_key(case_id: str) -> str:
    return f"fm:agent:redact:{case_id}"


async def delete_case_map(redis: object, case_id: str) -> None:
    """Drop a case's redaction map (its originals) with the case."""
    await redis.delete(map_key(case_id))  # type: ignore[attr-defined]


class MapCipher:
    """Seals originals for the map: AES-256-GCM (random nonce, the case id as associated
    data) and an HMAC-SHA256 digest of the value, both keyed from one secret."""

    def __init__(self, secret: str) -> None:
        material = secret.encode()

        def derive(info: bytes) -> bytes:
            return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)

        self._aead = AESGCM(derive(b"faultmaven redaction map: aes-256-gcm"))
        self._mac_key = derive(b"faultmaven redaction map: value digest")

    def digest(self, value: str) -> str:
        return hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest()

    def seal(self, case_id: str, value: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), case_id.encode())
        return _SEALED_PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, case_id: str, stored: str) -> str:
        if not stored.startswith(_SEALED_PREFIX):
            raise ValueError("an original stored without encryption")
        raw = base64.b64decode(stored[len(_SEALED_PREFIX) :])
        return self._aead.decrypt(raw[:12], raw[12:], case_id.encode()).decode()


@dataclass
class RedactionResult:
    texts: list[str]
    count: int = 0
    kinds: list[str] = field(default_factory=list)


_KNOWN_KIND = {label: label.lower() for label in set(LABELS.values())}


class CaseRedactor:
    """Redacts text for one case; `restore` turns placeholders back into originals."""

    def __init__(
        self, redis: object, case_id: str, cipher: MapCipher, ttl_seconds: int = 0
    ) -> None:
        self.redis = redis
        self.case_id = case_id
        self.cipher = cipher
        self.ttl = ttl_seconds
        self.originals: dict[str, str] = {}
        self.kinds: Counter[str] = Counter()
        self._loaded = False
        self._labels: dict[str, str] = {}
        self._values: list[str] = []
        self._patterns: dict[tuple[str, ...], re.Pattern[str]] = {}
        self._known_size = -1

    def _known_pattern(self, text: str) -> re.Pattern[str] | None:
        """One regex over the case's originals that occur in `text` (longest first): a
        substring test per original first, so text that holds none costs no regex."""
        if self._known_size != len(self.originals):
            self._labels = {v: ph for ph, v in self.originals.items()}
            self._values = sorted(
                (v for v in self._labels if len(v) >= _KNOWN_MIN_CHARS), key=len, reverse=True
            )
            self._patterns = {}
            self._known_size = len(self.originals)
        present = tuple(v for v in self._values if v in text)
        if not present:
            return None
        pattern = self._patterns.get(present)
        if pattern is None:

            def alternative(value: str) -> str:
                # A secret of 8+ characters is replaced even glued to other text (a
                # chunk that starts at `-pSECRET`); shorter ones and personal data only
                # as whole words (`10.0.0.5` is not in `10.0.0.50`).
                if len(value) >= _KNOWN_GLUED_CHARS and self._labels[value].startswith("<SECRET_"):
                    return re.escape(value)
                return rf"(?<![A-Za-z0-9_]){re.escape(value)}(?![A-Za-z0-9_])"

            pattern = re.compile("|".join(alternative(v) for v in present))
            self._patterns[present] = pattern
        return pattern

    def _findings(self, text: str, cut_before: bool = False) -> list[Finding]:
        """The detectors' findings plus every known original of the case in `text`."""
        found = find_sensitive(text, cut_before=cut_before)
        pattern = self._known_pattern(text)
        if pattern is None:
            return found
        by_value = {v: ph for ph, v in self.originals.items()}
        known: list[Finding] = []
        for m in pattern.finditer(text):
            label = PLACEHOLDER_RE.fullmatch(by_value[m.group(0)])
            kind = _KNOWN_KIND.get(label.group(1), "secret") if label else "secret"
            known.append(Finding(m.start(), m.end(), kind, m.group(0)))
        if not known:
            return found
        # Known originals first (exact), then what the detectors found around them.
        merged = list(known)
        for f in found:
            if not any(k.start < f.end and f.start < k.end for k in known):
                merged.append(f)
        return sorted(merged, key=lambda f: f.start)

    async def redact(
        self, texts: list[str], *, chunks: frozenset[int] = frozenset()
    ) -> RedactionResult:
        """Each text with every sensitive value replaced by its case placeholder.
        `chunks`: the indexes of texts cut out of longer documents (passages), whose
        leading tokens may be a value whose key is in the chunk before."""
        try:
            if not self._loaded:
                await self.load()

            def scan() -> list[list[Finding]]:
                return [self._findings(t, i in chunks) for i, t in enumerate(texts)]

            # A big paste or log takes seconds: off the event loop, so other requests of
            # this process keep moving meanwhile.
            big = sum(len(t) for t in texts) > _INLINE_CHARS
            found = await asyncio.to_thread(scan) if big else scan()
            by_value = {v: ph for ph, v in self.originals.items()}
            unique: dict[str, str] = {}
            for findings in found:
                for f in findings:
                    if f.value not in by_value:
                        unique.setdefault(f.value, LABELS.get(f.kind, "SECRET"))
            placeholders: dict[str, str] = dict(by_value)
            if unique:
                argv: list[str | int] = [self.ttl]
                values = list(unique)
                for value in values:
                    digest = self.cipher.digest(value)
                    argv += [digest, unique[value], self.cipher.seal(self.case_id, value)]
                result = await self.redis.eval(_ALLOCATE, 1, map_key(self.case_id), *argv)  # type: ignore[attr-defined]
                placeholders.update(zip(values, (str(p) for p in result), strict=True))
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
        except RedactionFailed:
            raise
        except Exception as exc:  # fail closed: whatever broke, nothing may leave
            log.warning("redaction.failed", case_id=self.case_id, error=type(exc).__name__)
            raise RedactionFailed() from exc
        return RedactionResult(out, count, sorted(set(kinds)))

    async def load(self) -> None:
        """Load every placeholder of the case (to restore text written in earlier turns,
        and to redact its originals wherever they appear again)."""
        try:
            data = await self.redis.hgetall(map_key(self.case_id))  # type: ignore[attr-defined]
        except Exception as exc:
            raise RedactionFailed() from exc
        legacy: list[str] = []
        for k, v in data.items():
            key = k.decode() if isinstance(k, bytes) else k
            value = v.decode() if isinstance(v, bytes) else v
            if not key.startswith("p:"):
                continue
            if value.startswith(_SEALED_PREFIX):
                try:
                    original = self.cipher.open(self.case_id, value)
                except Exception:  # another key (rotated) or tampered: unreadable
                    log.warning("redaction.unreadable_original", case_id=self.case_id)
                    continue
            else:  # written in clear before encryption at rest: seal it now
                original = value
                legacy += [key, self.cipher.seal(self.case_id, value)]
            self.originals.setdefault(key[2:], original)
        if legacy:
            try:
                mapping = dict(zip(legacy[::2], legacy[1::2], strict=True))
                await self.redis.hset(map_key(self.case_id), mapping=mapping)  # type: ignore[attr-defined]
            except Exception as exc:
                raise RedactionFailed() from exc
        self._loaded = True

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
