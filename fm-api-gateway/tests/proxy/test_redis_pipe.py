"""The gateway's pipelined Redis client against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from gateway.proxy.redis_pipe import RedisDown, RedisPipe, RedisReplyError, encode


async def test_replies_of_every_kind_come_back_in_order(redis_url: str):
    pipe = RedisPipe(redis_url)
    try:
        replies = await pipe.execute(
            [
                encode("SET", "k", "v\r\nwith crlf"),
                encode("GET", "k"),
                encode("GET", "missing"),
                encode("INCR", "n"),
                encode("RPUSH", "l", "a", "b"),
                encode("LRANGE", "l", 0, -1),
                encode("INCR", "k"),  # not a number: an error reply, not an exception
            ]
        )
    finally:
        await pipe.close()
    assert replies[:6] == [b"OK", b"v\r\nwith crlf", None, 1, 2, [b"a", b"b"]]
    assert isinstance(replies[6], RedisReplyError)


async def test_concurrent_calls_get_their_own_replies(redis_url: str):
    pipe = RedisPipe(redis_url)
    try:
        results = await asyncio.gather(
            *(
                pipe.execute([encode("INCRBY", f"c{i}", i), encode("GET", f"c{i}")])
                for i in range(200)
            )
        )
    finally:
        await pipe.close()
    assert results == [[i, str(i).encode()] for i in range(200)]


async def test_the_database_in_the_url_is_selected(redis_url: str):
    url = redis_url.rsplit("/", 1)[0] + "/5"
    pipe = RedisPipe(url)
    try:
        await pipe.execute([encode("SET", "in-db-5", "yes")])
    finally:
        await pipe.close()
    r = aioredis.from_url(url)
    other = aioredis.from_url(redis_url)
    try:
        assert await r.get("in-db-5") == b"yes"
        assert await other.get("in-db-5") is None
    finally:
        await r.aclose()
        await other.aclose()


async def test_a_dead_redis_raises_redis_down(dead_url: str):
    pipe = RedisPipe(f"redis://127.0.0.1:{dead_url.rsplit(':', 1)[1]}/0")
    with pytest.raises(RedisDown):
        await pipe.execute([encode("PING")])


async def test_it_reconnects_after_the_connection_drops(redis_url: str):
    pipe = RedisPipe(redis_url)
    try:
        assert await pipe.execute([encode("PING")]) == [b"PONG"]
        r = aioredis.from_url(redis_url)
        await r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await r.aclose()
        await asyncio.sleep(0.1)
        assert await pipe.execute([encode("PING")]) == [b"PONG"]
    finally:
        await pipe.close()


async def test_commands_on_a_connection_dropped_under_them_are_sent_once_more(redis_url: str):
    """Redis restarting drops the connection with a command pending: the gateway sends it
    again on a new connection instead of answering 503 (issue 16 item 9)."""
    pipe = RedisPipe(redis_url, timeout=5.0)
    r = aioredis.from_url(redis_url)
    try:
        assert await pipe.execute([encode("PING")]) == [b"PONG"]
        # BLPOP waits on the pipe's connection until the list gets an item.
        pending = asyncio.ensure_future(pipe.execute([encode("BLPOP", "fm:test:q", 4)]))
        for _ in range(100):
            if "cmd=blpop" in str(await r.execute_command("CLIENT", "LIST")):
                break
            await asyncio.sleep(0.02)
        await r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        for _ in range(100):  # the retried BLPOP waits on a new connection
            if "cmd=blpop" in str(await r.execute_command("CLIENT", "LIST")):
                break
            await asyncio.sleep(0.02)
        await r.rpush("fm:test:q", "item")
        assert await pending == [[b"fm:test:q", b"item"]]
    finally:
        await r.aclose()
        await pipe.close()


async def test_a_reply_timeout_is_not_retried(redis_url: str):
    pipe = RedisPipe(redis_url, timeout=0.3)
    try:
        with pytest.raises(RedisDown) as raised:
            await pipe.execute([encode("BLPOP", "fm:test:never", 2)])
        assert type(raised.value) is RedisDown  # not RedisDropped: no second wait
    finally:
        await pipe.close()
