"""Finding secrets and personal data in text.

detect-secrets' regex detectors are the base (cloud keys, tokens of many vendors); our
own patterns add what they miss or only flag (a whole private key block, passwords in
`key=value`, URLs and `Authorization:` headers, connection strings, JWTs) and personal
data (emails, IPs, phone numbers, card numbers that pass the Luhn check).
"""

from __future__ import annotations

import bisect
import importlib
import inspect
import ipaddress
import pkgutil
import re
from dataclasses import dataclass
from functools import lru_cache

# The placeholder label a kind is replaced with (`<SECRET_1>`, `<EMAIL_2>`).
LABELS = {
    "private_key": "SECRET",
    "aws_access_key": "SECRET",
    "aws_secret_key": "SECRET",
    "github_token": "SECRET",
    "jwt": "SECRET",
    "password": "SECRET",
    "auth_header": "SECRET",
    "connection_string": "SECRET",
    "api_key": "SECRET",
    "vendor_token": "SECRET",
    "email": "EMAIL",
    "ip": "IP",
    "phone": "PHONE",
    "card": "CARD",
}
# A PEM block, to keep it on one line when a log is condensed (so it is redacted whole).
PEM_BLOCK_RE = re.compile(
    r"-----BEGIN [A-Z0-9 ]{0,40}-----[A-Za-z0-9+/=\s:,.-]{0,20000}?-----END [A-Z0-9 ]{0,40}-----"
)
PLACEHOLDER_RE = re.compile(r"<(SECRET|EMAIL|IP|PHONE|CARD)_(\d{1,6})>")


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    kind: str
    value: str


_KEYWORDS = (
    r"password|passwd|pwd|pass|secret|client_secret|secret_key|api[_-]?key|apikey|"
    r"access[_-]?key(?:[_-]?id)?|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|"
    r"private[_-]?key|credentials?|accountkey|sharedaccesskey"
)

# (kind, pattern, group holding the value). Order is priority on overlaps.
_OWN_PATTERNS: list[tuple[str, re.Pattern[str], int]] = [
    (
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[A-Za-z0-9+/=\s:,.-]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"|[A-Za-z0-9+/=\s]*)"
        ),
        0,
    ),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), 0),
    ("aws_access_key", re.compile(r"\b(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}\b"), 0),
    (
        "aws_secret_key",
        re.compile(
            r"(?i)aws_?secret_?(?:access_?)?key\W{0,5}([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        1,
    ),
    (
        "github_token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9_]{36,255}|github_pat_\w{22,255})\b"),
        0,
    ),
    (
        "connection_string",
        re.compile(r"(?i)\b[a-z][a-z0-9+.-]{1,20}://[^/\s:@'\"]{0,100}:([^@\s/'\"]{1,200})@"),
        1,
    ),
    (
        "auth_header",
        re.compile(
            r"(?i)\b(?:proxy-)?authorization\s*[:=]\s*\"?(?:bearer|basic|token|digest|apikey)?\s*"
            r"([^\s\"',;]{4,})"
        ),
        1,
    ),
    ("api_key", re.compile(r"(?i)\bx-api-key\s*:\s*([^\s\"',;]{4,})"), 1),
    (
        "password",
        re.compile(
            rf"(?i)(?<![A-Za-z0-9])(?:{_KEYWORDS})[\"']?\s*(?:[:=]|=>)\s*[\"']?"
            r"([^\s\"'&;,<>]{3,})"
        ),
        1,
    ),
    (
        "email",
        re.compile(
            r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
        ),
        0,
    ),
    ("ip", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)"), 0),
    ("ip", re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"), 0),
    ("card", re.compile(r"(?<![\d-])(?:[3-6]\d{3})(?:[ -]?\d{2,4}){3,4}(?![\d-])"), 0),
    (
        "phone",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"
            r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w])"
        ),
        0,
    ),
]

# Keywords first, on the lower-cased text (a case-sensitive literal scan is ~50x faster
# than the case-insensitive alternation); the full pattern only where a keyword is.
_KEYWORD_AT = re.compile(rf"(?<![a-z0-9])(?:{_KEYWORDS})")
_PASSWORD_AT = re.compile(rf"(?i)(?:{_KEYWORDS})[\"']?\s*(?:[:=]|=>)\s*[\"']?([^\s\"'&;,<>]{{3,}})")


def _keyword_matches(text: str, lowered: str) -> list[re.Match[str]]:
    found = []
    for hit in _KEYWORD_AT.finditer(lowered):
        m = _PASSWORD_AT.match(text, hit.start())
        if m:
            found.append(m)
    return found


_SKIP_DS = {"keyword", "high_entropy_strings", "ip_public", "basic_auth", "base"}

