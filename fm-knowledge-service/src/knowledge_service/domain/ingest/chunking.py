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

# The embedding model reads at most 256 word pieces; code, URLs and log lines have long
# "words", so a chunk's size counts characters too (about 6 per word of prose).
CHARS_PER_WORD = 6


def size_of(text: str) -> int:
    """A text's size in word-equivalents: its words, or its characters / 6 if larger."""
    return max(len(text.split()), len(text) // CHARS_PER_WORD)


@dataclass(frozen=True, slots=True)
class Unit:
    text: str
    context: str = ""

    @property
    def words(self) -> int:
        return size_of(self.text)


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    context: str


def _split_long(unit: Unit, words: int, overlap: int) -> list[Unit]:
    """Word windows of at most `words` word-equivalents, sharing `overlap` words."""
    if unit.words <= words:
        return [unit]
    tokens = unit.text.split()
    out = []
    start = 0
    while start < len(tokens):
        end, chars = start, 0
        while end < len(tokens):
            chars += len(tokens[end]) + 1
            if max(end + 1 - start, chars // CHARS_PER_WORD) > words and end > start:
                break
            end += 1
        out.append(Unit(" ".join(tokens[start:end]), unit.context))
        if end >= len(tokens):
            break
        start = max(start + 1, end - min(overlap, (end - start) // 2))
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
