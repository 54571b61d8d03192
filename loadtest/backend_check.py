"""After a run, with the stack still up: every accepted task read back from the shared backend
itself (SqliteBackend / RedisBackend, the URL from the runner's state), not through an instance.

What Locust verified over HTTP is checked once more at the source: every id in the ledger is
stored and finished in a status its endpoint can produce, nothing is left pending or running,
and the stored counts by function match what was accepted (for the idempotency scenario: one
stored task per key). For that scenario also: exactly one execution per key in the instances'
logs, where the reference app writes a line each time once_task runs. For the schedules
scenario: as many executions of the demo schedule's task in the logs as runs stored.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from taskflow.backends import backend_from_url

#: Ids looked up at once.
BATCH = 200
#: Terminal statuses any task may end in, per scenario, besides those of its endpoint (a chaos
#: run loses instances on purpose: their unfinished tasks are marked interrupted by survivors).
TOLERATED = {"chaos": {"interrupted"}}
#: Line the reference app logs each time once_task runs (deploy/app.py).
ONCE_RAN = re.compile(r"once_task ran for key (\S+)")
#: Line the reference app logs each time the demo schedule's task runs.
TICK_RAN = re.compile(r"demo_tick ran")


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check(
    backend_url: str, ledger: list[dict[str, Any]], scenario: str, run_dir: Path
) -> tuple[dict[str, Any], list[str]]:
    """(figures, problems); no problems means the backend holds exactly what was accepted."""
    return asyncio.run(_check(backend_url, ledger, scenario, run_dir))


async def _check(
    backend_url: str, ledger: list[dict[str, Any]], scenario: str, run_dir: Path
) -> tuple[dict[str, Any], list[str]]:
    backend = backend_from_url(backend_url)
    await backend.open()
    try:
        records = []
        for start in range(0, len(ledger), BATCH):
            batch = ledger[start : start + BATCH]
            records += await asyncio.gather(*(backend.get(e["task_id"]) for e in batch))
        counts = await backend.counts()
    finally:
        await backend.close()

    problems, statuses = _judge(ledger, records, TOLERATED.get(scenario, set()))
    live = {s: n for s, n in counts.by_status.items() if s in ("pending", "running") and n}
    if live:
        problems.append(f"the backend still holds live records after the run: {live}")
    accepted = Counter(e["func"] for e in ledger)
    for func, n in sorted(accepted.items()):
        stored = counts.by_func.get(func, 0)
        # A chaos run may store more: tasks of requests that failed in flight on a killed instance
        # (the client never got their ids) are claimed and interrupted by the survivors.
        if stored < n or (stored > n and scenario != "chaos"):
            problems.append(f"{func}: {n} accepted, {stored} stored in the backend")

    figures: dict[str, Any] = {
        "checked": len(ledger),
        "stored_finished": sum(n for s, n in statuses.items() if s not in ("pending", "running")),
        "statuses": dict(statuses),
        "stored_by_func": dict(counts.by_func),
    }
    if scenario == "idempotency":
        problems += _once_per_key(ledger, run_dir, figures)
    if scenario == "schedules":
        problems += _one_execution_per_run(counts.by_func.get("demo_tick", 0), run_dir, figures)
    return figures, problems


def _judge(
    ledger: list[dict[str, Any]], records: list[Any], tolerated: set[str]
) -> tuple[list[str], Counter[str]]:
    statuses: Counter[str] = Counter()
    missing, unfinished, unexpected = [], [], []
    for entry, record in zip(ledger, records, strict=True):
        if record is None:
            missing.append(entry["task_id"])
            continue
        status = record.status.value
        statuses[status] += 1
        if not record.status.finished:
            unfinished.append(f"{entry['task_id']} ({status})")
        elif status not in entry["expected"] and status not in tolerated:
            unexpected.append(f"{entry['task_id']} ({entry['func']} {status})")
    problems = []
    if missing:
        problems.append(f"{len(missing)} accepted tasks are not in the backend, e.g. {missing[:3]}")
    if unfinished:
        problems.append(
            f"{len(unfinished)} accepted tasks are stored but not finished, e.g. {unfinished[:3]}"
        )
    if unexpected:
        problems.append(f"{len(unexpected)} tasks finished unexpectedly, e.g. {unexpected[:3]}")
    return problems, statuses


def _once_per_key(
    ledger: list[dict[str, Any]], run_dir: Path, figures: dict[str, Any]
) -> list[str]:
    # One stored task per key follows from the counts by function (once_task: one per key).
    keys = {e["key"] for e in ledger if e.get("key")}
    runs: Counter[str] = Counter()
    for log in run_dir.glob("app-*.log"):
        runs.update(ONCE_RAN.findall(log.read_text(errors="replace")))
    figures["keys"] = len(keys)
    figures["executions"] = sum(runs[k] for k in keys)
    problems = []
    wrong = sorted(k for k in keys if runs[k] != 1)
    if wrong:
        examples = ", ".join(f"{k}: {runs[k]}" for k in wrong[:3])
        problems.append(
            f"{len(wrong)} keys did not run exactly once (executions in the instances' logs: "
            f"{examples})"
        )
    return problems


def _one_execution_per_run(stored: int, run_dir: Path, figures: dict[str, Any]) -> list[str]:
    executions = sum(
        len(TICK_RAN.findall(log.read_text(errors="replace"))) for log in run_dir.glob("app-*.log")
    )
    figures["tick_runs"] = stored
    figures["tick_executions"] = executions
    if executions != stored:
        return [
            f"demo_tick: {stored} runs stored but {executions} executions in the instances' logs "
            "(one each expected)"
        ]
    return []
