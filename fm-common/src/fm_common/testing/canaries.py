"""Planted secrets for redaction tests: 30 kinds (the 17 the agent's docs listed, and the
13 an attack run found reaching the provider in clear), each as a line the way it shows
up in real text, with the parts that must never reach a model provider.

`canaries(tag)` makes fresh values (so one test's canaries cannot be confused with
another's); `leaks(text, kinds)` lists the kinds whose secret parts appear in `text`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Canary:
    kind: str
    documented: bool  # one of the 17 kinds the docs listed before the attack run
    line: str  # the text as planted
    secrets: tuple[str, ...]  # substrings that must not reach a provider


def _b64(seed: str, n: int) -> str:
    out = ""
    i = 0
    while len(out) < n:
        out += base64.b64encode(hashlib.sha512(f"{seed}{i}".encode()).digest()).decode()
        i += 1
    return out[:n].replace("=", "A")


def _word(s: str) -> str:
    return s.replace("+", "a").replace("/", "b")


def _digits(seed: str, n: int) -> str:
    return "".join(str(b % 10) for b in hashlib.sha256(seed.encode()).digest())[:n]


def _luhn_complete(prefix: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return prefix + str((10 - total % 10) % 10)


def canaries(tag: str) -> list[Canary]:
    """The 30 kinds with values unique to `tag` (letters and digits)."""
    t = "".join(c for c in tag if c.isalnum())[:8] or "x"
    T = t.upper()
    pem_lines = [_b64(f"{t}pem{i}", 64) for i in range(4)]
    gcp_lines = [_b64(f"{t}gcp{i}", 64) for i in range(3)]
    d = _digits(t, 12).replace("0", "7")
    out = [
        # ---- the 17 documented kinds ----
        Canary(
            "pem_private_key",
            True,
            "-----BEGIN RSA PRIVATE KEY-----\n"
            + "\n".join(pem_lines)
            + "\n-----END RSA PRIVATE KEY-----",
            tuple(pem_lines),
        ),
        Canary(
            "jwt",
            True,
            f"session eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ{t}Y2FuYXJ5In0.sig{t}Q2FuYXJ5c2ln",
            (f"eyJzdWIiOiJ{t}Y2FuYXJ5In0", f"sig{t}Q2FuYXJ5c2ln"),
        ),
        Canary("aws_access_key_id", True, f"aws_access_key_id=AKIA{T[:4]:0<4}CNRY{d[:8]}", ()),
        Canary(
            "aws_secret_key_env",
            True,
            f"AWS_SECRET_ACCESS_KEY={(_b64(t + 'awsenv', 30) + t + 'Sk1x')[:40]}",
            ((_b64(t + "awsenv", 30) + t + "Sk1x")[:40],),
        ),
        Canary(
            "github_token",
            True,
            f"GITHUB_TOKEN ghp_{_word(t + 'Cnry' + _b64(t + 'gh', 40))[:36]}",
            (),
        ),
        Canary("password_kv", True, f"db password=Pw{t}kv9!", (f"Pw{t}kv9!",)),
        Canary("password_yaml", True, f"  password: Yml{t}pw7", (f"Yml{t}pw7",)),
        Canary(
            "url_credentials",
            True,
            f"fetch https://deploy:Url{t}cred5@git.internal.example/repo.git",
            (f"Url{t}cred5",),
        ),
        Canary(
            "connection_string",
            True,
            f"MONGO_URL=mongodb+srv://app:Mgo{t}conn3@cluster0.example.net/orders",
            (f"Mgo{t}conn3",),
        ),
        Canary(
            "authorization_header",
            True,
            f"Authorization: Bearer Brr{t}tok{d[:6]}XyZ",
            (f"Brr{t}tok{d[:6]}XyZ",),
        ),
        Canary("x_api_key", True, f"X-Api-Key: Xak{t}{d[:8]}Q", (f"Xak{t}{d[:8]}Q",)),
        Canary(
            "slack_token",
            True,
            f"slack xoxb-{d[:11]}-{d[1:12]}-{t.lower()}slackcanary",
            (f"{t.lower()}slackcanary",),
        ),
        Canary("email", True, f"page {t.lower()}.oncall@canary-corp.example", ()),
        Canary("ipv4", True, f"upstream 203.0.113.{int(d[:2]) + 100}", ()),
        Canary("ipv6", True, f"peer 2001:db8:{d[:4]}::{d[4:8]}", ()),
        Canary("phone", True, f"call +1 415 {d[:3]} {d[3:7]}", ()),
        Canary("card", True, f"card {_luhn_complete('4111' + d[:11])}", ()),
        # ---- the 13 kinds that leaked ----
        Canary(
            "aws_json_secret_access_key",
            False,
            f'{{"AccessKeyId": "ASIA{T[:4]:0<4}JSN{d[:9]}", '
            f'"SecretAccessKey": "Sak{t}{_b64(t + "sak", 30)}"}}',
            (f"Sak{t}{_b64(t + 'sak', 30)}",),
        ),
        Canary(
            "aws_json_session_token",
            False,
            f'{{"SessionToken": "FwoGZXIvYXdz{t}{_b64(t + "sess", 40)}"}}',
            (f"FwoGZXIvYXdz{t}{_b64(t + 'sess', 40)}",),
        ),
        Canary(
            "gcp_private_key",
            False,
            '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\n'
            + "\\n".join(gcp_lines)
            + '\\n-----END PRIVATE KEY-----\\n"}',
            tuple(gcp_lines),
        ),
        Canary(
            "secret_key_base",
            False,
            f"SECRET_KEY_BASE={_digits(t + 'skb', 20)}{t.lower()}skb",
            (f"{_digits(t + 'skb', 20)}{t.lower()}skb",),
        ),
        Canary("passphrase", False, f"passphrase=Phr{t}ase4", (f"Phr{t}ase4",)),
        Canary(
            "docker_auth",
            False,
            '{"auths": {"registry.example.com": {"auth": "'
            + base64.b64encode(f"ci:Dkr{t}pw2".encode()).decode()
            + '"}}}',
            (base64.b64encode(f"ci:Dkr{t}pw2".encode()).decode(),),
        ),
        Canary(
            "netrc",
            False,
            f"machine api.example.com login deploy password Ntr{t}rc6",
            (f"Ntr{t}rc6",),
        ),
        Canary("mysql_p", False, f"mysql -u root -pMsq{t}p8 -h db orders", (f"Msq{t}p8",)),
        Canary(
            "google_api_key",
            False,
            f"maps key AIza{_word(t + _b64(t + 'gapi', 40))[:35]}",
            (),
        ),
        Canary(
            "openai_key",
            False,
            f"OPENAI_API_KEY sk-proj-{t}{_word(_b64(t + 'oai', 30))}9",
            (),
        ),
        Canary(
            "azure_sas",
            False,
            f"https://acct.blob.core.windows.net/logs?sv=2022-11-02&sp=r&se=2026-12-31"
            f"&sig=Sas{t}{d[:6]}%2Bq%3D",
            (f"Sas{t}{d[:6]}",),
        ),
        Canary(
            "prose_password",
            False,
            f"fyi the root password is Prs{t}hunt3r now",
            (f"Prs{t}hunt3r",),
        ),
        Canary("us_ssn", False, f"employee ssn on file 2{d[1:3]}-{d[3:5]}-{d[5:9]}", ()),
    ]
    # Where `secrets` is empty the whole value after the label is the secret.
    fixed = []
    for c in out:
        if c.secrets:
            fixed.append(c)
            continue
        value = c.line.split("=", 1)[1] if c.kind == "aws_access_key_id" else c.line.split()[-1]
        if c.kind == "phone":
            value = " ".join(c.line.split()[-3:])
            secrets: tuple[str, ...] = (value, value.replace(" ", ""))
        else:
            secrets = (value,)
        fixed.append(Canary(c.kind, c.documented, c.line, secrets))
    return fixed


def leaks(text: str, kinds: list[Canary]) -> list[str]:
    """The kinds whose secret parts appear in `text`."""
    return [c.kind for c in kinds if any(s in text for s in c.secrets)]
