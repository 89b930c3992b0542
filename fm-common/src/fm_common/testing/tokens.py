"""A test token issuer: an Ed25519 key, its JWKS served over real HTTP, and tokens.

Services under test fetch the JWKS from `jwks_url` exactly as they fetch the auth
service's in production, so token verification runs for real.
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

    @property
    def jwks_url(self) -> str:
        assert self._server is not None, "call start() first"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/jwks.json"

    def start(self) -> TokenIssuer:
        body = json.dumps(self.jwks).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
