"""Chunking with overlap over units that carry their context.

A unit is a paragraph (Markdown, HTML, text), a line (logs, JSON, YAML) or a row (CSV),
with the context it belongs to (the Markdown heading path, the CSV header). Units are
packed into chunks of at most `words` words; the next chunk repeats the trailing units
of the previous one up to `overlap` words; a unit longer than a chunk is split into
word windows. Each chunk starts with its context, so a passage found by search still
says which runbook section it comes from.

Given the embedding model's tokenizer (`TokenBudget`), a chunk also stays within the
model's input length, context included: text past it would be cut off by the model
and never reach the vector (a runbook's command at the end of a long paragraph would be
invisible to semantic search).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fm_common.limits import ParseLimitExceeded

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


@dataclass(frozen=True, slots=True)
class TokenBudget:
    """The model's tokens per input (special tokens excluded) and how to count them.

    `count` must be additive over whitespace-separated words (true of WordPiece and
    other tokenizers that split on whitespace first), so pieces are counted once.
    """

    count: Callable[[str], int]
    limit: int


def _split_long(
    unit: Unit, words: int, overlap: int, tokens: TokenBudget | None = None
) -> list[Unit]:
    """Word windows of at most `words` word-equivalents (and within the token budget,
    context included), sharing `overlap` words."""
    room = tokens.limit - tokens.count(unit.context) if tokens else 0
    if unit.words <= words and (tokens is None or tokens.count(unit.text) <= room):
        return [unit]
    # A "word" longer than a whole chunk (a base64 blob, a minified line) is cut into
    # chunk-sized pieces, so no chunk carries megabytes the model never reads.
    longest = words * CHARS_PER_WORD
    pieces = [
        part
        for word in unit.text.split()
        for part in (
            [word]
            if len(word) <= longest
            else [word[i : i + longest] for i in range(0, len(word), longest)]
        )
    ]
    costs = [tokens.count(p) for p in pieces] if tokens else []
    out = []
    start = 0
    while start < len(pieces):
        end, chars, used = start, 0, 0
        while end < len(pieces):
            chars += len(pieces[end]) + 1
            over = max(end + 1 - start, chars // CHARS_PER_WORD) > words
            if tokens is not None:
                used += costs[end]
                over = over or used > room
            if over and end > start:
                break
            end += 1
        out.append(Unit(" ".join(pieces[start:end]), unit.context))
        if end >= len(pieces):
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


def _token_cost(units: list[Unit], tokens: TokenBudget, cost: dict[int, int]) -> int:
    """Tokens of the rendered chunk of `units`: context, texts, section names."""
    total = tokens.count(units[0].context)
    current = units[0].context
    for unit in units:
        if unit.context != current:
            total += tokens.count(unit.context.rsplit(" > ", 1)[-1])
            current = unit.context
        total += cost[id(unit)]
    return total


def _fit_context(context: str, tokens: TokenBudget | None, fitted: dict[str, str]) -> str:
    """The context cut to at most a third of the token budget, so text always has room
    (a context that filled the budget made one chunk per word)."""
    if tokens is None or not context:
        return context
    if context not in fitted:
        cut = context
        while cut and tokens.count(cut) > tokens.limit // 3:
            cut = cut[: len(cut) * 2 // 3].rstrip()
        fitted[context] = cut
    return fitted[context]


def chunk_units(
    units: Iterable[Unit],
    *,
    words: int,
    overlap: int,
    joiner: str = "\n\n",
    tokens: TokenBudget | None = None,
    max_chunks: int | None = None,
) -> list[Chunk]:
    """Pack units into overlapping chunks of at most `words` words (plus context) and,
    given a token budget, of at most `tokens.limit` tokens with their context.

    Over `max_chunks` raises ParseLimitExceeded as soon as that is certain."""
    overlap = min(overlap, words // 2)
    flat: list[Unit] = []
    fitted: dict[str, str] = {}
    for unit in units:
        if unit.text.strip():
            context = _fit_context(unit.context, tokens, fitted)
            if context != unit.context:
                unit = Unit(unit.text, context)
            flat.extend(_split_long(unit, words, overlap, tokens))
            if max_chunks is not None and len(flat) > max_chunks * (words + 1):
                _too_many(max_chunks)
    cost = {id(u): tokens.count(u.text) for u in flat} if tokens else {}

    def over(candidate: list[Unit], size: int) -> bool:
        if size > words:
            return True
        return tokens is not None and _token_cost(candidate, tokens, cost) > tokens.limit

    chunks: list[Chunk] = []
    current: list[Unit] = []
    size = 0
    fresh = 0  # units in `current` not already emitted in the previous chunk
    for unit in flat:
        if current and over([*current, unit], size + unit.words):
            text, context = _render(current, joiner)
            chunks.append(Chunk(len(chunks), text, context))
            if max_chunks is not None and len(chunks) > max_chunks:
                _too_many(max_chunks)
            # Carry trailing units (up to `overlap` words) into the next chunk, as many
            # as leave room for this unit.
            carried: list[Unit] = []
            carried_size = 0
            for prev in reversed(current):
                if carried_size + prev.words > overlap:
                    break
                carried.insert(0, prev)
                carried_size += prev.words
            while carried and over([*carried, unit], carried_size + unit.words):
                carried_size -= carried.pop(0).words
            current, size, fresh = carried, carried_size, 0
        current.append(unit)
        size += unit.words
        fresh += 1
    if current and fresh:
        text, context = _render(current, joiner)
        chunks.append(Chunk(len(chunks), text, context))
    return chunks


def _too_many(max_chunks: int) -> None:
    raise ParseLimitExceeded(
        f"The document makes more than {max_chunks} chunks; the limit is {max_chunks}."
    )
