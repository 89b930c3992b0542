"""Finding secrets and personal data in text.

detect-secrets' regex detectors are the base (cloud keys, tokens of many vendors); our
own patterns add what they miss or only flag:
- private keys: whole PEM blocks, blocks cut short (header and body, no END line), PEM
  bodies inside JSON strings (`\\n` escapes), and body lines on their own (a chunk of a
  key whose header is in another chunk);
- values under a sensitive key name in JSON, YAML, env, INI, XML and command-line flags
  (`"SecretAccessKey": ...`, `SECRET_KEY_BASE=`, `passphrase:`, docker `"auth":`,
  `aws_session_token =`, `--password x`, `<password>x</password>`), judged on the words
  of the key name (`max_tokens` and `password_file` are not secrets);
- `.netrc` lines, `mysql -pX`, `sshpass -p`, `redis-cli -a`, `curl -u user:pass`;
- credentials in URLs and connection strings, `Authorization:` / `X-Api-Key:` headers,
  JWTs, AWS, GitHub, Google (API keys, OAuth tokens and client secrets) and OpenAI /
  Anthropic keys;
- passwords in prose ("the root password is hunter2"), with a list of ordinary words
  that end such a sentence without being a secret ("the password is incorrect");
- personal data: emails, IPs, phone numbers, card numbers that pass the Luhn check, US
  social security numbers.

`find_sensitive` returns the findings with their character offsets (also used to black
out the pixels of text recognized in images).
"""

from __future__ import annotations

import bisect
import importlib
import inspect
import ipaddress
import itertools
import pkgutil
import re
from dataclasses import dataclass
from functools import lru_cache

from agent_service.domain.privacy.patterns import (
    HINTS,
    KEYED_PRIORITY,
    OWN_PATTERNS,
    PROSE,
    PROSE_ORDINARY,
    SKIP_DS,
)

# The placeholder label a kind is replaced with (`<SECRET_1>`, `<EMAIL_2>`).
LABELS = {
    "private_key": "SECRET",
    "aws_access_key": "SECRET",
    "aws_secret_key": "SECRET",
    "github_token": "SECRET",
    "cloud_token": "SECRET",
    "jwt": "SECRET",
    "password": "SECRET",
    "keyed_secret": "SECRET",
    "cli_password": "SECRET",
    "netrc": "SECRET",
    "prose_password": "SECRET",
    "auth_header": "SECRET",
    "connection_string": "SECRET",
    "api_key": "SECRET",
    "vendor_token": "SECRET",
    "email": "EMAIL",
    "ip": "IP",
    "phone": "PHONE",
    "card": "CARD",
    "ssn": "SSN",
}
# A PEM block, to keep it on one line when a log is condensed (so it is redacted whole).
PEM_BLOCK_RE = re.compile(
    r"-----BEGIN [A-Z0-9 ]{0,40}-----[A-Za-z0-9+/=\s:,.-]{0,20000}?-----END [A-Z0-9 ]{0,40}-----"
)
PLACEHOLDER_RE = re.compile(r"<(SECRET|EMAIL|IP|PHONE|CARD|SSN)_(\d{1,6})>")


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    kind: str
    value: str


# ---- values under a sensitive key name ------------------------------------------------

