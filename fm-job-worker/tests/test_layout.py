"""The worker is the host: its modules import no circle, and of the services only the
modules written for the worker (their task modules and `worker.py`), never internals."""

from __future__ import annotations

import ast
from pathlib import Path

import job_worker

SRC = Path(job_worker.__file__).parent
SERVICES = ("knowledge_service", "case_service", "agent_service", "evidence_service")


def _imports(*, joined_only: bool = False) -> dict[str, set[str]]:
    """Module -> what it imports (`from a import b` as a and a.b; only a.b if joined_only)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.glob("*.py"):
        module = f"job_worker.{path.stem}" if path.stem != "__init__" else "job_worker"
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if not joined_only:
                    names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        graph[module] = names
    return graph


def test_the_worker_modules_import_no_circle() -> None:
    graph = _imports()
    inner = {
        m: {n for n in names if n in graph and n != "job_worker"} for m, names in graph.items()
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        assert module not in visiting, " -> ".join([*visiting, module])
        if module in done:
            return
        visiting.append(module)
        for target in inner[module]:
            visit(target)
        visiting.pop()
        done.add(module)

    assert "job_worker.app" in graph
    for module in graph:
        visit(module)


def test_the_worker_imports_only_the_services_task_and_worker_modules() -> None:
    reached = {
        name
        for names in _imports(joined_only=True).values()
        for name in names
        if name.split(".")[0] in SERVICES
    }
    assert reached  # it does host them
    for name in reached:
        parts = name.split(".")
        assert "tasks" in parts or "worker" in parts, name
