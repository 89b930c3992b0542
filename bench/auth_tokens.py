"""Token signing/verification and password hashing costs of the auth service.

Side by side in one run:
  - EdDSA (Ed25519, what the auth service signs with; ADR 0010) against RS256 (RSA
    2048, the other algorithm API.md allows): tokens signed and verified per second with
    PyJWT on the real access-token claims, and the ratios;
  - bcrypt verify at cost 10, 12 (the default) and 13: milliseconds per check, the
    price of one login, and the ratio to the default.
Writes bench/results/auth_tokens.json.

    uv run --frozen --no-sync python bench/auth_tokens.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import uuid
from pathlib import Path
from typing import Any

import bcrypt
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

RESULTS = Path(__file__).resolve().parent / "results"


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": str(uuid.uuid4()),
        "username": "alice",
        "roles": ["user"],
        "sid": str(uuid.uuid4()),
        "jti": uuid.uuid4().hex,
        "type": "access",
        "iss": "faultmaven",
        "aud": "faultmaven-api",
        "iat": now,
        "exp": now + 900,
    }


def _rate(fn: Any, seconds: float) -> float:
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        done += 50
    return done / elapsed


def bench_algorithms(seconds: float) -> dict[str, Any]:
    keys = {
        "EdDSA": Ed25519PrivateKey.generate(),
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }
    out: dict[str, Any] = {}
    for alg, key in keys.items():
        public = key.public_key()
        claims = _claims()
        token = jwt.encode(claims, key, algorithm=alg, headers={"kid": "k"})
        sign = _rate(lambda k=key, a=alg, c=claims: jwt.encode(c, k, algorithm=a), seconds)
        verify = _rate(
            lambda p=public, a=alg, t=token: jwt.decode(
                t, p, algorithms=[a], audience="faultmaven-api", issuer="faultmaven"
            ),
            seconds,
        )
        out[alg] = {
            "sign_per_s": round(sign),
            "verify_per_s": round(verify),
            "token_bytes": len(token),
        }
    out["ratio_eddsa_over_rs256"] = {
        "sign": round(out["EdDSA"]["sign_per_s"] / out["RS256"]["sign_per_s"], 2),
        "verify": round(out["EdDSA"]["verify_per_s"] / out["RS256"]["verify_per_s"], 2),
    }
    return out


def bench_bcrypt(rounds_list: tuple[int, ...], checks: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    password = b"correct horse battery"
    for rounds in rounds_list:
        hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds))
        start = time.perf_counter()
        for _ in range(checks):
            assert bcrypt.checkpw(password, hashed)
        out[f"cost_{rounds}"] = {
            "ms_per_check": round((time.perf_counter() - start) * 1000 / checks, 1)
        }
    base = out["cost_12"]["ms_per_check"]
    for value in out.values():
        value["ratio_to_cost_12"] = round(value["ms_per_check"] / base, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--bcrypt-checks", type=int, default=5)
    args = parser.parse_args()
    algorithms = bench_algorithms(args.seconds)
    passwords = bench_bcrypt((10, 12, 13), args.bcrypt_checks)
    result = {
        "benchmark": "auth_tokens",
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or "?"},
        "jwt": algorithms,
        "bcrypt": passwords,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "auth_tokens.json").write_text(json.dumps(result, indent=2) + "\n")
    for alg in ("EdDSA", "RS256"):
        a = algorithms[alg]
        print(
            f"{alg:6} sign {a['sign_per_s']:>8}/s  verify {a['verify_per_s']:>8}/s  "
            f"token {a['token_bytes']} B"
        )
    r = algorithms["ratio_eddsa_over_rs256"]
    print(f"EdDSA/RS256 ratio: sign x{r['sign']}, verify x{r['verify']}")
    for name, value in passwords.items():
        print(f"bcrypt {name}: {value['ms_per_check']} ms per check (x{value['ratio_to_cost_12']})")


if __name__ == "__main__":
    main()
