"""A floor under retrieval quality: our own questions over both runbook corpora.

Both corpora of ../shared/data/runbooks (prometheus-operator and OpenShift, which cover
the same ground) go into one user's knowledge base through the real worker; the questions
of tests/eval/retrieval_questions.json (symptoms and log lines, each with its gold
runbooks) are searched the way the agent searches (its mode, its number of passages).
The floors sit a little below what bench/retrieval.py measured (ADR 0115), so a change
that costs the right runbook its first place fails here. Skipped where the corpora are
absent (they are read from ../shared/data, never copied into the repository).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fm_common.devstack import Stack
from fm_common.testing.shared import SHARED
from fm_common.testing.tokens import TokenIssuer

CORPORA = SHARED / "data" / "runbooks"
QUESTIONS = Path(__file__).resolve().parents[1] / "eval" / "retrieval_questions.json"
USER = "retrieval-eval-0000-0000-000000000001"
# The first test indexes ~1,200 chunks through one worker child (about a minute and a
# half on a quiet 2-CPU machine; far longer on a busy one): beyond the suite's 300 s.
pytestmark = pytest.mark.timeout(1800)

# Measured by bench/retrieval.py on these questions (all 125): the agent's path (hybrid,
# 5 passages, runbooks fused: ADR 0165) recall@1 0.848, MRR 0.901, recall@5 0.984
# (offline and over HTTP alike). A margin of three to four questions below.
FLOOR_RECALL_AT_1 = 0.82
FLOOR_MRR = 0.88
FLOOR_RECALL_AT_5 = 0.95


def _corpus() -> list[Path]:
    return sorted(p for p in CORPORA.rglob("*.md") if p.name != "SOURCE.md")


@pytest.fixture(scope="module")
def both_corpora(kstack: Stack, token_issuer: TokenIssuer) -> dict[str, str]:
    """Document id -> runbook path (relative to the corpora), all processed."""
    if not (CORPORA / "prometheus-operator").is_dir() or not (CORPORA / "openshift").is_dir():
        pytest.skip(f"the runbook corpora are not at {CORPORA} (../shared/data of the repo)")
    headers = token_issuer.headers(USER, ttl=7200)
    paths: dict[str, str] = {}
    with httpx.Client(base_url=kstack.url("knowledge"), timeout=60) as client:
        deadline = time.monotonic() + 1700
        for path in _corpus():
            while True:
                resp = client.post(
                    "/api/v1/knowledge/documents",
                    headers=headers,
                    data={"title": path.stem, "document_type": "runbook", "scope": "personal"},
                    files={"file": (path.name, path.read_bytes(), "text/markdown")},
                )
                # A user may have only so many documents waiting (429 TOO_MANY_PENDING):
                # upload the rest as the worker gets through them, as a client would.
                if resp.status_code != 429 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert resp.status_code == 202, resp.text
            paths[resp.json()["document_id"]] = str(path.relative_to(CORPORA))
        while _count(client, headers, "processing") and time.monotonic() < deadline:
            time.sleep(1)
        assert _count(client, headers, "processed") == len(paths)
    return paths


def _count(client: httpx.Client, headers: dict[str, str], status: str) -> int:
    resp = client.get(
        "/api/v1/knowledge/documents",
        headers=headers,
        params={"scope": "personal", "status": status, "limit": 1},
    )
    assert resp.status_code == 200, resp.text
    return int(resp.json()["total_count"])


def _agent_search() -> tuple[str, int]:
    """The agent's retrieval mode and number of passages (its own defaults)."""
    from agent_service.config import Settings as AgentSettings

    settings = AgentSettings()
    return settings.retrieval_mode, settings.retrieval_limit


def _measure(
    kstack: Stack, headers: dict[str, str], paths: dict[str, str], mode: str, limit: int
) -> dict[str, Any]:
    questions = json.loads(QUESTIONS.read_text())
    r1 = r5 = rr = 0.0
    not_first = []
    with httpx.Client(base_url=kstack.url("knowledge"), timeout=60) as client:
        for q in questions:
            resp = client.post(
                "/api/v1/knowledge/search",
                headers=headers,
                # Only this user's copy of the corpora: other tests of the suite put
                # global documents into the same stack, which would rank among them.
                json={
                    "query": q["question"],
                    "limit": limit,
                    "mode": mode,
                    "scopes": ["personal"],
                },
            )
            assert resp.status_code == 200, resp.text
            ranking: list[str] = []
            for r in resp.json()["results"]:
                if paths[r["document_id"]] not in ranking:
                    ranking.append(paths[r["document_id"]])
            pos = next((i for i, d in enumerate(ranking) if d in q["gold"]), None)
            if pos is not None:
                r1 += pos == 0
                r5 += pos < 5
                rr += 1 / (pos + 1)
            if pos != 0:
                not_first.append((q["id"], q["question"][:60], ranking[:2]))
    n = len(questions)
    return {"r1": r1 / n, "r5": r5 / n, "mrr": rr / n, "n": n, "not_first": not_first}


