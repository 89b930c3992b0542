"""The patterns of `detect`: our own (kind, regex, value group) table in priority order,
the prose rule, and the hints that let a scan skip text that cannot hold a kind.

Data only; `detect` runs them (and detect-secrets' detectors) over the text.
"""

from __future__ import annotations

import re

PEM_LABEL = r"(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?"
B64_LINE = r"[A-Za-z0-9+/]{16,}={0,2}"

# Prose: "the root password is hunter2", "password for db01 was set to 'Xy9!'".
PROSE = re.compile(
    r"(?i)\b(?:password|passphrase|passwd|passcode|pwd|pin|secret|token|api key|access key)"
    r"(?:\s+(?:for|of|on|to)\s+(?:the\s+)?[\w@.\-]{1,64}(?:\s+(?:user|account|server|host))?)?"
    r"\s+(?:(?:is|was|has\s+been|got)\s+(?:set|changed|reset)\s+to|is|was|are|equals|now)"
    r"\s*:?\s+[\"'`]?([^\s\"'`]{3,128})"
)
PROSE_ORDINARY = frozenset(
    {
        "the", "and", "but", "for", "from", "with", "without", "that", "this", "what", "which",
        "where", "here", "there", "your", "our", "my", "their", "his", "her", "its", "not",
        "too", "wrong", "incorrect", "invalid", "expired", "required", "missing", "empty",
        "correct", "valid", "set", "unknown", "stored", "still", "now", "being", "very",
        "weak", "strong", "long", "short", "also", "same", "different", "available",
        "needed", "unchanged", "rotated", "stale", "old", "new", "case", "sensitive",
        "encrypted", "hashed", "blank", "null", "none", "good", "bad", "fine", "okay",
        "known", "shared", "secret", "private", "public", "generated", "random", "unique",
        "right", "lost", "forgotten", "locked", "disabled", "enabled", "compromised",
        "leaked", "exposed", "mandatory", "optional", "longer", "shorter", "less", "more",
        "most", "least", "all", "any", "some", "every", "each", "never", "always", "usually",
        "sometimes", "configured", "defined", "provided", "given", "accepted", "rejected",
        "denied", "ignored", "saved", "cached", "kept", "managed", "handled", "checked",
        "verified", "validated", "hidden", "masked", "redacted", "used", "reused", "working",
        "broken", "failing", "outdated", "current", "previous", "next", "first", "last",
        "default", "temporary", "permanent", "static", "dynamic", "expiring", "already",
        "again", "identical", "similar", "ok", "yes", "no", "true", "false", "about", "only",
        "just", "probably", "likely", "definitely", "supposed", "meant", "going", "able",
        "unable", "in", "at", "on", "of", "to", "by", "as", "an", "a", "it", "be", "so",
        "present", "absent", "blocked", "allowed", "correctly", "properly", "fixed",
        "unset", "wrong.", "stored.", "different.", "none.", "vault", "kubernetes", "aws",
        "file", "env", "environment", "variable", "config", "header", "cookie", "token",
        "password", "pass", "key", "field", "value", "string", "one", "two",
    }
)  # fmt: skip

