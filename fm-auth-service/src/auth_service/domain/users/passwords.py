"""bcrypt hashing off the event loop, and a dummy check so unknown users cost the same."""

from __future__ import annotations

import asyncio

import bcrypt

from fm_common.contracts.auth import PASSWORD_MAX_BYTES


class PasswordHasher:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        # Checked against when the user does not exist, so the answer takes as long as
        # a real check and timing does not tell whether an account exists.
        self._dummy = bcrypt.hashpw(b"not-a-real-password", bcrypt.gensalt(rounds))

    def _hash(self, password: str) -> str:
        raw = password.encode("utf-8")
        if len(raw) > PASSWORD_MAX_BYTES:  # the request model refuses these first (422)
            raise ValueError("password longer than 72 bytes")
        return bcrypt.hashpw(raw, bcrypt.gensalt(self.rounds)).decode("ascii")

    def _check(self, password: str, hashed: bytes) -> bool:
        raw = password.encode("utf-8")
        if len(raw) > PASSWORD_MAX_BYTES or "\x00" in password:
            # Never truncate: compare something of equal cost that cannot match.
            bcrypt.checkpw(b"x", self._dummy)
            return False
        return bcrypt.checkpw(raw, hashed)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hash, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        """True when `password` matches; a None hash costs a dummy check and is False."""
        if hashed is None:
            await asyncio.to_thread(self._check, password, self._dummy)
            return False
        return await asyncio.to_thread(self._check, password, hashed.encode("ascii"))
