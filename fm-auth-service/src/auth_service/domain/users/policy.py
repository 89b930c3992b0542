"""Password policy at registration (issue 16, item 10): a length floor (the request model
checks 8+ characters and at most 72 bytes) and a strength check against the common and
breached passwords that zxcvbn ships offline (its 30,000 most common passwords, English
words, names, keyboard patterns, dates and sequences), with the username and email as
words an attacker would try first. `password`, `Password1`, `admin123`, `qwertyuiop` and
the like are refused with 422 WEAK_PASSWORD and a reason.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

from fm_common.errors import Unprocessable

# zxcvbn reads at most this much (it is superlinear in the length); the rest is random
# enough for any policy.
_CHECKED_CHARS = 100


def check_password_strength(
    password: str, *, min_length: int, min_score: int, user_inputs: list[str]
) -> None:
    """422 WEAK_PASSWORD for a password under `min_length` characters, one in the common
    or breached password lists, or one zxcvbn scores under `min_score` (0-4)."""
    if len(password) < min_length:
        raise Unprocessable(
            f"The password must be at least {min_length} characters.", code="WEAK_PASSWORD"
        )
    result = zxcvbn(password[:_CHECKED_CHARS], user_inputs=[u for u in user_inputs if u])
    sequence = result.get("sequence") or []
    if (
        len(sequence) == 1
        and sequence[0].get("dictionary_name") == "passwords"
        and len(str(sequence[0].get("token", ""))) == len(password)
    ):
        raise Unprocessable(
            "That password is one of the most common passwords; choose another.",
            code="WEAK_PASSWORD",
        )
    if int(result["score"]) < min_score:
        feedback = result.get("feedback") or {}
        hint = feedback.get("warning") or "Use a longer phrase of unrelated words."
        raise Unprocessable(f"The password is too easy to guess: {hint}", code="WEAK_PASSWORD")
