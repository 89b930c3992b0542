"""The signing key: from FM_AUTH_SIGNING_KEY (PEM text), a PEM file, or generated into
the data dir on first start (self-hosted only: in enterprise mode every replica must sign
with the same key, ADR 0145).

Only Ed25519 (EdDSA) is supported; the `kid` is the key's RFC 7638 JWK thumbprint, so
the same key always has the same kid and a replaced key gets a new one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

log = structlog.get_logger(__name__)

ALGORITHM = "EdDSA"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    kid: str
    public_jwk: dict[str, str]

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}


@dataclass(frozen=True)
class VerificationKey:
    """A retired key's public half: still verifies tokens it signed, never signs."""

    public_key: Ed25519PublicKey
    kid: str
    public_jwk: dict[str, str]


@dataclass(frozen=True)
class KeyRing:
    """The current signing key and the retired keys whose tokens are still honoured."""

    current: SigningKey
    previous: tuple[VerificationKey, ...] = ()

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.current.public_jwk, *(k.public_jwk for k in self.previous)]}

    def public_key_for(self, kid: str) -> Ed25519PublicKey | None:
        if kid == self.current.kid:
            return self.current.private_key.public_key()
        for key in self.previous:
            if key.kid == kid:
                return key.public_key
        return None


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 thumbprint of an OKP public key (members crv, kty, x in order)."""
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":")
    )
    return _b64(hashlib.sha256(canonical.encode()).digest())


def _public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}
    return {**jwk, "kid": thumbprint(jwk), "use": "sig", "alg": ALGORITHM}


def signing_key_from(private_key: Ed25519PrivateKey) -> SigningKey:
    jwk = _public_jwk(private_key.public_key())
    return SigningKey(private_key, jwk["kid"], jwk)


def load_previous_key(path: Path) -> VerificationKey:
    """A retired key from a PEM file holding its private or only its public half."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SystemExit(
            f"invalid configuration: FM_AUTH_PREVIOUS_KEY_PATHS: {path} cannot be read"
        ) from exc
    return previous_key_from_pem(data, f"the previous key {path}")


def previous_key_from_pem(data: bytes, source: str) -> VerificationKey:
    """A retired key from PEM text (its private or public half); `source` names it."""
    key: object
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise SystemExit(f"invalid configuration: {source} is not a PEM key") from exc
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise SystemExit(f"invalid configuration: {source} is not an Ed25519 key")
    jwk = _public_jwk(key)
    return VerificationKey(key, jwk["kid"], jwk)


_PEM_BLOCK = re.compile(rb"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.DOTALL)


def previous_keys_from_pem(text: str, setting: str) -> tuple[VerificationKey, ...]:
    """Every PEM block of `text` (one setting holding several retired keys, as a Kubernetes
    secret mounted into the environment would)."""
    blocks = _PEM_BLOCK.findall(text.encode())
    if text.strip() and not blocks:
        raise SystemExit(f"invalid configuration: {setting} holds no PEM key")
    return tuple(
        previous_key_from_pem(block, f"{setting} (key {i + 1})") for i, block in enumerate(blocks)
    )


def _write_new_key(path: Path) -> None:
    """Write a fresh key so that it appears complete or not at all (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".signing_key.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            # link() fails when another process created the key first; theirs wins.
            os.link(tmp, path)
            log.info("auth.signing_key_created", path=str(path))
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def load_or_create_signing_key(path: Path, *, create: bool) -> SigningKey:
    """The key at `path`; created there first when `create` and it does not exist."""
    if not path.exists():
        if not create:
            raise SystemExit(f"invalid configuration: FM_AUTH_SIGNING_KEY_PATH: {path} not found")
        _write_new_key(path)
    return signing_key_from_pem(path.read_bytes(), f"the signing key {path}")


def signing_key_from_pem(data: bytes, source: str) -> SigningKey:
    """The signing key from PEM text (a file's, or FM_AUTH_SIGNING_KEY's); `source`
    names it in the one line that stops the process when it is not a usable key."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"invalid configuration: {source} is not an unencrypted PEM key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(f"invalid configuration: {source} is not an Ed25519 key")
    return signing_key_from(key)
