"""Figures for ``GET /tasks/metrics``: counts by status and function, durations, flush health."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from taskflow.backends.base import BackendError

if TYPE_CHECKING:
    from taskflow.manager import TaskManager


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


async def collect(manager: TaskManager) -> dict[str, Any]:
    """Counts cover all stored history plus this instance's live and unflushed records;
    durations cover the finished records held in memory (the recent window)."""
    scheduler = manager._scheduler
    by_status: Counter[str] = Counter()
    by_func: Counter[str] = Counter()
    history_counted = False
    if scheduler.backend is not None and scheduler.ready:
        try:
            counts = await scheduler.backend.counts()
        except (BackendError, OSError):
            pass
        else:
            by_status.update(counts.by_status)
            by_func.update(counts.by_func)
            history_counted = True
    durations: dict[str, list[float]] = defaultdict(list)
    for record in manager.store:
        in_history = history_counted and record.status.finished
        unflushed = record.task_id in manager.store.unflushed_ids
        if not in_history or unflushed:
            by_status[record.status.value] += 1
            by_func[record.func_name] += 1
        if record.duration is not None:
            durations[record.func_name].append(record.duration)
    everything = [d for values in durations.values() for d in values]
    return {
        "instance_id": manager.instance_id,
        "by_status": dict(by_status),
        "by_func": {
            name: {"count": count, **_duration_summary(durations.get(name, []))}
            for name, count in sorted(by_func.items())
        },
        "duration": _duration_summary(everything),
        "persistence": {
            "backend": scheduler.backend.describe() if scheduler.backend else None,
            "ready": scheduler.ready,
            "unflushed": len(manager.store.unflushed_ids),
            "oldest_unflushed_age_seconds": scheduler.oldest_unflushed_age(),
            "dropped_unflushed": manager.store.dropped_unflushed,
            "flushed_total": scheduler.flushed_total,
            "flush_failures": scheduler.flush_failures,
            "last_flush_seconds": scheduler.last_flush_seconds,
        },
    }
