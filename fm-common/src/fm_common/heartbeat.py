"""Liveness of the processes that serve no HTTP (the Celery worker and beat): each keeps
a key in Redis fresh, and the gateway's /health reports a missing key as that component
unhealthy (issue 16: `/health` said healthy with the worker dead).
"""

from __future__ import annotations

import socket
import threading
import time

import structlog

log = structlog.get_logger("heartbeat")

# A key lives TTL seconds and is refreshed every INTERVAL: one missed beat is tolerated.
INTERVAL_SECONDS = 10
TTL_SECONDS = 35


def heartbeat_key(component: str) -> str:
    return f"fm:health:{component}"


def start_heartbeat(
    redis_url: str, component: str, interval: float = INTERVAL_SECONDS, ttl: int = TTL_SECONDS
) -> threading.Event:
    """Refresh `fm:health:<component>` from a daemon thread; set the returned event to stop."""
    import redis

    stop = threading.Event()
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    value = f"{socket.gethostname()}:{time.time():.0f}"

    def beat() -> None:
        while not stop.is_set():
            try:
                client.set(heartbeat_key(component), value, ex=ttl)
            except Exception as exc:  # Redis down: the key expires, health says so
                log.warning("heartbeat.failed", component=component, error=repr(exc))
            stop.wait(interval)
        client.delete(heartbeat_key(component))

    threading.Thread(target=beat, name=f"heartbeat-{component}", daemon=True).start()
    return stop
