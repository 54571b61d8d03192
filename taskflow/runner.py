"""Running accepted tasks: each in an asyncio task of its own that the shutdown drain tracks,
its attempts with backoff, its status transitions and errors; sync functions in a pool of
daemon threads of the runner's own, never on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import queue
import threading
import traceback as tb
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, Future
from typing import Any

from taskflow.context import (
    Notify,
    context_of,
    current_attempt,
    current_task,
    forget,
    known_context,
)
from taskflow.events import EventBus, EventKind
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.tasks import RetryPolicy, TaskDefinition, is_async_callable

logger = logging.getLogger("taskflow.runner")

#: Longest traceback text kept on a record.
MAX_TRACEBACK_CHARS = 16_000
#: Longest error message kept on a record.
MAX_ERROR_CHARS = 2_000


async def _call_in_thread(
    record: TaskRecord,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    threads: Executor,
) -> None:
    # Sync functions run in the task thread pool, never on the event loop. The pool is the
    # manager's own, so sleeping tasks cannot starve the threads FastAPI uses for sync routes.
    context = contextvars.copy_context()
    context.run(current_attempt.set, record.attempts)
    future = threads.submit(functools.partial(context.run, func, *args, **kwargs))
    try:
        result = await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        control = known_context(record)
        if control is not None and control.cancel_requested and not future.cancelled():
            # A thread cannot be stopped: it sees task_context().cancelled, and the task is
            # recorded cancelled once it returns (a function not yet started never starts).
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(future)
        raise
    if inspect.isawaitable(result):
        await result


async def _attempt_with_timeout(
    record: TaskRecord,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    threads: Executor,
    is_async: bool,
    timeout: float,
) -> None:
    # The attempt runs in a task of its own, so that its deadline is told apart from a
    # TimeoutError the function raises itself (asyncio.timeout, which can tell, is 3.11+).
    attempt = record.attempts
    call = (
        func(*args, **kwargs) if is_async else _call_in_thread(record, func, args, kwargs, threads)
    )
    inner: asyncio.Future[Any] = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({inner}, timeout=timeout)
    except asyncio.CancelledError:
        inner.cancel()  # cancelled or shut down: the attempt goes with it
        await asyncio.wait({inner})
        raise
    if done:
        inner.result()  # the attempt's own outcome (its exception, if any)
        return
    # An async attempt is cancelled at the deadline; a sync one's thread cannot be, so it is
    # asked to stop (task_context().cancelled) and the attempt fails now.
    context_of(record).expired_attempts.add(attempt)
    inner.cancel()
    await asyncio.wait({inner})
    raise AttemptTimedOut(attempt, timeout)


class AttemptTimedOut(TimeoutError):
    """An attempt ran longer than its task's ``timeout``: it fails (and may be retried)."""

    def __init__(self, attempt: int, timeout: float) -> None:
        super().__init__(f"attempt {attempt} ran longer than its timeout of {timeout:g} s")
        self.attempt = attempt
        self.timeout = timeout


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
    timeout: float | None = None,
    notify: Notify | None = None,
) -> None:
    """Run ``func`` under ``policy``, keeping ``record`` current and publishing each transition.

    Exceptions from the task never escape. A record no longer pending (cancelled before it
    started) is not run. ``timeout``: seconds each attempt may take. A cancellation asked for
    (:meth:`Runner.cancel`) ends it ``cancelled``; any other (shutdown) marks the record
    ``interrupted`` and is then re-raised so the canceller sees it. ``notify`` announces the
    task's log lines and progress (``task_context()``; see :mod:`taskflow.context`).
    """
    if record.status is not TaskStatus.PENDING:
        return  # cancelled before it could start
    is_async = is_async_callable(func) if is_async is None else is_async
    token = current_task.set((record, notify or _announce_now(bus)))
    record.status = TaskStatus.RUNNING
    record.start_time = utcnow()
    bus.publish(EventKind.STARTED, record)
    try:
        for attempt in range(policy.retries + 1):
            record.attempts += 1
            try:
                # Async functions are awaited here rather than through a helper: one coroutine
                # frame less per task, which shows on endpoints that queue small async tasks.
                if timeout is not None:
                    await _attempt_with_timeout(
                        record, func, args, kwargs, threads, is_async, timeout
                    )
                elif is_async:
                    await func(*args, **kwargs)
                else:
                    await _call_in_thread(record, func, args, kwargs, threads)
            except (Exception, SystemExit) as exc:  # a task calling sys.exit() must not stop us
                if _failed(record, exc, attempt == policy.retries, bus):
                    return
                await asyncio.sleep(policy.wait_before(attempt))
            else:
                _succeeded(record, bus)
                return
    except asyncio.CancelledError:
        if _cancel_requested(record):
            _cancelled(record, bus)
            return  # the cancellation asked for ends here: the task is over, not its canceller
        record.error = "interrupted: the instance shut down before the task finished"
        _finish(record, TaskStatus.INTERRUPTED, bus)
        raise
    finally:
        forget(record)
        current_task.reset(token)


