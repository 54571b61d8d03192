"""What task control costs a task: progress() in a tight loop, task_log() lines, the context.

Each case runs one async task (in memory, the manager started) whose body makes the calls, and
times the task from start to finish, against the same loop without the calls. Rounds are
interleaved so drifts of the host hit every case alike. Run:
``.venv/bin/python -m bench.task_control``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from taskflow import TaskManager, task_context, task_log

ROUNDS = 15
#: progress() calls in the tight loop (the issue's figure).
PROGRESS_CALLS = 1_000
#: task_log() lines of the logging case (the issue's figure).
LOG_LINES = 100


def plain(n: int) -> None:
    for _ in range(n):
        pass


def with_progress(n: int) -> None:
    context = task_context()
    for step in range(n):
        context.progress(step / n, "crunching")


def with_progress_lookup(n: int) -> None:
    for step in range(n):
        task_context().progress(step / n, "crunching")


def with_logs(n: int) -> None:
    for step in range(n):
        task_log("processed a batch", step=step)


CASES: dict[str, tuple[Callable[[int], None], int]] = {
    "empty loop of 1,000": (plain, PROGRESS_CALLS),
    "1,000 x context.progress()": (with_progress, PROGRESS_CALLS),
    "1,000 x task_context().progress()": (with_progress_lookup, PROGRESS_CALLS),
    "100 x task_log() with a field": (with_logs, LOG_LINES),
}


async def one_round(manager: TaskManager, body: Callable[[int], None], n: int) -> float:
    done = asyncio.Event()
    took: list[float] = []

    async def task() -> None:
        started = time.perf_counter()
        body(n)
        took.append(time.perf_counter() - started)
        done.set()

    manager.submit(task)
    await done.wait()
    return took[0]


async def main() -> dict[str, Any]:
    manager = TaskManager(max_records=100)
    updates = 0

    def count(kind: Any, record: Any) -> None:
        nonlocal updates
        updates += kind.value == "updated"

    manager.subscribe(count)
    await manager.start()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    try:
        for _ in range(ROUNDS):
            for name, (body, n) in CASES.items():
                times[name].append(await one_round(manager, body, n))
    finally:
        await manager.stop()
    print(f"task control, {ROUNDS} interleaved rounds, one in-memory async task each:")
    for name, values in times.items():
        median = statistics.median(values)
        calls = CASES[name][1]
        print(
            f"  {name:<36} median {median * 1e3:7.3f} ms"
            f"  ({median / calls * 1e6:5.2f} us a call), best {min(values) * 1e3:.3f} ms"
        )
    rounds_with_calls = ROUNDS * (len(CASES) - 1)
    print(f"  UPDATED events published: {updates} for {rounds_with_calls} tasks that reported")
    return {name: statistics.median(values) for name, values in times.items()}


if __name__ == "__main__":
    asyncio.run(main())