# A sensitive key name holds one of these (found first, on the lower-cased text).
_KEY_STEMS = (
    r"pass|pwd|secret|token|credential|auth|api[_-]?key|apikey|accountkey|private[_-]?key|"
    r"privatekey|access[_-]?key|accesskey|sig|sas|cookie|ssn|key[_-]?base|keybase|"
    r"master[_-]?key|encryption[_-]?key|signing[_-]?key|session[_-]?key|client[_-]?key"
)
_KEY_STEM_AT = re.compile(_KEY_STEMS)
# The words of a key name that make its value a secret ...
_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "pass", "passphrase", "passcode", "pw",
        "secret", "secrets", "token", "credential", "credentials", "creds",
        "apikey", "accountkey", "privatekey", "accesskey", "secretkey", "sharedaccesskey",
        "sig", "signature", "sas", "auth", "cookie", "ssn", "keybase", "masterkey",
        "encryptionkey", "signingkey", "sessionkey", "clientkey", "identitytoken",
        "authtoken", "sessiontoken", "accesstoken", "refreshtoken", "bearer",
    }
)  # fmt: skip
# ... or hold one of these inside a longer word.
_SECRET_INFIXES = ("password", "passwd", "passphrase", "secret")
# ... or two consecutive words: `api_key`, `SecretAccessKey` (secret, access, key).
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
        ("account", "key"), ("master", "key"), ("encryption", "key"), ("signing", "key"),
        ("session", "key"), ("client", "key"), ("shared", "key"), ("storage", "key"),
        ("hmac", "key"), ("license", "key"), ("app", "key"), ("service", "key"),
        ("key", "base"), ("session", "token"), ("access", "token"), ("refresh", "token"),
        ("client", "secret"), ("sas", "token"), ("shared", "access"),
    }
)  # fmt: skip
# A key name ending in one of these names something about the secret, not the secret.
_NOT_A_VALUE = frozenset(
    {
        "file", "files", "path", "dir", "url", "uri", "endpoint", "host", "hostname", "port",
        "count", "counts", "limit", "length", "len", "size", "type", "kind", "expiry",
        "expires", "expiration", "exp", "ttl", "timeout", "enabled", "disabled", "required",
        "policy", "min", "max", "name", "header", "prefix", "format", "version", "algorithm",
        "alg", "mode", "method", "methods", "provider", "field", "env", "var", "hash",
        "hashed", "strength", "rotation", "rotated", "age", "at", "id", "ids", "list",
        "store", "backend", "issuer", "audience", "scope", "scopes", "source", "usage",
        "level", "style", "cache", "ref", "reset", "changed", "attempts", "retries", "valid",
        "validity", "lifetime", "duration", "seconds", "minutes", "hours", "days", "ms",
    }
)  # fmt: skip
# Values that say something about a secret without being one.
_NOT_SECRETS = frozenset(
    {
        "", "none", "null", "nil", "true", "false", "yes", "no", "on", "off", "required",
        "optional", "enabled", "disabled", "redacted", "hidden", "masked", "undefined",
        "n/a", "na", "empty", "unset", "default", "string", "str", "int", "bool", "***",
        "xxx", "xxxx", "...", "password", "secret", "token", "bearer", "basic", "digest",
        "env", "file", "prompt", "stdin", "self", "this", "value", "missing", "invalid",
        "expired", "valid", "ok", "error", "failed", "denied", "set", "notset", "sha256",
        "md5", "bcrypt", "argon2", "scrypt", "pbkdf2", "plain", "plaintext", "hashed",
    }
)  # fmt: skip

_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_IDENT_TAIL = re.compile(r"[A-Za-z0-9_.\-]*")
# After the key name: a closing quote, a separator, then the value (quoted or not).
_KV_VALUE = re.compile(
    r"""["']?[ \t]*(?:=>|:=|[:=])[ \t]*(?:"((?:[^"\\\n]|\\.){1,8000})"|'([^'\n]{1,8000})'"""
    r"""|`([^`\n]{1,400})`|([^\s"'`&;,<>)\]}|]{1,4000}))"""
)
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_REFERENCE = re.compile(r"^(?:\$\{|\$\(|\{\{|%\(|\$[A-Za-z_][A-Za-z0-9_]*$)")


def key_is_sensitive(key: str) -> bool:
    """Whether a key name (`SecretAccessKey`, `SECRET_KEY_BASE`, `max_tokens`) names a
    secret value: judged on its words, and its last word is not a property of one."""
    words = [w.lower() for w in _CAMEL.findall(key)]
    if not words or words[-1] in _NOT_A_VALUE:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    if any(s in w for w in words for s in _SECRET_INFIXES):  # PGPASSWORD, DBSECRET
        return True
    if any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words)):
        return True
    return "".join(words) in _SECRET_WORDS


def _value_ok(value: str) -> bool:
    v = value.strip()
    low = v.lower()
    if len(v) < 3 or low in _NOT_SECRETS or v.startswith("<") or _REFERENCE.match(v):
        return False
    return bool(set(v) - set("*xX.-_#"))


