"""Redaction patterns one by one (the 30 canary kinds and their relatives), near-misses
that must stay as they are, the map's encryption at rest and lifetime, known originals
re-redacted without their context, and the choke point at the provider chain's entry."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import redis.asyncio as aioredis
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from agent_service.domain.evidence.condense import condense_text
from agent_service.domain.llm.outbound import redact_outbound
from agent_service.domain.privacy.detect import find_sensitive, key_is_sensitive, sensitive_spans
from agent_service.domain.privacy.redaction import (
    CaseRedactor,
    MapCipher,
    delete_case_map,
    map_key,
)
from fm_common.testing.canaries import canaries, leaks

CIPHER = MapCipher("unit-test-redaction-key")
KINDS = canaries("unit")


def _redacted(text: str) -> str:
    out = text
    for f in reversed(find_sensitive(text)):
        out = out[: f.start] + "<X>" + out[f.end :]
    return out


@pytest.mark.parametrize("canary", KINDS, ids=[c.kind for c in KINDS])
def test_every_canary_kind_is_redacted_in_context(canary: object) -> None:
    text = f"2026-11-24T10:00:00Z INFO before\n{canary.line}\nafter the line"  # type: ignore[attr-defined]
    assert leaks(_redacted(text), [canary]) == []  # type: ignore[list-item]


def test_thirty_kinds_seventeen_documented() -> None:
    assert len(KINDS) == 30
    assert sum(c.documented for c in KINDS) == 17
    assert leaks(_redacted("\n".join(c.line for c in KINDS)), KINDS) == []


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # structured key names: JSON, YAML, env, INI, XML, flags
        ('{"client_secret": "Cs-9f8e7d6c"}', "Cs-9f8e7d6c"),
        ("db:\n  credentials:\n    password: 'Yaml Pass 1'", "Yaml Pass 1"),
        ("export PGPASSWORD=pg9Secret", "pg9Secret"),
        ("[default]\naws_session_token = IQoJb3JpZ2luX2VjE", "IQoJb3JpZ2luX2VjE"),
        ("<SecretAccessKey>xml9SecretKey</SecretAccessKey>", "xml9SecretKey"),
        ("vault login --token hvs.CAESIJ9x", "hvs.CAESIJ9x"),
        ("STRIPE_API_KEY='rk_test_51abc'", "rk_test_51abc"),
        ('"sasToken": "sv=2021&sig=abc123xyz"', "abc123xyz"),
        ("RAILS_MASTER_KEY=0a1b2c3d4e5f", "0a1b2c3d4e5f"),
        # connection strings
        ("Server=tcp:x.net;User ID=sa;Password=Ado9pw;Encrypt=True", "Ado9pw"),
        ("AccountName=a;AccountKey=Zm9vYmFyYmF6cXV4==;EndpointSuffix=x", "Zm9vYmFyYmF6cXV4=="),
        ("redis://:R3disPw@cache:6379/0", "R3disPw"),
        ("jdbc:postgresql://db/orders?user=app&password=Jdbc9pw", "Jdbc9pw"),
        # command lines
        ("curl -u admin:Curl9pw https://x", "Curl9pw"),
        ("sshpass -p 'Ssh9pw' ssh host", "Ssh9pw"),
        ("redis-cli -h r -a Redis9pw ping", "Redis9pw"),
        ("mysqldump -uroot -p'Dump9pw' orders", "Dump9pw"),
        # .netrc over several lines
        ("machine github.com\n  login octo\n  password Netrc9pw\n", "Netrc9pw"),
        ("deploy password Ntr9cut1 (a netrc line cut before machine)", "Ntr9cut1"),
        # cards never glued to the number after them
        ("card 4111111111111111 502 when", "4111111111111111"),
        ("a chunk that starts at Authorization's value: Bearer Xy9abcdefghij0123456", "Xy9abc"),
        # cloud tokens
        ("token ya29.a0AfH6SMBx9canaryTokenValue123", "ya29.a0AfH6SMBx9canaryTokenValue123"),
        ("client GOCSPX-AbCdEf123456GhIjKl789", "GOCSPX-AbCdEf123456GhIjKl789"),
        ("key sk-ant-api03-AbCdEf0123456789ghijkl", "sk-ant-api03-AbCdEf0123456789ghijkl"),
        # prose
        ("the password for db01 was set to Prose9pw.", "Prose9pw"),
        ("FYI: my passphrase is 'Tr0ub4dor&3'", "Tr0ub4dor&3"),
        ("the api key is Ak9canaryvalue", "Ak9canaryvalue"),
    ],
)
def test_relatives_are_redacted(text: str, secret: str) -> None:
    assert secret not in _redacted(text), find_sensitive(text)


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-15T10:31:02Z INFO served /api/orders in 1234 ms status=200 version 1.2.3",
        "2024-01-15 10:31:02,123 WARN pool max_tokens=1500 token_count=3 tokens_used=812",
        "password_file=/etc/app/pw password_min_length=12 auth_method=basic author: bob",
        "the password is incorrect; the password was rotated yesterday",
        "Login failed: password is required",
        "token is expired, refreshing",
        "the secret is stored in vault",
        "password: ${DB_PASSWORD} token: <your-token> secret: {{ .Values.secret }}",
        "password=*** token=null secret=true auth=required",
        "mysql -h db -P 3306 -u root -p orders",
        "commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
        "0a86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "date 2024-01-15 and build 2024-01-15-1 and 1.2.3.4.5",
        "GET /v1/sessions/abc?limit=50&offset=100 HTTP/1.1 200",
        "oauth_callback=/login author=alice keyspace=orders",
        "ORA-12541: TNS:no listener at 10:31:02",
        "Exception in thread main java.lang.NullPointerException at Foo.bar(Foo.java:42)",
        "we ran sk-learn 1.4 and the skill-check",
        "<name>orders</name><timeout>30</timeout>",
        "see docs at https://example.com/docs/passwords-and-tokens",
    ],
)
def test_ordinary_text_is_not_redacted(text: str) -> None:
    assert find_sensitive(text) == []


def test_key_names_are_judged_on_their_words() -> None:
    for key in ("SecretAccessKey", "SECRET_KEY_BASE", "aws_session_token", "auth", "sig"):
        assert key_is_sensitive(key), key
    for key in ("max_tokens", "password_file", "author", "oauth_url", "session", "keyspace"):
        assert not key_is_sensitive(key), key


def test_a_private_key_cut_short_is_redacted_header_and_body() -> None:
    body = [
        "MIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB",
        "aFDrBz9vFqU4yT5mJb8qQ7Yx0eN7Q4W5vH1ZzS2oK8bJ0cT9dGm7nV3xL4qR2sPt",
    ]
    cut = "2026-11-24T10:00:00Z ERROR dump\n-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(body)
    out = _redacted(cut + "\n2026-11-24T10:00:01Z INFO next line")
    assert not any(line in out for line in body)
    assert "INFO next line" in out
    # The body alone (its header fell in another chunk of a document) is redacted too,
    # as lines, as tokens a chunker joined with spaces, and up to a dangling END line.
    assert not any(line in _redacted("\n".join(body) + "\n") for line in body)
    assert not any(line in _redacted("config " + " ".join(body) + " done") for line in body)
    tail = f"{body[1]} AbCd0123 -----END RSA PRIVATE KEY----- next"
    assert _redacted(tail) == "<X> next"
    assert not any(line in _redacted(body[0]) for line in body)  # one 64-char line


def test_redaction_before_condensing_keeps_a_cut_private_key_whole() -> None:
    """The condenser used to run first and split the key's lines apart."""
    body = [
        f"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo{i}abcdefghijklmnopqrstuvwxyz0123" for i in range(6)
    ]
    log = "\n".join(f"2026-11-24T10:00:{i:02d}Z INFO request {i} ok" for i in range(40))
    log += "\n2026-11-24T10:01:00Z ERROR dump follows\n-----BEGIN PRIVATE KEY-----\n"
    log += "\n".join(body) + "\n"
    condensed_after = condense_text(_redacted(log), 1500)
    assert not any(line in condensed_after for line in body)