# A pattern can only match when its hint is in the text (lower-cased where marked):
# one substring test instead of a regex scan over text that cannot hold the kind.
_HINTS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "private_key": (False, ("PRIVATE KEY",)),
    "jwt": (False, ("eyJ",)),
    "aws_access_key": (False, ("A3T", "ABIA", "ACCA", "AKIA", "ASIA")),
    "aws_secret_key": (True, ("aws",)),
    "github_token": (False, ("gh", "github_pat_")),
    "connection_string": (False, ("://",)),
    "auth_header": (True, ("authorization",)),
    "api_key": (True, ("x-api-key",)),
    "email": (False, ("@",)),
}


def _may_match(kind: str, text: str, lowered: str) -> bool:
    hint = _HINTS.get(kind)
    if hint is None:
        return True
    lower, needles = hint
    haystack = lowered if lower else text
    return any(n in haystack for n in needles)


@lru_cache(maxsize=1)
def detect_secrets_patterns() -> tuple[re.Pattern[str], ...]:
    """The regexes of detect-secrets' regex-based detectors (vendor tokens and keys)."""
    import detect_secrets.plugins as plugins
    from detect_secrets.plugins.base import RegexBasedDetector

    found: list[re.Pattern[str]] = []
    for mod in pkgutil.iter_modules(plugins.__path__):
        if mod.name in _SKIP_DS:
            continue
        module = importlib.import_module(f"detect_secrets.plugins.{mod.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, RegexBasedDetector) and cls is not RegexBasedDetector:
                found.extend(p for p in getattr(cls, "denylist", ()) if p.pattern)
    return tuple(found)


@lru_cache(maxsize=1)
def _vendor_patterns() -> tuple[tuple[re.Pattern[str], str | None, bool], ...]:
    """Each vendor pattern with the literal it starts with (when it has one) and whether
    that literal is matched case-insensitively: a cheap `in` test before the scan."""
    out = []
    for p in detect_secrets_patterns():
        m = re.match(r"^[A-Za-z0-9_-]{3,}", p.pattern)
        ignore_case = bool(p.flags & re.IGNORECASE)
        literal = m.group(0) if m else None
        out.append((p, literal.lower() if literal and ignore_case else literal, ignore_case))
    return tuple(out)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _valid(kind: str, value: str) -> bool:
    if PLACEHOLDER_RE.fullmatch(value) or value.startswith("<"):
        return False
    if kind == "ip":
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            return False
        return not (addr.is_loopback or addr.is_unspecified)
    if kind == "card":
        digits = re.sub(r"\D", "", value)
        return 13 <= len(digits) <= 19 and _luhn(digits)
    if kind == "phone":
        return 7 <= len(re.sub(r"\D", "", value)) <= 15
    if kind == "password":
        return value.lower() not in {"none", "null", "true", "false", "required", "***"}
    return bool(value.strip())


def find_sensitive(text: str) -> list[Finding]:
    """Every sensitive value in `text`, non-overlapping, in order of position."""
    if len(text) > _CACHE_MAX_CHARS:
        return _find(text)
    return list(_find_cached(text))


# History, passages and the case summary come back every turn: remember their findings.
_CACHE_MAX_CHARS = 64 * 1024


@lru_cache(maxsize=2048)
def _find_cached(text: str) -> tuple[Finding, ...]:
    return tuple(_find(text))


def _find(text: str) -> list[Finding]:
    lowered = text.lower()
    candidates: list[tuple[int, Finding]] = []
    for priority, (kind, pattern, group) in enumerate(_OWN_PATTERNS):
        if not _may_match(kind, text, lowered):
            continue
        matches = _keyword_matches(text, lowered) if kind == "password" else pattern.finditer(text)
        for m in matches:
            value = m.group(group)
            if value and _valid(kind, value):
                candidates.append((priority, Finding(m.start(group), m.end(group), kind, value)))
    vendor_priority = 5  # after our specific secret kinds, before personal data
    for pattern, literal, ignore_case in _vendor_patterns():
        if literal is not None and literal not in (lowered if ignore_case else text):
            continue
        for m in pattern.finditer(text):
            group = 1 if pattern.groups else 0
            value = m.group(group)
            if value and len(value) >= 8 and _valid("vendor_token", value):
                finding = Finding(m.start(group), m.end(group), "vendor_token", value)
                candidates.append((vendor_priority, finding))
    candidates.sort(key=lambda c: (c[0], c[1].start))
    # Higher priority wins an overlap; `starts`/`taken` stay sorted by start (bisect).
    starts: list[int] = []
    taken: list[Finding] = []
    for _, f in candidates:
        i = bisect.bisect_left(starts, f.start)
        if i > 0 and taken[i - 1].end > f.start:
            continue
        if i < len(taken) and taken[i].start < f.end:
            continue
        starts.insert(i, f.start)
        taken.insert(i, f)
    return taken
