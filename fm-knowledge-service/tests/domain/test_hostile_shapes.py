"""Adversarial shapes (issue 16, item 1): each ends as a clear ExtractionError within the
parse limits, never a parse whose memory grows with the square of its input.

The attack that found it: a 1.2 MB CSV of 100,000 columns took a worker child to
18.9 GB (the header was repeated as context in each of ~100,000 one-word chunks).
"""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from fm_common.limits import MiB
from knowledge_service.config import Settings
from knowledge_service.domain.ingest.chunking import TokenBudget, Unit, chunk_units
from knowledge_service.domain.ingest.extract import ExtractionError, Limits, extract_text
from knowledge_service.domain.ingest.pipeline import chunks_for_file


def _wide_csv(columns: int) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    return (header + "\n").encode()


HOSTILE = {
    # name: (file name, bytes, words in the reason)
    "wide_csv": ("wide.csv", _wide_csv(100_000), "columns"),
    "wide_csv_with_rows": (
        "rows.csv",
        _wide_csv(5_000) + b"\n".join(b"1," * 4999 + b"1" for _ in range(3)),
        "columns",
    ),
    "huge_cell": ("cell.csv", b"a,b\n" + b'"' + b"x" * 3_000_000 + b'",1\n', "cell"),
    "deep_json": ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "deep_json_objects": (
        "deep2.json",
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        "nested too deeply",
    ),
    "deep_yaml_flow": ("deep.yaml", b"a: " + b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    "deep_yaml_block": (
        "deep2.yaml",
        "\n".join("  " * i + "- " for i in range(1000)).encode() + b"x\n",
        "nested too deeply",
    ),
}


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=tmp_path, parse_memory_mb=512, parse_seconds=60, **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_fails_with_its_reason_within_bounds(tmp_path: Path, case: str) -> None:
    name, data, reason = HOSTILE[case]
    path = tmp_path / name
    path.write_bytes(data)
    kind = {"csv": "csv", "json": "json", "yaml": "yaml"}[name.rsplit(".", 1)[1]]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ExtractionError) as err:
        chunks_for_file(path, kind, _settings(tmp_path), name, _budget())
    assert reason in str(err.value).lower()
    # The parse ran in a bounded child: this process did not grow by its work.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000


def _count(text: str) -> int:
    """A stand-in tokenizer, additive over words as TokenBudget requires."""
    return sum(1 + len(w) // 8 for w in text.split())


def _budget() -> TokenBudget:
    return TokenBudget(_count, 254)


def test_a_wide_header_under_the_column_limit_is_cut_as_context(tmp_path: Path) -> None:
    # 900 columns pass the column limit; each chunk repeats a bounded context only.
    header = ",".join(f"column_{i}" for i in range(900))
    rows = "\n".join(",".join(str(r) for _ in range(900)) for r in range(20))
    extracted = extract_text("csv", f"{header}\n{rows}\n", Limits(), "wide")
    assert all(len(u.context) <= Limits().max_context_chars for u in extracted.units)
    chunks = chunk_units(extracted.units, words=180, overlap=30, tokens=_budget())
    assert chunks
    assert max(len(c.text) for c in chunks) < 180 * 6 + 2 * Limits().max_context_chars


def test_a_context_that_fills_the_token_budget_is_cut_not_repeated_per_word() -> None:
    # Before: a context over the budget left no room, so every word became a chunk
    # carrying the whole context (memory grew with context x words).
    context = " ".join(f"h{i}" for i in range(5000))
    unit = Unit(" ".join(f"w{i}" for i in range(2000)), context)
    chunks = chunk_units([unit], words=180, overlap=30, tokens=_budget())
    assert len(chunks) < 100
    assert all(_count(c.text) <= 254 for c in chunks)


def test_a_megabyte_word_is_cut_into_chunk_sized_pieces() -> None:
    unit = Unit("x" * MiB)
    chunks = chunk_units([unit], words=180, overlap=30)
    assert max(len(c.text) for c in chunks) <= 180 * 6
    assert sum(len(c.text) for c in chunks) >= MiB


def test_too_many_chunks_stop_early_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "many.log"
    path.write_text("\n".join(f"line {i} " + "word " * 200 for i in range(500)))
    with pytest.raises(ExtractionError, match="more than 50 chunks"):
        chunks_for_file(path, "log", _settings(tmp_path, max_chunks_per_document=50), "many")
