"""The signing key: thumbprint kid, file handling."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_service.domain.tokens.keys import (
    load_or_create_signing_key,
    signing_key_from,
    thumbprint,
)


def test_thumbprint_matches_the_rfc_8037_example():
    # RFC 8037 appendix A.2/A.3: this Ed25519 public key has this RFC 7638 thumbprint.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_kid_of_the_rfc_8037_private_key():
    d = base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A" + "=")
    key = signing_key_from(Ed25519PrivateKey.from_private_bytes(d))
    assert key.public_jwk["x"] == "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    assert key.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_key_is_created_once_with_mode_0600(tmp_path: Path):
    path = tmp_path / "auth" / "signing_key.pem"
    first = load_or_create_signing_key(path, create=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create_signing_key(path, create=True)
    assert again.kid == first.kid
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".signing_key.")]


def test_configured_key_path_must_exist(tmp_path: Path):
    with pytest.raises(SystemExit, match="not found"):
        load_or_create_signing_key(tmp_path / "missing.pem", create=False)


def test_a_non_ed25519_key_is_refused(tmp_path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "rsa.pem"
    path.write_bytes(pem)
    with pytest.raises(SystemExit, match="not an Ed25519 key"):
        load_or_create_signing_key(path, create=False)
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(SystemExit, match="not an unencrypted PEM"):
        load_or_create_signing_key(tmp_path / "junk.pem", create=False)


def test_previous_key_may_be_the_public_half_only(tmp_path: Path):
    from cryptography.hazmat.primitives import serialization

    from auth_service.domain.tokens.keys import KeyRing, load_previous_key

    current = load_or_create_signing_key(tmp_path / "current.pem", create=True)
    retired = Ed25519PrivateKey.generate()
    public_pem = retired.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "retired.pub").write_bytes(public_pem)
    previous = load_previous_key(tmp_path / "retired.pub")
    assert previous.kid == signing_key_from(retired).kid
    ring = KeyRing(current, (previous,))
    assert [k["kid"] for k in ring.jwks["keys"]] == [current.kid, previous.kid]
    assert ring.public_key_for(previous.kid) is previous.public_key
    assert ring.public_key_for("unknown") is None
    with pytest.raises(SystemExit, match="cannot be read"):
        load_previous_key(tmp_path / "missing.pem")


def _pem(key: Ed25519PrivateKey, public: bool = False) -> str:
    if public:
        return (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_keys_from_the_environment_sign_and_list_every_retired_kid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    from auth_service.config import Settings
    from auth_service.main import load_key_ring

    current, old, older = (Ed25519PrivateKey.generate() for _ in range(3))
    monkeypatch.setenv("FM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FM_AUTH_SIGNING_KEY", _pem(current))
    monkeypatch.setenv("FM_AUTH_PREVIOUS_KEYS", _pem(old) + "\n" + _pem(older, public=True))
    ring = load_key_ring(Settings())
    assert ring.current.kid == signing_key_from(current).kid
    kids = [k["kid"] for k in ring.jwks["keys"]]
    assert kids == [ring.current.kid, signing_key_from(old).kid, signing_key_from(older).kid]
    assert not (tmp_path / "auth").exists()  # nothing generated into the data dir
    # Another replica with the same settings: the same key set.
    assert load_key_ring(Settings()).jwks == ring.jwks


def test_a_bad_key_in_the_environment_stops_with_one_line(monkeypatch: pytest.MonkeyPatch):
    from auth_service.config import Settings
    from auth_service.main import load_key_ring

    monkeypatch.setenv("FM_AUTH_SIGNING_KEY", "not a key")
    with pytest.raises(SystemExit, match=r"^invalid configuration: FM_AUTH_SIGNING_KEY is not"):
        load_key_ring(Settings())
    monkeypatch.setenv("FM_AUTH_SIGNING_KEY", _pem(Ed25519PrivateKey.generate()))
    monkeypatch.setenv("FM_AUTH_PREVIOUS_KEYS", "garbage")
    with pytest.raises(SystemExit, match="FM_AUTH_PREVIOUS_KEYS holds no PEM key"):
        load_key_ring(Settings())


def test_enterprise_auth_refuses_to_generate_a_key_per_replica(monkeypatch: pytest.MonkeyPatch):
    from auth_service.config import Settings
    from fm_common.settings import load_settings

    monkeypatch.setenv("FM_DEPLOYMENT", "enterprise")
    monkeypatch.setenv("FM_AUTH_DATABASE_URL", "postgresql+asyncpg://fm@db/auth")
    with pytest.raises(SystemExit, match="FM_AUTH_SIGNING_KEY or FM_AUTH_SIGNING_KEY_PATH"):
        load_settings(Settings)
    monkeypatch.setenv("FM_AUTH_SIGNING_KEY", _pem(Ed25519PrivateKey.generate()))
    assert load_settings(Settings).deployment == "enterprise"
    monkeypatch.setenv("FM_AUTH_SIGNING_KEY_PATH", "/run/secrets/key.pem")
    with pytest.raises(SystemExit, match="not both"):
        load_settings(Settings)


def test_a_configured_path_is_made_only_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """compose's own key volume: FM_AUTH_CREATE_SIGNING_KEY makes the key on the first
    start and keeps it; without it a missing file stops the service; never in enterprise."""
    from auth_service.config import Settings
    from auth_service.main import load_key_ring
    from fm_common.settings import load_settings

    path = tmp_path / "keys" / "signing_key.pem"
    monkeypatch.setenv("FM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FM_AUTH_SIGNING_KEY_PATH", str(path))
    with pytest.raises(SystemExit, match="not found"):
        load_key_ring(Settings())
    monkeypatch.setenv("FM_AUTH_CREATE_SIGNING_KEY", "true")
    first = load_key_ring(Settings())
    assert path.is_file()
    assert load_key_ring(Settings()).current.kid == first.current.kid  # kept, not replaced
    monkeypatch.setenv("FM_DEPLOYMENT", "enterprise")
    monkeypatch.setenv("FM_AUTH_DATABASE_URL", "postgresql+asyncpg://fm@db/auth")
    with pytest.raises(SystemExit, match="FM_AUTH_CREATE_SIGNING_KEY"):
        load_settings(Settings)
