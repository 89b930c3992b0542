"""How the gateway process is served: which peers' X-Forwarded-For it believes (issue 16
item 6, issue 12 item 5) and HTTPS with its own certificate (issue 12). Each test runs
the real `python -m gateway` process, as `make run` does, against stand-in services."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from gateway_testkit import ServerThread
from pydantic import ValidationError

from fm_common.devstack import free_port
from fm_common.testing.ports import wait_for_port
from fm_common.testing.redis_server import RedisServer
from fm_common.testing.tls import self_signed
from fm_common.testing.tokens import TokenIssuer
from gateway.config import Settings

SPOOFED = "203.0.113.9"


@pytest.fixture
def run_gateway(
    upstreams: dict[str, ServerThread],
    redis_server: RedisServer,
    token_issuer: TokenIssuer,
    tmp_path: Path,
) -> Iterator[Callable[..., int]]:
    procs: list[subprocess.Popen[bytes]] = []

    def run(**settings: str) -> int:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FM_", "FORWARDED"))}
        env.update({f"FM_{n.upper()}_URL": s.url for n, s in upstreams.items()})
        env.update(
            FM_GATEWAY_PORT=str(port),
            FM_REDIS_URL=redis_server.url,
            FM_JWKS_URL=token_issuer.jwks_url,
            FM_GATEWAY_DASHBOARD_DIR=str(tmp_path / "no-dashboard"),
            FM_LOG_LEVEL="WARNING",
            FM_LOG_FORMAT="json",
        )
        env.update({f"FM_GATEWAY_{k.upper()}": v for k, v in settings.items()})
        log = (tmp_path / f"gateway-{port}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stderr=log)
        procs.append(proc)
        wait_for_port(port, timeout=30)
        return port

    yield run
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=15)


def _forwarded_for(url: str, token: str, **client: object) -> str:
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": SPOOFED}
    with httpx.Client(timeout=10, **client) as http:  # type: ignore[arg-type]
        resp = http.get(f"{url}/api/v1/cases/echo", headers=headers)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["headers"]["x-forwarded-for"])


def test_a_spoofed_forwarded_for_from_loopback_is_not_believed_by_default(
    run_gateway: Callable[..., int], token_issuer: TokenIssuer
):
    port = run_gateway()
    seen = _forwarded_for(f"http://127.0.0.1:{port}", token_issuer.token("u1"))
    assert seen == "127.0.0.1"  # the TCP peer, not what the client wrote


def test_forwarded_for_is_believed_from_a_configured_network(
    run_gateway: Callable[..., int], token_issuer: TokenIssuer
):
    port = run_gateway(trusted_proxies="10.0.0.0/8,127.0.0.0/8")
    seen = _forwarded_for(f"http://127.0.0.1:{port}", token_issuer.token("u1"))
    assert seen == SPOOFED


def test_trusted_proxies_must_be_networks():
    with pytest.raises(ValidationError, match="not an IP network"):
        Settings(trusted_proxies="*")
    assert Settings(trusted_proxies='["10.1.0.0/16", "::1"]').trusted_proxies == [
        "10.1.0.0/16",
        "::1",
    ]


def test_the_gateway_serves_https_with_its_own_certificate(
    run_gateway: Callable[..., int], token_issuer: TokenIssuer, tmp_path: Path
):
    cert, key = self_signed(tmp_path)
    port = run_gateway(tls_cert_file=str(cert), tls_key_file=str(key))
    url = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(cert))  # the certificate verifies
    with httpx.Client(verify=trust, timeout=10) as http:
        health = http.get(f"{url}/ready")
        assert health.status_code == 200
        caps = http.get(f"{url}/v1/meta/capabilities").json()
        assert caps["dashboardUrl"].startswith(f"https://localhost:{port}")
    # The API through TLS; the services are told the client came over https.
    headers = {"Authorization": f"Bearer {token_issuer.token('u1')}"}
    with httpx.Client(verify=trust, timeout=10) as http:
        echoed = http.get(f"{url}/api/v1/cases/echo", headers=headers).json()
    assert echoed["headers"]["x-forwarded-proto"] == "https"
    # Plain HTTP on that port gets no answer from the application.
    with pytest.raises(httpx.HTTPError), httpx.Client(timeout=5) as http:
        http.get(f"http://127.0.0.1:{port}/ready")


def test_tls_settings_go_together_and_must_exist(tmp_path: Path):
    cert, _ = self_signed(tmp_path)
    with pytest.raises(ValidationError, match="go together"):
        Settings(tls_cert_file=cert)
    with pytest.raises(ValidationError, match="no readable file"):
        Settings(tls_cert_file=cert, tls_key_file=tmp_path / "missing.pem")
