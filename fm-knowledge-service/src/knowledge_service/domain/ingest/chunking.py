"""Chunking with overlap over units that carry their context.

A unit is a paragraph (Markdown, HTML, text), a line (logs, JSON, YAML) or a row (CSV),
with the context it belongs to (the Markdown heading path, the CSV header). Units are
packed into chunks of at most `words` words; the next chunk repeats the trailing units
of the previous one up to `overlap` words; a unit longer than a chunk is split into
word windows. Each chunk starts with its context, so a passage found by search still
says which runbook section it comes from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Unit:
    text: str
    context: str = ""

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    context: str


def _split_long(unit: Unit, words: int, overlap: int) -> list[Unit]:
    tokens = unit.text.split()
    if len(tokens) <= words:
        return [unit]
    step = max(1, words - overlap)
    out = []
    for start in range(0, len(tokens), step):
        out.append(Unit(" ".join(tokens[start : start + words]), unit.context))
        if start + words >= len(tokens):
            break
    return out


def _render(units: list[Unit], joiner: str) -> tuple[str, str]:
    context = units[0].context
    parts: list[str] = []
    current = context
    for unit in units:
        if unit.context != current:
            # A new section inside the chunk: name it where it starts.
            leaf = unit.context.rsplit(" > ", 1)[-1]
            if leaf:
                parts.append(leaf)
            current = unit.context
        parts.append(unit.text)
    body = joiner.join(parts)
    text = f"{context}\n\n{body}" if context else body
    return text, context


def chunk_units(
    units: Iterable[Unit], *, words: int, overlap: int, joiner: str = "\n\n"
) -> list[Chunk]:
    """Pack units into overlapping chunks of at most `words` words (plus context)."""
    overlap = min(overlap, words // 2)
    flat: list[Unit] = []
    for unit in units:
        if unit.text.strip():
            flat.extend(_split_long(unit, words, overlap))
    chunks: list[Chunk] = []
    current: list[Unit] = []
    size = 0
    fresh = 0  # units in `current` not already emitted in the previous chunk
    for unit in flat:
        if current and size + unit.words > words:
            text, context = _render(current, joiner)
            chunks.append(Chunk(len(chunks), text, context))
            # Carry trailing units (up to `overlap` words) into the next chunk.
            carried: list[Unit] = []
            carried_size = 0
            for prev in reversed(current):
                if carried_size + prev.words > overlap:
                    break
                carried.insert(0, prev)
                carried_size += prev.words
            current, size, fresh = carried, carried_size, 0
        current.append(unit)
        size += unit.words
        fresh += 1
    if current and fresh:
        text, context = _render(current, joiner)
        chunks.append(Chunk(len(chunks), text, context))
    return chunks
