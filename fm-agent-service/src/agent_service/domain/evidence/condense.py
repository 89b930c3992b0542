"""Condensing logs before they reach the model (DESIGN.md "The agent").

Lines are grouped into templates with drain3 (counts, first/last time), errors and rare
lines are kept verbatim, and the first/last timestamps and bursts give a timeline; the
whole summary fits a token budget (~4 characters a token).
"""

from __future__ import annotations

import logging
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from agent_service.domain.privacy.detect import PEM_BLOCK_RE

# drain3 logs every miner it starts at INFO (one per log condensed): noise.
logging.getLogger("drain3").setLevel(logging.WARNING)

_TS = re.compile(
    r"(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|[A-Z][a-z]{2} {1,2}\d{1,2} \d{2}:\d{2}:\d{2}"
    r"|\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}(?: [+-]\d{4})?)"
)
_MINUTE = re.compile(r"(\d{2}):(\d{2})(?::\d{2})?")
_LEVEL = re.compile(
    r"\b(TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERROR|ERR|FATAL|CRITICAL|CRIT|PANIC|SEVERE)\b",
    re.IGNORECASE,
)
_ERRORISH = re.compile(
    r"\b(?:ERROR|ERR|FATAL|CRITICAL|CRIT|PANIC|SEVERE)\b|Exception\b|Traceback|"
    r"\bfailed\b|\brefused\b|\btimed? ?out\b|\bOOM\b|Killed",
    re.IGNORECASE,
)


@dataclass
class _Template:
    count: int = 0
    first: str | None = None
    last: str | None = None
    example: str = ""
    level: str | None = None


@dataclass
class CondensedLog:
    text: str
    total_lines: int
    templates: int
    error_lines: int
    first_ts: str | None = None
    last_ts: str | None = None
    bursts: list[str] = field(default_factory=list)


def looks_like_log(text: str) -> bool:
    """Several lines, most with a timestamp or a level."""
    lines = [ln for ln in text.splitlines()[:200] if ln.strip()]
    if len(lines) < 3:
        return False
    marked = sum(1 for ln in lines if _TS.search(ln) or _LEVEL.search(ln))
    return marked / len(lines) >= 0.5


def _miner() -> TemplateMiner:
    config = TemplateMinerConfig()
    config.profiling_enabled = False
    config.drain_sim_th = 0.5
    config.drain_depth = 4
    config.parametrize_numeric_tokens = True
    return TemplateMiner(config=config)


def _minute(ts: str) -> str | None:
    m = _MINUTE.search(ts[10:] if len(ts) > 10 else ts)
    return f"{ts[:10]} {m.group(1)}:{m.group(2)}" if m else None


def condense_log(text: str, token_budget: int = 1500) -> CondensedLog:
    """A summary of a log that fits `token_budget` tokens."""
    miner = _miner()
    templates: dict[int, _Template] = defaultdict(_Template)
    levels: Counter[str] = Counter()
    per_minute: Counter[str] = Counter()
    errors: list[tuple[int, str]] = []
    first_ts = last_ts = None
    total = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        total += 1
        ts_match = _TS.search(line)
        ts = ts_match.group("ts") if ts_match else None
        message = (line[: ts_match.start()] + line[ts_match.end() :]).strip() if ts_match else line
        level_match = _LEVEL.search(message)
        level = level_match.group(1).upper() if level_match else None
        if level:
            levels[level] += 1
        cluster = miner.add_log_message(message[:2000])["cluster_id"]
        tpl = templates[cluster]
        tpl.count += 1
        tpl.level = tpl.level or level
        if tpl.count == 1:
            tpl.example = line
        if ts:
            tpl.first = tpl.first or ts
            tpl.last = ts
            first_ts = first_ts or ts
            last_ts = ts
            minute = _minute(ts)
            if minute:
                per_minute[minute] += 1
        if _ERRORISH.search(message):
            errors.append((cluster, line))

    bursts: list[str] = []
    if len(per_minute) >= 3:
        median = statistics.median(per_minute.values())
        for minute, n in sorted(per_minute.items()):
            if n >= max(5, 3 * median):
                bursts.append(f"{minute}: {n} lines in one minute (usual {median:g}/min)")

    budget = token_budget * 4
    out: list[str] = []
    used = 0

    def add(line: str) -> bool:
        nonlocal used
        if used + len(line) + 1 > budget:
            return False
        out.append(line)
        used += len(line) + 1
        return True

    clusters = {c.cluster_id: c for c in miner.drain.clusters}
    add(
        f"Log summary: {total} lines, {len(templates)} templates"
        + (f", from {first_ts} to {last_ts}" if first_ts else "")
    )
    if levels:
        add("Levels: " + ", ".join(f"{k} {v}" for k, v in levels.most_common()))
    if first_ts or bursts:
        add("Timeline:")
        if first_ts:
            add(f"- {first_ts} first line")
        for burst in bursts[:10]:
            add(f"- burst at {burst}")
        if last_ts:
            add(f"- {last_ts} last line")
    # Errors verbatim: the first and the last of each error template.
    if errors:
        add("Errors (verbatim, first and last of each kind):")
        by_cluster: dict[int, list[str]] = defaultdict(list)
        for cid, line in errors:
            by_cluster[cid].append(line)
        for lines in by_cluster.values():
            picked = [lines[0]] if len(lines) == 1 else [lines[0], lines[-1]]
            for line in picked:
                add(f"- {line[:500]}")
            if len(lines) > 2:
                add(f"  (x{len(lines)} lines of this kind)")
    add("Templates (count, first..last, <*> = varying part):")
    ordered = sorted(templates.items(), key=lambda kv: -kv[1].count)
    for cid, tpl in ordered:
        if tpl.count == 1 and total > 20:
            continue
        cluster = clusters.get(cid)
        template = cluster.get_template() if cluster else tpl.example
        span = f" {tpl.first}..{tpl.last}" if tpl.first else ""
        if not add(f"- x{tpl.count}{span}: {template[:300]}"):
            break
    rare = [tpl.example for tpl in templates.values() if tpl.count == 1 and total > 20]
    if rare:
        add("Rare lines (verbatim):")
        for line in rare:
            if not add(f"- {line[:500]}"):
                break
    return CondensedLog(
        text="\n".join(out),
        total_lines=total,
        templates=len(templates),
        error_lines=len(errors),
        first_ts=first_ts,
        last_ts=last_ts,
        bursts=bursts,
    )


def condense_text(text: str, token_budget: int) -> str:
    """A log condensed, or any other text cut to the budget."""
    text = PEM_BLOCK_RE.sub(lambda m: " ".join(m.group(0).split()), text)
    if looks_like_log(text):
        return condense_log(text, token_budget).text
    limit = token_budget * 4
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} chars cut]"
