"""A test token issuer: an Ed25519 key, its JWKS served over real HTTP, and tokens.

Services under test fetch the JWKS from `jwks_url` exactly as they fetch the auth
service's in production, so token verification runs for real. It also answers the auth
service's `POST /internal/v1/service-token` (client secret `SERVICE_CLIENT_SECRET`), so a
service under test with `auth_url=issuer.url` mints real service tokens for its
/internal calls (ADR 0135).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

SERVICE_CLIENT_SECRET = "test-service-client-secret-0123456789"


class _Server(ThreadingHTTPServer):
    # JWKS fetches and service-token mints of many services under test at once: the
    # default listen backlog of 5 drops connections on a loaded machine.
    request_queue_size = 128
    daemon_threads = True


class TokenIssuer:
    def __init__(self, issuer: str = "faultmaven", audience: str = "faultmaven-api") -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = f"test-{uuid.uuid4().hex[:8]}"
        self.private_key = Ed25519PrivateKey.generate()
        jwk = json.loads(OKPAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "EdDSA"})
        self.jwks: dict[str, Any] = {"keys": [jwk]}
        self._server: ThreadingHTTPServer | None = None
        # (client_id, on_behalf_of) of every service token minted over HTTP.
        self.service_token_requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        """The base URL: what a service under test takes as its `auth_url`."""
        assert self._server is not None, "call start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    def start(self) -> TokenIssuer:
        body = json.dumps(self.jwks).encode()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._answer(200, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                if (
                    self.path != "/internal/v1/service-token"
                    or request.get("client_secret") != SERVICE_CLIENT_SECRET
                ):
                    self._answer(401, b'{"detail": "bad client", "code": "INVALID_CLIENT"}')
                    return
                client_id = str(request.get("client_id"))
                on_behalf_of = request.get("on_behalf_of")
                issuer.service_token_requests.append((client_id, on_behalf_of))
                token = issuer.service_token(on_behalf_of, client_id=client_id)
                answer = {"access_token": token, "token_type": "bearer", "expires_in": 300}
                self._answer(200, json.dumps(answer).encode())

            def log_message(self, *_args: Any) -> None:
                return

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def claims(
        self,
        user_id: str | None = None,
        *,
        username: str | None = None,
        roles: tuple[str, ...] | list[str] = ("user",),
        ttl: int = 900,
        **overrides: Any,
    ) -> dict[str, Any]:
        now = int(time.time())
        user_id = user_id or str(uuid.uuid4())
        claims: dict[str, Any] = {
            "sub": user_id,
            "username": username or f"user-{user_id[:8]}",
            "roles": list(roles),
            "sid": str(uuid.uuid4()),
            "jti": uuid.uuid4().hex,
            "type": "access",
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl,
        }
        claims.update(overrides)
        return claims

    def token(self, user_id: str | None = None, **kwargs: Any) -> str:
        """A valid access token for `user_id` (claims overridable, e.g. exp=...)."""
        return self.sign(self.claims(user_id, **kwargs))

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(
            claims,
            self.private_key,
            algorithm="EdDSA",
            headers={"kid": self.kid, **(headers or {})},
        )

    def headers(self, user_id: str | None = None, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, **kwargs)}"}

    def service_token(
        self,
        on_behalf_of: str | None,
        *,
        client_id: str = "worker",
        session_id: str | None = None,
    ) -> str:
        """A service token of `client_id` acting for `on_behalf_of` (naming a login
        session, as the auth service's own do), as the auth service mints it."""
        claims = self.claims(
            f"service:{client_id}", username=f"service:{client_id}", roles=("service",), ttl=300
        )
        claims.pop("sid")
        if on_behalf_of:
            claims["on_behalf_of"] = on_behalf_of
        if session_id:
            claims["sid"] = session_id
        return self.sign(claims)

    def service_headers(
        self, on_behalf_of: str, *, client_id: str = "worker", session_id: str | None = None
    ) -> dict[str, str]:
        token = self.service_token(on_behalf_of, client_id=client_id, session_id=session_id)
        return {"Authorization": f"Bearer {token}"}