def _keyed_matches(text: str, lowered: str) -> list[tuple[int, int]]:
    """(start, end) of every value under a sensitive key name."""
    found: list[tuple[int, int]] = []
    seen: set[int] = set()
    for hit in _KEY_STEM_AT.finditer(lowered):
        start = hit.start()
        while start > 0 and text[start - 1] in _IDENT_CHARS:
            start -= 1
        if start in seen:
            continue
        seen.add(start)
        tail = _IDENT_TAIL.match(text, hit.end())
        key_end = tail.end() if tail else hit.end()
        m = _KV_VALUE.match(text, key_end)
        if m is None:
            continue
        key = text[start:key_end].lstrip("-.")
        if not key_is_sensitive(key):
            continue
        group = next(g for g in range(1, 5) if m.group(g) is not None)
        value = m.group(group)
        if _value_ok(value):
            found.append((m.start(group), m.end(group)))
    return found


def _may_match(kind: str, text: str, lowered: str) -> bool:
    hint = HINTS.get(kind)
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
        if mod.name in SKIP_DS:
            continue
        module = importlib.import_module(f"detect_secrets.plugins.{mod.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, RegexBasedDetector) and cls is not RegexBasedDetector:
                found.extend(p for p in getattr(cls, "denylist", ()) if p.pattern)
    return tuple(found)


_SLOW_START = r"(?:(?<=\W)|(?<=^))"


@lru_cache(maxsize=1)
def _vendor_patterns() -> tuple[tuple[re.Pattern[str], str | None, bool, bool], ...]:
    """Each vendor pattern with the literal it starts with (when it has one) and whether
    that literal is matched case-insensitively: a cheap `in` test before the scan."""
    out = []
    for p in detect_secrets_patterns():
        keyword_style = p.pattern.startswith(_SLOW_START)
        if keyword_style:  # the same test, ~5x faster
            p = re.compile("(?<!\\w)" + p.pattern[len(_SLOW_START) :], p.flags)
        m = re.match(r"^[A-Za-z0-9_-]{3,}", p.pattern)
        ignore_case = bool(p.flags & re.IGNORECASE)
        literal = m.group(0) if m else None
        out.append(
            (
                p,
                literal.lower() if literal and ignore_case else literal,
                ignore_case,
                keyword_style,
            )
        )
    return tuple(out)


# The keyword-style vendor detectors (`cl_api_key = ...`, `ibm_cloud_iam_key: ...`) all
# need a key word and a separator: text without one skips them (one scan instead of five).
_KEYWORD_STYLE_HINT = re.compile(r"(?:key|pwd|pw|pass|password|token)[\"'\]]?(?: *)(?:=|:| +)")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _pem_body_ok(value: str) -> bool:
    lines = [t for t in value.replace("\\n", " ").split() if not t.startswith("-----")]
    lines = [t for t in lines if t not in ("END", "PRIVATE", "KEY-----", "BLOCK-----")]
    if not (
        any(c.isupper() for c in value)
        and any(c.islower() for c in value)
        and any(c.isdigit() for c in value)
    ):
        return False  # hex digests and plain words are not key material
    return len(lines) >= 2 or len(lines[0].rstrip("=")) >= 60


def _prose_ok(value: str) -> bool:
    low = value.lower()
    if low in PROSE_ORDINARY or PLACEHOLDER_RE.fullmatch(value):
        return False
    plain_word = value.isalpha() and value.islower()
    return not (plain_word and low.endswith(("ed", "ing", "ly", "ion", "ful", "less")))


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
    if kind in ("password", "keyed_secret", "cli_password", "netrc"):
        return _value_ok(value)
    if kind == "prose_password":
        return _prose_ok(value)
    return bool(value.strip())


def find_sensitive(text: str, *, cut_before: bool = False) -> list[Finding]:
    """Every sensitive value in `text`, non-overlapping, in order of position; each with
    its character offsets (`text[f.start:f.end] == f.value`).

    `cut_before`: the text is a chunk cut out of a longer document (a passage), whose
    first words may be the value of a key or header left in the chunk before; a token
    there that looks like key material (8+ characters mixing upper case, lower case and
    digits) is taken as a secret."""
    found = _find(text) if len(text) > _CACHE_MAX_CHARS else list(_find_cached(text))
    if cut_before:
        found = _with_leading_tokens(text, found)
    return found


_LEADING = re.compile(r"\W{0,3}([^\s\"'`,;]{8,200})(?:\s+([^\s\"'`,;]{8,200}))?")
# The rest of a phone number whose `+1` (or `+1 415`) stayed in the chunk before: digit
# groups no date, time or version is written as (3-3-4 or 3-4).
_LEADING_PHONE = re.compile(r"\W{0,3}(\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}|\d{3}[ .-]\d{4})(?![\w.:/-])")


def _with_leading_tokens(text: str, found: list[Finding]) -> list[Finding]:
    # The chunk's own start, and its body's start after a heading line or two (chunkers
    # put the section's title first).
    starts = [0]
    body = text.find("\n\n", 0, 300)
    if body >= 0:
        starts.append(body + 2)
    extra: list[Finding] = []
    for at in starts:
        m = _LEADING.match(text, at)
        if m is not None:
            extra += _leading_findings(m, [*found, *extra])
        p = _LEADING_PHONE.match(text, at)
        if p is not None and not any(
            f.start < p.end(1) and p.start(1) < f.end for f in [*found, *extra]
        ):
            extra.append(Finding(p.start(1), p.end(1), "phone", p.group(1)))
    return sorted([*found, *extra], key=lambda f: f.start)


def _leading_findings(m: re.Match[str], found: list[Finding]) -> list[Finding]:
    extra = []
    for g in (1, 2):
        value = m.group(g)
        if not value or PLACEHOLDER_RE.search(value):
            continue
        core = value.rstrip(_TRAILING)
        mixed = (
            any(c.isupper() for c in core)
            and any(c.islower() for c in core)
            and any(c.isdigit() for c in core)
        )
        start = m.start(g)
        if mixed and not any(f.start < start + len(core) and start < f.end for f in found):
            extra.append(Finding(start, start + len(core), "vendor_token", core))
    return extra


def sensitive_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every sensitive value: what to black out in an image whose
    text was recognized (OCR), by character offsets into that text."""
    return [(f.start, f.end, f.kind) for f in find_sensitive(text)]


# History, passages and the case summary come back every turn: remember their findings.
_CACHE_MAX_CHARS = 64 * 1024


@lru_cache(maxsize=2048)
def _find_cached(text: str) -> tuple[Finding, ...]:
    return tuple(_find(text))


_TRAILING = ".,;:!?)]}"


_PROSE_AT = re.compile(
    r"(?<![a-z0-9_])(?:password|passphrase|passwd|passcode|pwd|pin|secret|token|api key"
    r"|access key)(?![a-z0-9_])"
)


def _prose_matches(text: str, lowered: str) -> list[re.Match[str]]:
    """The prose pattern only where its keyword is (found on the lower-cased text)."""
    found = []
    for hit in _PROSE_AT.finditer(lowered):
        m = PROSE.match(text, hit.start())
        if m:
            found.append(m)
    return found


def _own_matches(
    kind: str, pattern: re.Pattern[str], group: int, text: str, lowered: str
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    matches = _prose_matches(text, lowered) if kind == "prose_password" else pattern.finditer(text)
    for m in matches:
        if kind == "keyed_secret" and not key_is_sensitive(m.group("tag")):
            continue
        g = group
        if g < 0:  # the first alternative's group that matched
            g = next((i for i in range(1, (pattern.groups or 0) + 1) if m.group(i)), 0)
        start, end = m.start(g), m.end(g)
        if start < 0:
            continue
        if kind == "prose_password":
            while end > start and text[end - 1] in _TRAILING:
                end -= 1
        out.append((start, end))
    return out


def _find(text: str) -> list[Finding]:
    lowered = text.lower()
    candidates: list[tuple[int, Finding]] = []
    for priority, (kind, pattern, group) in enumerate(OWN_PATTERNS):
        if priority == KEYED_PRIORITY:
            spans = _keyed_matches(text, lowered)
        elif not _may_match(kind, text, lowered):
            continue
        else:
            spans = _own_matches(kind, pattern, group, text, lowered)
        for start, end in spans:
            value = text[start:end]
            if kind == "private_key" and not value.startswith("-----"):
                value = value.strip()
                start = text.index(value, start) if value else start
                end = start + len(value)
                if not value or not _pem_body_ok(value):
                    continue
            if value and _valid(kind, value):
                candidates.append((priority, Finding(start, end, kind, value)))
    vendor_priority = KEYED_PRIORITY  # with the keyed values, before personal data
    keyword_style_ok: bool | None = None
    for pattern, literal, ignore_case, keyword_style in _vendor_patterns():
        if literal is not None and literal not in (lowered if ignore_case else text):
            continue
        if keyword_style:
            if keyword_style_ok is None:
                keyword_style_ok = _KEYWORD_STYLE_HINT.search(lowered) is not None
            if not keyword_style_ok:
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
