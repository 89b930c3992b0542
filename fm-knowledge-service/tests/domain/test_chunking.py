"""Chunking: size, overlap, Markdown heading context, logs on line boundaries."""

from __future__ import annotations

import itertools

from knowledge_service.domain.ingest.chunking import TokenBudget, Unit, chunk_units
from knowledge_service.domain.ingest.extract import Limits, extract_text, markdown_units


def test_chunks_respect_the_size_and_overlap() -> None:
    units = [Unit(f"sentence number {i} about disks.") for i in range(200)]
    chunks = chunk_units(units, words=50, overlap=10)
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk.text.split()) <= 50
    for prev, nxt in itertools.pairwise(chunks):
        # The next chunk starts with the tail of the previous one.
        assert nxt.text.split("\n\n")[0] in prev.text
    assert [c.index for c in chunks] == list(range(len(chunks)))
    joined = " ".join(c.text for c in chunks)
    assert all(f"number {i} " in joined for i in range(200))


def test_a_unit_longer_than_a_chunk_is_split_into_windows() -> None:
    words = [f"w{i}" for i in range(500)]
    chunks = chunk_units([Unit(" ".join(words))], words=100, overlap=20)
    assert len(chunks) >= 5
    assert all(len(c.text.split()) <= 100 for c in chunks)
    assert chunks[0].text.split()[-20:] == chunks[1].text.split()[:20]
    assert chunks[-1].text.split()[-1] == "w499"


def test_markdown_headings_are_kept_as_context() -> None:
    text = (
        "---\ntitle: Etcd No Leader\n---\n\n# etcdNoLeader\n\n## Meaning\n\nNo leader.\n\n"
        "## Mitigation\n\n```\n# not a heading inside code\n```\n\nRestart the member.\n"
    )
    title, units = markdown_units(text)
    assert title == "Etcd No Leader"
    contexts = {u.context for u in units}
    assert "Etcd No Leader > etcdNoLeader > Meaning" in contexts
    assert "Etcd No Leader > etcdNoLeader > Mitigation" in contexts
    assert any("# not a heading inside code" in u.text for u in units)
    chunks = chunk_units(units, words=200, overlap=20)
    assert chunks[0].text.startswith("Etcd No Leader > etcdNoLeader > Meaning")
    assert "Mitigation" in chunks[0].text


def test_logs_split_on_line_boundaries() -> None:
    log = "\n".join(f"2024-05-01T10:00:{i:02d}Z ERROR db timeout after {i} ms" for i in range(60))
    extracted = extract_text("log", log, Limits(), "app.log")
    chunks = chunk_units(extracted.units, words=40, overlap=8, joiner="\n")
    assert len(chunks) > 3
    for chunk in chunks:
        body = chunk.text.split("\n\n", 1)[-1]
        for line in body.splitlines():
            assert line.startswith("2024-05-01T10:00:")
            assert line.endswith(" ms")


def test_csv_rows_carry_the_header() -> None:
    extracted = extract_text("csv", "host,status\nweb-1,down\nweb-2,up\n", Limits(), "hosts")
    assert [u.text for u in extracted.units] == [
        "host: web-1; status: down",
        "host: web-2; status: up",
    ]
    assert "columns: host, status" in extracted.units[0].context


def _count(text: str) -> int:
    """A stand-in tokenizer: one token per word, three for a long word."""
    return sum(3 if len(w) > 12 else 1 for w in text.split())


def test_a_token_budget_keeps_every_chunk_within_the_models_input() -> None:
    budget = TokenBudget(_count, 40)
    # Words are few but tokens many: URLs and hashes cost three tokens each.
    units = [
        Unit(f"check https://grafana.example.com/d/{i:08x}abcdef and sha256:{i:016x}", "Ops > Disk")
        for i in range(30)
    ]
    plain = chunk_units(units, words=100, overlap=10)
    assert max(_count(c.text) for c in plain) > 40  # without a budget, chunks overflow
    chunks = chunk_units(units, words=100, overlap=10, tokens=budget)
    assert all(_count(c.text) <= 40 for c in chunks)
    # Nothing is lost: every unit is in some chunk.
    joined = "\n".join(c.text for c in chunks)
    assert all(u.text in joined for u in units)
    assert all(c.text.startswith("Ops > Disk") for c in chunks)


def test_a_long_unit_is_split_within_the_token_budget_context_included() -> None:
    budget = TokenBudget(_count, 30)
    text = " ".join(f"token{i}-averyveryverylongpiece" for i in range(40))
    chunks = chunk_units([Unit(text, "A > B")], words=500, overlap=4, tokens=budget)
    assert len(chunks) > 1
    assert all(_count(c.text) <= 30 for c in chunks)
    assert chunks[-1].text.endswith("token39-averyveryverylongpiece")


def test_the_real_tokenizer_budget_holds_on_a_real_runbook(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from knowledge_service.config import Settings
    from knowledge_service.domain.ingest.pipeline import chunks_for_file, token_budget
    from knowledge_service.domain.vectors.embedder import get_embedder

    settings = Settings()
    budget = token_budget(get_embedder(settings.embedding_model))
    assert budget is not None
    assert budget.limit == 254  # MiniLM reads 256 tokens, two of them [CLS] and [SEP]
    page = "\n\n".join(
        f"Run `kubectl -n monitoring logs deploy/prometheus-operator-{i:04d} --since=1h` and "
        f"compare https://prometheus.example.internal/api/v1/query?query=up%7Bjob%3D%22n{i}%22%7D"
        for i in range(60)
    )
    path = tmp_path / "runbook.md"
    path.write_text(f"# Operator down\n\n## Diagnosis\n\n{page}\n")
    chunks, _ = chunks_for_file(path, "markdown", settings, "Operator down", budget)
    embedder = get_embedder(settings.embedding_model)

    def length(text: str) -> int:  # with [CLS] and [SEP], as the model reads it
        return embedder.count_tokens(text) + embedder.special_tokens

    assert max(length(c.text) for c in chunks) <= 256
    unbudgeted, _ = chunks_for_file(path, "markdown", settings, "Operator down")
    assert max(length(c.text) for c in unbudgeted) > 256