def test_spans_give_character_offsets_for_images() -> None:
    text = "ocr: password=Img9pw and mail a.b@example.org"
    spans = sensitive_spans(text)
    assert [(text[s:e], kind) for s, e, kind in spans] == [
        ("Img9pw", "keyed_secret"),
        ("a.b@example.org", "email"),
    ]


async def test_originals_are_encrypted_at_rest_and_live_as_long_as_the_case(
    redis_url: str,
) -> None:
    redis = aioredis.from_url(redis_url, decode_responses=True)
    case_id = f"case-{uuid.uuid4().hex}"
    secret = "Enc9RestPw"
    try:
        red = CaseRedactor(redis, case_id, CIPHER)
        out = (await red.redact([f"password={secret} from 198.51.100.23"])).texts[0]
        assert out == "password=<SECRET_1> from <IP_1>"
        stored = await redis.hgetall(map_key(case_id))
        dump = " ".join(f"{k} {v}" for k, v in stored.items())
        assert secret not in dump
        assert "198.51.100.23" not in dump
        assert hashlib.sha256(secret.encode()).hexdigest() not in dump  # keyed digest
        assert stored["p:<SECRET_1>"].startswith("e1:")
        assert await redis.ttl(map_key(case_id)) == -1  # no expiry: the case's lifetime
        # Another key cannot read the originals; the right one restores them.
        other = CaseRedactor(redis, case_id, MapCipher("another-key"))
        await other.load()
        assert other.restore("<SECRET_1>") == "<SECRET_1>"
        again = CaseRedactor(redis, case_id, CIPHER)
        await again.load()
        assert again.restore("<SECRET_1> <IP_1>") == f"{secret} 198.51.100.23"
        # Moving a sealed original to another case's map does not decrypt there.
        moved = f"case-{uuid.uuid4().hex}"
        await redis.hset(map_key(moved), "p:<SECRET_1>", stored["p:<SECRET_1>"])
        thief = CaseRedactor(redis, moved, CIPHER)
        await thief.load()
        assert thief.restore("<SECRET_1>") == "<SECRET_1>"
        await delete_case_map(redis, case_id)
        assert await redis.exists(map_key(case_id)) == 0
    finally:
        await redis.aclose()


