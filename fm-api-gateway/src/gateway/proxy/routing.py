"""The route table: which service owns a public path (API.md), and which paths are public.

Decided on the path's segments (never a bare string prefix), so `/api/v1/authx` belongs to
no one and `/internal/...` is never routed.
"""

from __future__ import annotations

AUTH, SESSION, CASE, KNOWLEDGE, EVIDENCE, AGENT = (
    "auth",
    "session",
    "case",
    "knowledge",
    "evidence",
    "agent",
)
SERVICES = (AUTH, SESSION, CASE, KNOWLEDGE, EVIDENCE, AGENT)

_FIRST_SEGMENT = {
    "auth": AUTH,
    "sessions": SESSION,
    "knowledge": KNOWLEDGE,
    "evidence": EVIDENCE,
    "cases": CASE,
}
# /api/v1/cases/{id}/<sub>... owned by another service than the case service.
_CASE_SUBRESOURCES = {"turns": AGENT, "title": AGENT, "uploaded-files": EVIDENCE}

# (method, path) that need no token. POST /sessions takes a token when one is sent.
PUBLIC_ROUTES = frozenset(
    {
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/auth/dev-login"),
        ("GET", "/api/v1/auth/config"),
        ("HEAD", "/api/v1/auth/config"),
        ("GET", "/api/v1/auth/.well-known/jwks.json"),
        ("HEAD", "/api/v1/auth/.well-known/jwks.json"),
        ("POST", "/api/v1/sessions"),
    }
)

_API_PREFIX = "/api/v1/"


def route(path: str) -> str | None:
    """The service that owns `path`, or None when no service serves it publicly."""
    if not path.startswith(_API_PREFIX):
        return None
    rest = path[len(_API_PREFIX) :]
    first, _, tail = rest.partition("/")
    service = _FIRST_SEGMENT.get(first)
    if service is None:
        return None
    if service == CASE and tail:
        _case_id, _, sub = tail.partition("/")
        sub_first = sub.partition("/")[0]
        return _CASE_SUBRESOURCES.get(sub_first, CASE)
    return service


def is_public(method: str, path: str) -> bool:
    if path.endswith("/") and len(path) > 1:
        path = path.rstrip("/")
    return (method, path) in PUBLIC_ROUTES


KNOWLEDGE_UPLOAD = "/api/v1/knowledge/documents"
# Multipart framing and form fields around a file (as the knowledge service allows).
FORM_OVERHEAD_BYTES = 64 * 1024


def is_upload(method: str, path: str) -> bool:
    """Routes whose bodies carry files and get the larger size limit."""
    if method not in ("POST", "PUT"):
        return False
    if path in ("/api/v1/evidence", "/api/v1/knowledge/documents"):
        return True
    if path.startswith("/api/v1/cases/"):
        parts = path.split("/")
        # ['', 'api', 'v1', 'cases', '{id}', 'turns' | 'uploaded-files']
        return len(parts) == 6 and parts[5] in ("turns", "uploaded-files")
    return False


def has_dot_segment(path: str) -> bool:
    """A `.` or `..` segment: refused rather than passed on for another server to resolve."""
    return "/." in path and any(seg in (".", "..") for seg in path.split("/"))
