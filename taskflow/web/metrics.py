"""Figures for ``GET /tasks/metrics``: counts by status and function, durations, flush health."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from taskflow.models import TaskRecord, TaskStatus
from taskflow.query import MAX_LIMIT

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

#: Newest records (of every instance) that durations and failure rates are computed over.
WINDOW = MAX_LIMIT


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values (``None`` when empty)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def _duration_summary(durations: list[float]) -> dict[str, float | int | None]:
    durations.sort()
    return {
        "count": len(durations),
        "p50": percentile(durations, 0.50),
        "p95": percentile(durations, 0.95),
        "p99": percentile(durations, 0.99),
        "max": durations[-1] if durations else None,
    }


def _window_figures(
    records: list[TaskRecord],
) -> tuple[dict[str, list[float]], Counter[str], Counter[str]]:
    """Durations, finished counts and failed counts by function name."""
    durations: dict[str, list[float]] = defaultdict(list)
    finished: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for record in records:
        if record.duration is not None:
            durations[record.func_name].append(record.duration)
        if record.status.finished:
            finished[record.func_name] += 1
        if record.status is TaskStatus.FAILED:
            failed[record.func_name] += 1
    return durations, finished, failed


async def collect(manager: TaskManager) -> dict[str, Any]:
    """Counts cover all stored history plus this instance's live and unflushed records.

    Durations and failure rates cover the recent window: the newest :data:`WINDOW` records of
    every instance (this instance's memory merged with the backend's history), so each instance
    reports the same cluster-wide figures.
    """
    counts = await manager.counts()
    window = await manager.aquery(limit=WINDOW)
    durations, finished, failed = _window_figures(window)
    everything = [d for values in durations.values() for d in values]
    return {
        "instance_id": manager.instance_id,
        "by_status": counts.by_status,
        "by_func": {
            name: {
                **_duration_summary(durations.get(name, [])),
                # After the summary, whose own "count" is how many durations it covers.
                "count": count,
                "failed_recent": failed[name],
                "failure_rate": failed[name] / finished[name] if finished[name] else None,
            }
            for name, count in sorted(counts.by_func.items())
        },
        "window": len(window),
        "duration": _duration_summary(everything),
        "persistence": manager.persistence_stats(),
    }