def test_the_agents_retrieval_puts_the_right_runbook_first(
    kstack: Stack, token_issuer: TokenIssuer, both_corpora: dict[str, str]
) -> None:
    mode, passages = _agent_search()
    headers = token_issuer.headers(USER, ttl=3600)
    got = _measure(kstack, headers, both_corpora, mode, passages)
    assert got["n"] >= 80
    summary = {k: round(v, 3) for k, v in got.items() if k in ("r1", "r5", "mrr")}
    assert got["r1"] >= FLOOR_RECALL_AT_1, (summary, got["not_first"])
    assert got["mrr"] >= FLOOR_MRR, (summary, got["not_first"])
    assert got["r5"] >= FLOOR_RECALL_AT_5, (summary, got["not_first"])


def test_the_agents_mode_ranks_better_than_semantic_search(
    kstack: Stack, token_issuer: TokenIssuer, both_corpora: dict[str, str]
) -> None:
    mode, passages = _agent_search()
    assert mode == "hybrid"
    headers = token_issuer.headers(USER, ttl=3600)
    hybrid = _measure(kstack, headers, both_corpora, "hybrid", passages)
    semantic = _measure(kstack, headers, both_corpora, "semantic", passages)
    # Measured: MRR 0.90 vs 0.81, recall@1 0.85 vs 0.73 (ADR 0165).
    assert hybrid["mrr"] > semantic["mrr"] + 0.03, (hybrid["mrr"], semantic["mrr"])
    assert hybrid["r1"] > semantic["r1"], (hybrid["r1"], semantic["r1"])


def test_the_no_provider_answer_and_its_citations_lead_with_the_right_runbook(
    kstack: Stack, token_issuer: TokenIssuer, both_corpora: dict[str, str]
) -> None:
    """The agent's own retrieval call, then its no-provider answer and citations: they
    follow the search order, so the runbook that hybrid ranking puts first (where
    semantic search alone put a look-alike first) is listed and cited first."""
    import asyncio
    from types import SimpleNamespace

    from agent_service.config import Settings as AgentSettings
    from agent_service.domain.turns.context import _search
    from agent_service.domain.turns.flows import degraded_answer
    from agent_service.domain.turns.state import cited
    from fm_common.clients.base import create_http_client
    from fm_common.clients.knowledge import KnowledgeClient
    from fm_common.context import bearer_token_var

    questions = {q["id"]: q for q in json.loads(QUESTIONS.read_text())}
    token = token_issuer.token(USER, ttl=3600)

    async def passages(query: str) -> list[Any]:
        bearer_token_var.set(token)
        http = create_http_client()
        try:
            rt = SimpleNamespace(
                settings=AgentSettings(), knowledge=KnowledgeClient(kstack.url("knowledge"), http)
            )
            found, ok = await _search(rt, "case-of-the-eval", query)  # type: ignore[arg-type]
        finally:
            await http.aclose()
        assert ok
        return found

    # "raft: lost leader" (etcdNoLeader) and "Too many pods" (KubeletTooManyPods):
    # semantic search put a look-alike runbook first for both. "x509: certificate has
    # expired" on the kubelet's port (KubeletServerCertificateExpiration) and remote_write's
    # "Failed to send batch" (PrometheusRemoteStorageFailures): fusing passages put a
    # look-alike first, fusing runbooks does not (ADR 0165).
    for qid in (3, 21, 24, 63):
        q = questions[qid]
        found = asyncio.run(passages(q["question"]))
        assert both_corpora[found[0].document_id] in q["gold"], [p.title for p in found]
        prep = SimpleNamespace(passages=found, retrieval_ok=True, evidence=[])
        answer = degraded_answer(prep, ())  # type: ignore[arg-type]
        first_listed = answer.split("**Best matching runbook passages**", 1)[1]
        assert first_listed.lstrip().startswith(f"1. **{found[0].title}**"), answer
        citations = cited(None, answer, found)
        assert citations[0].document_id == found[0].document_id
        assert [c.document_id for c in citations] == [p.document_id for p in found]
