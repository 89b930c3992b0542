"""Fixtures of the system tests that run on the session's `system_stack`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fm_common.devstack import Stack


@pytest.fixture(scope="module")
def gateway(system_stack: Stack) -> Iterator[httpx.Client]:
    """A client of the stack's gateway (a test module with a stack of its own overrides it)."""
    with httpx.Client(base_url=system_stack.gateway_url, timeout=120) as client:
        yield client


@pytest.fixture
def fake(system_stack: Stack) -> Iterator[Any]:
    """The stack's fake LLM provider, reset before and after the test."""
    fake = getattr(system_stack, "fake_llm", None)
    if fake is None:
        pytest.skip("fm_common.testing.fake_llm is not importable")
    fake.reset()
    yield fake
    fake.reset()
