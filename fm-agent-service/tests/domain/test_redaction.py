"""Redaction: detection of every canary kind, stable per-case placeholders in Redis,
restoration (also across streamed chunks), and failing closed."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from agent_service.domain.privacy.detect import find_sensitive
from agent_service.domain.privacy.redaction import CaseRedactor, MapCipher, RedactionFailed

CIPHER = MapCipher("unit-test-redaction-key")

CANARIES = {
    "aws_access_key": "AKIAIOSFODNN7CANARY1",
    "github_token": "ghp_CanaryToken0123456789abcdefghijklmnop",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5",
    "connection_string": "Pa55wordCanary",
    "email": "canary.person@example.org",
    "ip": "203.0.113.77",
    "card": "4111 1111 1111 1111",
    "private_key": "MIIEcanaryPRIVATEkeyMATERIAL",
}

TEXT = f"""deploy log
aws_access_key_id={CANARIES["aws_access_key"]}
GITHUB_TOKEN {CANARIES["github_token"]}
Authorization: Bearer {CANARIES["jwt"]}
db=postgres://app:{CANARIES["connection_string"]}@db.internal:5432/orders
mail from {CANARIES["email"]} via {CANARIES["ip"]}
paid with {CANARIES["card"]}
-----BEGIN RSA PRIVATE KEY-----
{CANARIES["private_key"]}
-----END RSA PRIVATE KEY-----
"""


def test_every_canary_kind_is_found() -> None:
    found = find_sensitive(TEXT)
    values = " ".join(f.value for f in found)
    for canary in CANARIES.values():
        assert canary in values


def test_ordinary_log_text_is_left_alone() -> None:
    text = "2024-01-15T10:31:02Z INFO served /api/orders in 1234 ms status=200 version 1.2.3"
    assert find_sensitive(text) == []


def test_card_numbers_must_pass_luhn() -> None:
    assert [f.kind for f in find_sensitive("card 4111 1111 1111 1111")] == ["card"]
    assert find_sensitive("order 4111 1111 1111 1112") == []


def test_password_in_key_value_and_url_are_found() -> None:
    kinds = {
        f.value: f.kind for f in find_sensitive("password=hunter2x and https://u:s3cretPw@h.io/x")
    }
    assert kinds == {"hunter2x": "keyed_secret", "s3cretPw": "connection_string"}


async def test_placeholders_are_stable_per_case_and_restored(redis_url: str) -> None:
    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        first = CaseRedactor(redis, "case-1", CIPHER, 60)
        out = (await first.redact([TEXT, f"again {CANARIES['ip']}"])).texts
        for canary in CANARIES.values():
            assert canary not in "".join(out)
        assert "<IP_1>" in out[0]
        assert out[1] == "again <IP_1>"
        assert first.restore(out[0]) == TEXT
        # A later turn (a new redactor) gets the same placeholder for the same value.
        later = CaseRedactor(redis, "case-1", CIPHER, 60)
        assert (await later.redact([f"from {CANARIES['email']}"])).texts == ["from <EMAIL_1>"]
        other_case = CaseRedactor(redis, "case-2", CIPHER, 60)
        assert (await other_case.redact(["10.9.8.7"])).texts == ["<IP_1>"]
        assert await redis.ttl("fm:agent:redact:case-1") > 0
    finally:
        await redis.aclose()


async def test_stream_restorer_handles_placeholders_split_across_chunks(redis_url: str) -> None:
    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        red = CaseRedactor(redis, "case-s", CIPHER, 60)
        await red.redact([f"host {CANARIES['ip']} mail {CANARIES['email']}"])
        stream = red.stream_restorer()
        chunks = ["The host <I", "P_", "1> sent to <EMA", "IL_1", ">", " ok <"]
        out = "".join(stream.feed(c) for c in chunks) + stream.flush()
        assert out == f"The host {CANARIES['ip']} sent to {CANARIES['email']} ok <"
    finally:
        await redis.aclose()


async def test_redaction_fails_closed_when_redis_is_down() -> None:
    redis = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(RedactionFailed) as err:
            await CaseRedactor(redis, "case-x", CIPHER, 60).redact([TEXT])
        assert err.value.status_code == 503
    finally:
        await redis.aclose()
