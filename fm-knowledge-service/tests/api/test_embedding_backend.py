"""The default embedding backend keeps torch out of the real processes: after start-up,
the ingestion of the runbooks and a search, neither the knowledge service nor any
process of the worker (its main process and its children) has torch loaded."""

from __future__ import annotations

from pathlib import Path

import httpx

from fm_common.devstack import Stack
from fm_common.testing.tokens import TokenIssuer


def _session_pids(session: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(") ", 1)[1].split()[3]) == session:
            pids.append(int(entry.name))
    return pids


def _loads_torch(pid: int) -> bool:
    """Importing torch (`"torch" in sys.modules`) maps its shared library, libtorch_cpu."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return "libtorch" in maps or "/torch/lib/" in maps


def _python_pids(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if (
                "python" in Path(f"/proc/{pid}/cmdline").read_text()
                or "celery" in Path(f"/proc/{pid}/cmdline").read_text()
            ):
                out.append(pid)
        except OSError:
            continue
    return out


def test_no_process_loads_torch_after_ingesting_and_searching(
    kstack: Stack, token_issuer: TokenIssuer, runbooks: dict[str, str]
) -> None:
    assert runbooks  # the corpus went through the worker: ingestion ran
    with httpx.Client(base_url=kstack.url("knowledge"), timeout=30) as client:
        resp = client.post(
            "/api/v1/knowledge/search",
            headers=token_issuer.headers("reader-onnx"),
            json={"query": "etcd has no leader", "limit": 3, "mode": "hybrid"},
        )
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"]

    checked = {}
    for name in ("knowledge", "worker"):
        pids = _python_pids(_session_pids(kstack.procs[name].pid))
        assert pids, name
        checked[name] = pids
        assert not [p for p in pids if _loads_torch(p)], f"{name} loaded torch"
    assert len(checked["worker"]) >= 2  # the main process and its child(ren)
    logs: Path = kstack.root / "logs"  # type: ignore[attr-defined]
    for name in ("knowledge", "worker"):
        text = (logs / f"{name}.log").read_text(errors="replace")
        assert "embedder.loaded" in text, name
        assert '"backend": "onnx"' in text, name