# (kind, pattern, group holding the value). Order is priority on overlaps.
OWN_PATTERNS: list[tuple[str, re.Pattern[str], int]] = [
    (
        "private_key",
        re.compile(
            # A whole block (also inside a JSON string, `\n` escaped), or a block cut short:
            # the header and the base64 lines that follow it.
            rf"-----BEGIN {PEM_LABEL}-----"
            rf"(?:[A-Za-z0-9+/=\s:,.\\-]*?-----END {PEM_LABEL}-----"
            rf"|(?:(?:\s|\\[rn])*{B64_LINE})*)"
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
        # Google API keys, OAuth access / refresh tokens and client secrets; OpenAI and
        # Anthropic keys (sk-, sk-proj-, sk-ant-api03-...).
        "cloud_token",
        re.compile(
            r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"
            r"|\bya29\.[0-9A-Za-z_-]{20,}"
            r"|\bGOCSPX-[0-9A-Za-z_-]{20,}"
            r"|(?<![\w/])1//0[0-9A-Za-z_-]{30,}"
            r"|\bsk-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}"
        ),
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
    # A bearer token on its own (its `Authorization:` fell in the chunk before).
    ("auth_header", re.compile(r"\bBearer\s+((?=[\w.~+/=-]*\d)[\w.~+/=-]{16,})"), 1),
    (
        # .netrc: `machine h login u password p` (one line or several).
        "netrc",
        re.compile(
            r"\bmachine\s+\S+(?:\s+(?:login|account)\s+\S+)*\s+password\s+(\S+)"
            r"|(?m:^[ \t]*password[ \t]+(\S+)[ \t]*$)"
            # (a netrc line cut before `machine`: a value mixing letters and digits)
            r"|\bpassword[ \t]+((?=\S*\d)(?=\S*[A-Za-z])[^\s\"'`]{6,200})"
        ),
        -1,
    ),
    (
        # Passwords on command lines: mysql -pX, sshpass -p X, redis-cli -a X,
        # curl -u user:X, --password X / --token X.
        "cli_password",
        re.compile(
            r"\b(?i:mysql|mysqldump|mysqladmin|mysqlimport|mysqlshow|mariadb|mariadb-dump)\b"
            r"[^\n|;&]*?\s-p['\"]?([^\s'\"]{1,200})"
            r"|\bsshpass\s+-p\s*['\"]?([^\s'\"]{1,200})"
            r"|\bredis-cli\b[^\n|;&]*?\s-a\s+['\"]?([^\s'\"]{1,200})"
            r"|\bcurl\b[^\n|;&]*?\s(?:-u|--user)\s*['\"]?[^\s:'\"]{1,100}:([^\s'\"]{1,200})"
            r"|(?i:--(?:[a-z0-9]+-)*(?:password|passwd|passphrase|token|secret|api-key|apikey"
            r"|access-key|secret-key|client-secret))\s+['\"]?([^\s'\"-][^\s'\"]{2,200})"
        ),
        -1,
    ),
    (
        # XML: <password>x</password>, <SecretAccessKey>x</SecretAccessKey>.
        "keyed_secret",
        re.compile(
            r"<(?P<tag>[A-Za-z_][\w.:-]{0,60})>([^<\n]{3,2000})</(?P=tag)>",
        ),
        2,
    ),
    ("keyed_secret", re.compile(r"(?!)"), 0),  # values under sensitive key names: see below
    ("prose_password", PROSE, 1),
    (
        "email",
        re.compile(
            r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
        ),
        0,
    ),
    (
        # A private key's body lines on their own (its header fell in another chunk).
        "private_key",
        # (Lines, or tokens a chunker joined with spaces; up to the END line if it is there.)
        re.compile(
            r"(?<![\w+/=])[A-Za-z0-9+/]{40,76}={0,2}"
            rf"(?:(?:\s|\\[rn])+{B64_LINE})*"
            rf"(?:(?:\s|\\[rn])+[A-Za-z0-9+/]{{1,15}}={{0,2}}(?=(?:\s|\\[rn])*-----END))?"
            rf"(?:(?:\s|\\[rn])*-----END {PEM_LABEL}-----)?(?![\w+/=])"
        ),
        0,
    ),
    ("ssn", re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"), 0),
    ("ip", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)"), 0),
    ("ip", re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"), 0),
    (
        # Contiguous, or in groups of 4 with one separator (4-6-5 for Amex): never a
        # card glued to the number that follows it.
        "card",
        re.compile(
            r"(?<![\d-])(?:[3-6]\d{12,18}|[3-6]\d{3}([ -])\d{4}\1\d{4}\1\d{1,4}"
            r"|3\d{3}([ -])\d{6}\2\d{5})(?![\d])"
        ),
        0,
    ),
    (
        "phone",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"
            r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w])"
        ),
        0,
    ),
]
KEYED_PRIORITY = next(
    i for i, (k, p, _) in enumerate(OWN_PATTERNS) if k == "keyed_secret" and p.pattern == "(?!)"
)

SKIP_DS = {"keyword", "high_entropy_strings", "ip_public", "basic_auth", "base"}

# A pattern can only match when its hint is in the text (lower-cased where marked):
# one substring test instead of a regex scan over text that cannot hold the kind.
HINTS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "jwt": (False, ("eyJ",)),
    "aws_access_key": (False, ("A3T", "ABIA", "ACCA", "AKIA", "ASIA")),
    "aws_secret_key": (True, ("aws",)),
    "github_token": (False, ("gh", "github_pat_")),
    "cloud_token": (False, ("AIza", "ya29.", "GOCSPX-", "1//0", "sk-")),
    "connection_string": (False, ("://",)),
    "auth_header": (True, ("authorization", "bearer")),
    "api_key": (True, ("x-api-key",)),
    "netrc": (False, ("password",)),
    "cli_password": (True, ("mysql", "mariadb", "sshpass", "redis-cli", "curl", "--")),
    "keyed_secret": (False, ("</",)),
    "prose_password": (
        True,
        ("password", "passphrase", "passwd", "passcode", "pwd", "pin", "secret", "token", "key"),
    ),
    "email": (False, ("@",)),
    "ssn": (False, ("-",)),
}