async def test_a_map_written_in_clear_is_sealed_when_read(redis_url: str) -> None:
    redis = aioredis.from_url(redis_url, decode_responses=True)
    case_id = f"case-{uuid.uuid4().hex}"
    try:
        await redis.hset(map_key(case_id), mapping={"p:<SECRET_1>": "Legacy9pw"})
        red = CaseRedactor(redis, case_id, CIPHER)
        await red.load()
        assert red.restore("<SECRET_1>") == "Legacy9pw"
        assert (await redis.hget(map_key(case_id), "p:<SECRET_1>")).startswith("e1:")
    finally:
        await redis.aclose()


async def test_a_known_original_is_redacted_without_its_context(redis_url: str) -> None:
    """Turn 1 redacts `password=X`; the answer restored for the user says X alone; the
    next turn's history (a new redactor) must not send X."""
    redis = aioredis.from_url(redis_url, decode_responses=True)
    case_id = f"case-{uuid.uuid4().hex}"
    try:
        first = CaseRedactor(redis, case_id, CIPHER)
        await first.redact(["login with password=Hunt3rKnown please"])
        answer_shown = first.restore("Your value <SECRET_1> is weak.")
        assert answer_shown == "Your value Hunt3rKnown is weak."
        later = CaseRedactor(redis, case_id, CIPHER)
        out = (await later.redact([answer_shown, "glued: xHunt3rKnownx"])).texts
        assert out == ["Your value <SECRET_1> is weak.", "glued: x<SECRET_1>x"]
    finally:
        await redis.aclose()


async def test_the_choke_point_redacts_every_message(redis_url: str) -> None:
    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        red = CaseRedactor(redis, f"case-{uuid.uuid4().hex}", CIPHER)
        messages = [
            SystemMessage("TASK: turn. case: the root password is Sys9pwd"),
            HumanMessage("mysql -u root -pHist9pw"),
            AIMessage([{"type": "text", "text": "Use passphrase=Ai9phrase"}]),
            HumanMessage("QUESTION: SSN 123-45-6789?"),
        ]
        out = await redact_outbound(messages, red)
        text = " ".join(str(m.content) for m in out)
        for secret in ("Sys9pwd", "Hist9pw", "Ai9phrase", "123-45-6789"):
            assert secret not in text
        assert "<SSN_1>" in text
        assert [type(m) for m in out] == [type(m) for m in messages]
        again = await redact_outbound(out, red)  # idempotent: placeholders are not values
        assert [m.content for m in again] == [m.content for m in out]
    finally:
        await redis.aclose()


async def test_a_known_secret_glued_to_other_text_is_redacted(redis_url: str) -> None:
    """A chunk that begins at `-pSECRET` (its `mysql` in the chunk before) has no context
    a detector needs; the case's map still knows the value."""
    redis = aioredis.from_url(redis_url, decode_responses=True)
    case_id = f"case-{uuid.uuid4().hex}"
    try:
        first = CaseRedactor(redis, case_id, CIPHER)
        await first.redact(["mysql -u root -pGlu3dSecret9 -h db", "pwd=Sh0rt7"])
        later = CaseRedactor(redis, case_id, CIPHER)
        out = (await later.redact(["-pGlu3dSecret9 -h db orders", "Sh0rt7 xSh0rt7x"])).texts
        # Shorter than 8: only as a whole word (not inside another token).
        assert out == ["-p<SECRET_1> -h db orders", "<SECRET_2> xSh0rt7x"]
    finally:
        await redis.aclose()


def test_a_passage_that_starts_at_a_secret_value_is_redacted() -> None:
    """A chunk whose overlap begins at the token (its `Authorization: Bearer` is in the
    chunk before) has no context; key-looking leading tokens of a passage are secrets."""
    chunk = "Brr37f21btok245725XyZ pool the exhausted 502 is and pool"
    found = find_sensitive(chunk, cut_before=True)
    assert [(f.value, f.kind) for f in found] == [("Brr37f21btok245725XyZ", "vendor_token")]
    assert find_sensitive(chunk) == []  # not in whole texts: only where a cut was
    for ordinary in ("PostgreSQL 16 restarts", "HTTP/1.1 502 from upstream", "x86_64 hosts"):
        assert find_sensitive(ordinary, cut_before=True) == []


def test_a_passage_that_starts_inside_a_phone_number_is_redacted() -> None:
    """The chunker may cut `call +1 415 927 9324` after `+1`: the digits that open the next
    chunk (after its heading line) are still the phone number."""
    chunk = "Orders credentials > Orders service credentials\n\n415 927 9324 card <CARD_1> ok"
    found = find_sensitive(chunk, cut_before=True)
    assert [(f.value, f.kind) for f in found] == [("415 927 9324", "phone")]
    assert [f.value for f in find_sensitive("927-9324 then more", cut_before=True)] == ["927-9324"]
    for ordinary in ("2026-11-24 10:00:01 INFO", "502 1234567 bytes", "v1.2.3 released"):
        assert find_sensitive(ordinary, cut_before=True) == []