def _failed(record: TaskRecord, exc: BaseException, last: bool, bus: EventBus) -> bool:
    """An attempt raised: True when the task is over (cancelled, or failed for good)."""
    if _cancel_requested(record):
        _cancelled(record, bus)
        return True
    record.error = _describe(exc)
    record.traceback = tb.format_exc()[-MAX_TRACEBACK_CHARS:]
    if last:
        _finish(record, TaskStatus.FAILED, bus)
        logger.warning("task %s (%s) failed: %s", record.task_id, record.func_name, record.error)
        return True
    bus.publish(EventKind.RETRYING, record)
    return False


def _succeeded(record: TaskRecord, bus: EventBus) -> None:
    if _cancel_requested(record):  # it returned after all (or swallowed the cancellation)
        _cancelled(record, bus)
        return
    record.error = None
    record.traceback = None
    _finish(record, TaskStatus.SUCCESS, bus)


def _announce_now(bus: EventBus) -> Notify:
    """Announce changes at once, on the calling thread (execute() without a runner)."""

    def notify(record: TaskRecord, delay: float, done: Callable[[], None]) -> None:
        done()
        if not record.status.finished:
            bus.publish(EventKind.UPDATED, record)

    return notify


def _cancel_requested(record: TaskRecord) -> bool:
    control = known_context(record)
    return control is not None and control.cancel_requested


def _cancelled(record: TaskRecord, bus: EventBus) -> None:
    record.error = "cancelled: asked to stop while it ran"
    record.traceback = None
    _finish(record, TaskStatus.CANCELLED, bus)


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


