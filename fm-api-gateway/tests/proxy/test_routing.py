"""The route table (API.md names the owner of every public path)."""

from __future__ import annotations

import pytest

from gateway.proxy.routing import has_dot_segment, is_public, is_upload, route


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/auth/login", "auth"),
        ("/api/v1/auth/.well-known/jwks.json", "auth"),
        ("/api/v1/sessions", "session"),
        ("/api/v1/sessions/s1/heartbeat", "session"),
        ("/api/v1/cases", "case"),
        ("/api/v1/cases/c1", "case"),
        ("/api/v1/cases/c1/messages", "case"),
        ("/api/v1/cases/c1/ui", "case"),
        ("/api/v1/cases/c1/reports/r1", "case"),
        ("/api/v1/cases/c1/turns", "agent"),
        ("/api/v1/cases/c1/turns/jobs/j1", "agent"),
        ("/api/v1/cases/c1/title", "agent"),
        ("/api/v1/cases/c1/uploaded-files", "evidence"),
        ("/api/v1/cases/c1/uploaded-files/f1", "evidence"),
        ("/api/v1/evidence", "evidence"),
        ("/api/v1/evidence/e1/content", "evidence"),
        ("/api/v1/knowledge/documents", "knowledge"),
        ("/api/v1/knowledge/search", "knowledge"),
        ("/api/v1/knowledge/collections", "knowledge"),
        ("/api/v1/knowledge/collections/global/reindex", "knowledge"),
    ],
)
def test_public_path_goes_to_its_owner(path: str, service: str) -> None:
    assert route(path) == service


@pytest.mark.parametrize(
    "path",
    [
        "/internal/v1/users",
        "/api/v1/authx/login",
        "/api/v1/internal/users",
        "/api/v2/cases",
        "/health",
        "/",
        "/api/v1/",
    ],
)
def test_paths_no_service_serves_publicly_have_no_route(path: str) -> None:
    assert route(path) is None


def test_only_listed_auth_routes_are_public() -> None:
    assert is_public("POST", "/api/v1/auth/login")
    assert is_public("GET", "/api/v1/auth/.well-known/jwks.json")
    assert is_public("POST", "/api/v1/sessions")
    assert not is_public("GET", "/api/v1/sessions")
    assert not is_public("GET", "/api/v1/auth/me")
    assert not is_public("GET", "/api/v1/auth/login")


def test_upload_routes_are_the_file_carrying_ones() -> None:
    assert is_upload("POST", "/api/v1/evidence")
    assert is_upload("POST", "/api/v1/knowledge/documents")
    assert is_upload("POST", "/api/v1/cases/c1/turns")
    assert not is_upload("POST", "/api/v1/cases")
    assert not is_upload("GET", "/api/v1/evidence")


def test_dot_segments_are_detected() -> None:
    assert has_dot_segment("/api/v1/auth/../../internal/v1/x")
    assert has_dot_segment("/api/v1/./auth")
    assert not has_dot_segment("/api/v1/auth/.well-known/jwks.json")
