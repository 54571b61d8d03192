"""Run one task: attempts, backoff, status transitions and error capture."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import traceback as tb
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from taskflow.events import EventBus, EventKind
from taskflow.models import TaskRecord, TaskStatus, utcnow

logger = logging.getLogger("taskflow.executor")

#: Longest traceback text kept on a record.
MAX_TRACEBACK_CHARS = 16_000
#: Longest error message kept on a record.
MAX_ERROR_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` extra attempts after the first; attempt n+1 waits ``delay * backoff**n``."""

    retries: int = 0
    delay: float = 0.0
    backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.delay < 0 or self.backoff < 1.0:
            raise ValueError("retries and delay must be >= 0 and backoff >= 1.0")

    def wait_before(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (0 for the first retry)."""
        return float(self.delay * self.backoff**retry_number)


def is_async_callable(func: Callable[..., Any]) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


async def _call_in_thread(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    threads: Executor,
) -> None:
    # Sync functions run in the task thread pool, never on the event loop. The pool is the
    # manager's own, so sleeping tasks cannot starve the threads FastAPI uses for sync routes.
    context = contextvars.copy_context()
    call = functools.partial(context.run, func, *args, **kwargs)
    result = await asyncio.get_running_loop().run_in_executor(threads, call)
    if inspect.isawaitable(result):
        await result


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


async def execute(
    record: TaskRecord,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    policy: RetryPolicy,
    bus: EventBus,
    threads: Executor,
    is_async: bool | None = None,
) -> None:
    """Run ``func`` under ``policy``, keeping ``record`` current and publishing each transition.

    Exceptions from the task never escape. Cancellation (shutdown) marks the record
    ``interrupted`` and is then re-raised so the canceller sees it.
    """
    if is_async is None:
        is_async = is_async_callable(func)
    record.status = TaskStatus.RUNNING
    record.start_time = utcnow()
    bus.publish(EventKind.STARTED, record)
    try:
        for attempt in range(policy.retries + 1):
            record.attempts += 1
            try:
                # Async functions are awaited here rather than through a helper: one coroutine
                # frame less per task, which shows on endpoints that queue small async tasks.
                if is_async:
                    await func(*args, **kwargs)
                else:
                    await _call_in_thread(func, args, kwargs, threads)
            except (Exception, SystemExit) as exc:  # a task calling sys.exit() must not stop us
                record.error = _describe(exc)
                record.traceback = tb.format_exc()[-MAX_TRACEBACK_CHARS:]
                if attempt == policy.retries:
                    _finish(record, TaskStatus.FAILED, bus)
                    logger.warning(
                        "task %s (%s) failed: %s", record.task_id, record.func_name, record.error
                    )
                    return
                bus.publish(EventKind.RETRYING, record)
                await asyncio.sleep(policy.wait_before(attempt))
            else:
                record.error = None
                record.traceback = None
                _finish(record, TaskStatus.SUCCESS, bus)
                return
    except asyncio.CancelledError:
        record.error = "interrupted: the instance shut down before the task finished"
        _finish(record, TaskStatus.INTERRUPTED, bus)
        raise


def _finish(record: TaskRecord, status: TaskStatus, bus: EventBus) -> None:
    record.status = status
    record.end_time = utcnow()
    bus.publish(EventKind.FINISHED, record)


def interrupt_unstarted(
    record: TaskRecord,
    bus: EventBus,
    why: str = "interrupted: the instance shut down before the task started",
) -> None:
    """Mark a task that never started as interrupted (by default: the instance stopped first)."""
    record.error = why
    _finish(record, TaskStatus.INTERRUPTED, bus)
