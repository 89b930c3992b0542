"""run_bounded: a parse that goes past its memory or time fails with a reason, and the
calling process neither grows nor dies."""

from __future__ import annotations

import resource

import pytest

from fm_common.limits import MiB, ParseLimitExceeded, ParseLimits, run_bounded


def _grow(mb: int) -> int:
    blocks = [bytearray(MiB) for _ in range(mb)]
    return len(blocks)


def _sleep_forever() -> None:
    while True:
        pass


def _recurse(n: int) -> int:
    return _recurse(n + 1) + 1


def _bad_input() -> None:
    raise ValueError("the file is not valid")


def test_a_result_comes_back_from_the_child() -> None:
    assert run_bounded(_grow, 10, limits=ParseLimits(memory_bytes=200 * MiB)) == 10


def test_memory_over_the_limit_fails_the_parse_not_the_caller() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ParseLimitExceeded, match="more than 100 MB of memory"):
        run_bounded(_grow, 2000, limits=ParseLimits(memory_bytes=100 * MiB))
    # The caller's own peak did not take the 2 GB.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000


def test_time_over_the_limit_kills_the_parse() -> None:
    with pytest.raises(ParseLimitExceeded, match=r"longer than its limit of 0\.5 s"):
        run_bounded(_sleep_forever, limits=ParseLimits(seconds=0.5))


def test_unbounded_recursion_is_a_depth_failure() -> None:
    with pytest.raises(ParseLimitExceeded, match="nested too deeply"):
        run_bounded(_recurse, 0, limits=ParseLimits())


def test_the_parsers_own_error_is_raised_as_is() -> None:
    with pytest.raises(ValueError, match="not valid"):
        run_bounded(_bad_input, limits=ParseLimits())