class Runner:
    """Runs accepted tasks of one manager.

    Each task runs in an asyncio task of its own, tracked in :attr:`running` for the shutdown
    drain; at most ``max_concurrency`` at once when set (the rest wait, pending, for a slot).
    Sync functions run in the runner's own pool of ``max_workers`` daemon threads, so sleeping
    tasks cannot starve the threads FastAPI uses for sync routes.
    """

    def __init__(
        self, bus: EventBus, *, max_workers: int = 32, max_concurrency: int | None = None
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1 (or None for no limit)")
        self.bus = bus
        self.max_workers = max_workers
        self.max_concurrency = max_concurrency
        #: Every task started and not yet ended, with its record.
        self.running: dict[asyncio.Future[None], TaskRecord] = {}
        #: The slots of ``max_concurrency`` (``None`` without a limit).
        self.slots: asyncio.Semaphore | None = None
        #: Tasks start in tasks of their own only while open (not before start, not draining).
        self.open = False
        self._threads = DaemonThreadPool(max_workers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._announce: Notify = self.announce  # one bound method, not one per task

    def start(self) -> None:
        """Open for work (on the manager's event loop)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self._threads.closed:
            self._threads = DaemonThreadPool(self.max_workers)
        if self.max_concurrency is not None:
            self.slots = asyncio.Semaphore(self.max_concurrency)
        self.open = True

    def close(self) -> None:
        """After the drain: let the threads go (a task still running in one is abandoned)."""
        self.open = False
        self._threads.shutdown(wait=False, cancel_futures=True)

    def spawn(
        self,
        record: TaskRecord,
        definition: TaskDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Run a pending record in the background, tracked for the shutdown drain."""
        # Without slots the task runs execute() itself, one coroutine instead of two: a task
        # cancelled before its first step (the drain) never ran and stays pending, which is
        # all that run() checks for.
        coro = (
            self._execute(record, definition, args, kwargs)
            if self.slots is None
            else self.run(record, definition, args, kwargs)
        )
        # The loop's own method: asyncio.create_task only adds a Python-level call around it.
        self.track(asyncio.get_running_loop().create_task(coro), record)

    def track(self, task: asyncio.Future[None], record: TaskRecord) -> None:
        """Track ``task`` (running ``record``) for the drain until it ends."""
        self.running[task] = record
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Future[None]) -> None:
        self.running.pop(task, None)

    async def run(
        self,
        record: TaskRecord,
        definition: TaskDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Run a pending record here and now (in the caller's task), within a slot if any."""
        if record.status is not TaskStatus.PENDING:
            return  # interrupted by shutdown before it could start
        try:
            if self.slots is None:
                await self._execute(record, definition, args, kwargs)
                return
            async with self.slots:  # pending until one of max_concurrency slots is free
                if record.status is TaskStatus.PENDING and self.open:
                    await self._execute(record, definition, args, kwargs)
        except asyncio.CancelledError:
            if self.open:
                raise

    def _execute(
        self,
        record: TaskRecord,
        definition: TaskDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Coroutine[Any, Any, None]:
        # Returns execute()'s coroutine instead of awaiting it: no frame of its own per task.
        return execute(
            record,
            definition.func,
            args,
            kwargs,
            policy=definition.policy,
            bus=self.bus,
            threads=self._threads,
            is_async=definition.is_async,
            timeout=definition.timeout,
            notify=self._announce,
        )

    def announce(self, record: TaskRecord, delay: float, done: Callable[[], None]) -> None:
        """Publish ``record``'s new log lines or progress (``UPDATED``) after ``delay``
        seconds, on the event loop; callable from any thread (see :mod:`taskflow.context`)."""
        loop = self._loop
        if loop is None:
            done()
            return

        def publish() -> None:
            done()
            if not record.status.finished:  # the FINISHED event carries the last of it
                self.bus.publish(EventKind.UPDATED, record)

        try:
            if threading.get_ident() != self._loop_thread:
                loop.call_soon_threadsafe(loop.call_later, delay, publish)
            elif delay <= 0:
                publish()
            else:
                loop.call_later(delay, publish)
        except RuntimeError:  # the loop is closed: nobody listens any more
            done()

    def cancel(self, record: TaskRecord) -> None:
        """Stop a live task of this runner: a pending one is finished ``cancelled`` now and never
        starts; a running async one is cancelled (asyncio); a running sync one is asked to stop
        (``task_context().cancelled``) and finished ``cancelled`` when its thread returns."""
        if record.status.finished:
            return
        context_of(record).cancel_requested = True
        if record.status is TaskStatus.PENDING:
            record.error = "cancelled before it started"
            forget(record)
            _finish(record, TaskStatus.CANCELLED, self.bus)
            return
        for task, running in self.running.items():
            if running is record:
                task.cancel()
                return


class DaemonThreadPool(Executor):
    """A small pool of daemon threads for sync task functions.

    The standard ``ThreadPoolExecutor`` joins its threads at interpreter exit, so one sync task
    that ignores shutdown would hold the process well past ``shutdown_timeout``. Tasks still
    running when the drain ends are recorded as interrupted; their threads must not keep the
    process alive.
    """

    def __init__(self, max_workers: int, name: str = "taskflow") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._shutdown = False

    @property
    def closed(self) -> bool:
        return self._shutdown

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
            self._queue.put((future, lambda: fn(*args, **kwargs)))
            if self._idle == 0 and len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1 if self._idle else 0
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()
