"""Figures for ``GET /tasks/metrics``: counts by status and function, durations, flush health."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from taskflow.backends.base import BackendError
from taskflow.models import TaskRecord, TaskStatus
from taskflow.query import MAX_LIMIT, TaskQuery

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
    # The backend's counts include this instance's records once they are written: finished
    # ones when flushed, live ones too when live records are persisted (the cluster view).
    live_in_history = history_counted and scheduler.persist_live
    for record in manager.store:
        if record.status.finished:
            counted = history_counted and record.task_id not in manager.store.unflushed_ids
        else:
            counted = live_in_history
        if not counted:
            by_status[record.status.value] += 1
            by_func[record.func_name] += 1
    window = (await scheduler.aquery(TaskQuery(limit=WINDOW))).records
    codec = scheduler.backend.codec if scheduler.backend is not None else None
    durations, finished, failed = _window_figures(window)
    everything = [d for values in durations.values() for d in values]
    return {
        "instance_id": manager.instance_id,
        "by_status": dict(by_status),
        "by_func": {
            name: {
                **_duration_summary(durations.get(name, [])),
                # After the summary, whose own "count" is how many durations it covers.
                "count": count,
                "failed_recent": failed[name],
                "failure_rate": failed[name] / finished[name] if finished[name] else None,
            }
            for name, count in sorted(by_func.items())
        },
        "window": len(window),
        "duration": _duration_summary(everything),
        "persistence": {
            "backend": scheduler.backend.describe() if scheduler.backend else None,
            "ready": scheduler.ready,
            "unflushed": len(manager.store.unflushed_ids),
            "oldest_unflushed_age_seconds": scheduler.oldest_unflushed_age(),
            "dropped_unflushed": manager.store.dropped_unflushed,
            "flushed_total": scheduler.flushed_total,
            "flush_writes_total": scheduler.writes_total,
            "flush_failures": scheduler.flush_failures,
            "last_flush_seconds": scheduler.last_flush_seconds,
            "last_error": scheduler.last_error,
            # Records stored with values made safe, records that could not be stored at all
            # (kept in memory only), and stored records skipped at reading (undecodable).
            "made_safe": codec.made_safe if codec else 0,
            "quarantined": scheduler.quarantined,
            "unreadable": codec.unreadable if codec else 0,
            "unflushed_bytes": manager.store.unflushed_bytes,
            "memory_bytes": manager.store.finished_bytes,
        },
    }
