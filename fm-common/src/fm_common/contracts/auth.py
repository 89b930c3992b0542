"""Wire models of the auth service (API.md "Auth"; shapes of the reference OpenAPI).

Public request bodies, the token/user/logout/config answers, and the internal
service-token exchange the worker uses (DESIGN.md "Identity").
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

PASSWORD_MIN_CHARS = 8
# bcrypt reads at most 72 bytes; longer passwords are refused, never truncated.
PASSWORD_MAX_BYTES = 72
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def check_password(value: str) -> str:
    """Password rules of API.md: 8+ characters and at most 72 bytes in UTF-8."""
    if len(value) < PASSWORD_MIN_CHARS:
        raise ValueError(f"password must be at least {PASSWORD_MIN_CHARS} characters")
    if len(value.encode("utf-8")) > PASSWORD_MAX_BYTES:
        raise ValueError(f"password must be at most {PASSWORD_MAX_BYTES} bytes in UTF-8")
    if "\x00" in value:
        raise ValueError("password must not contain NUL characters")
    return value


def check_email(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    value = value.strip()
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("email is not a valid address")
    return value


Password = Annotated[str, AfterValidator(check_password)]
Email = Annotated[str | None, AfterValidator(check_email)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RegisterRequest(BaseModel):
    username: str = Field(min_length=3, max_length=50, pattern=USERNAME_PATTERN)
    password: Password = Field(description="8+ characters, at most 72 bytes in UTF-8")
    email: Email = Field(default=None, max_length=254)
    display_name: str | None = Field(default=None, max_length=100)


class LoginRequest(BaseModel):
    # Unknown fields are ignored: the real extension's login body is the reference's.
    username: str = Field(min_length=1, max_length=254, description="Username or email")
    password: str = Field(min_length=1, max_length=1024)

    @model_validator(mode="before")
    @classmethod
    def _email_as_username(cls, data: Any) -> Any:
        # Some clients send {email, password}; the email is then the login name.
        if isinstance(data, dict) and not data.get("username") and data.get("email"):
            return {**data, "username": data["email"]}
        return data


class DevLoginRequest(BaseModel):
    username: str = Field(min_length=3, max_length=50, description="Username or email address")
    email: Email = None
    display_name: str | None = Field(default=None, max_length=100)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class UserProfile(BaseModel):
    user_id: str
    username: str
    email: str
    display_name: str
    created_at: str
    is_dev_user: bool = False
    roles: list[str] = Field(default_factory=lambda: ["user"])


class UserInfoResponse(UserProfile):
    last_login: str | None = None


class AuthTokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str | None = None
    refresh_expires_in: int | None = None
    session_id: str
    user: UserProfile
    idp_logout_url: str | None = None


class TokenRefreshResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class LogoutResponse(BaseModel):
    message: str = "Logged out successfully"
    revoked_tokens: int
    all_sessions_ended: bool = False


class AuthConfigResponse(BaseModel):
    auth_mode: str = "local"
    supports_registration: bool
    login_endpoint: str | None = "/api/v1/auth/login"
    register_endpoint: str | None = "/api/v1/auth/register"
    oauth: None = None


class ServiceTokenRequest(_Strict):
    client_id: str = Field(min_length=1, max_length=100)
    client_secret: str = Field(min_length=1, max_length=1024)
    on_behalf_of: str | None = Field(default=None, min_length=1, max_length=100)
    ttl_seconds: int = Field(default=300, ge=1, le=300)


class ServiceTokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
