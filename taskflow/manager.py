"""TaskManager: configuration, the ``@task`` decorator, submitting, start and stop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from fastapi import BackgroundTasks

from taskflow.backends.base import SnapshotBackend
from taskflow.backends.registry import backend_from_url, load_backend_class
from taskflow.events import EventBus, EventKind
from taskflow.executor import RetryPolicy, execute, interrupt_unstarted
from taskflow.injection import ManagedBackgroundTasks, bind
from taskflow.models import TaskRecord, TaskStatus, new_task_id, safe_arguments
from taskflow.snapshot import SnapshotScheduler
from taskflow.store import CallSpec, TaskStore
from taskflow.threads import DaemonThreadPool

logger = logging.getLogger("taskflow")

F = TypeVar("F", bound=Callable[..., Any])
Runner = Callable[[], Coroutine[Any, Any, None]]


class RetryRefused(Exception):
    """A task cannot be run again; the message says why (the API answers 409)."""


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    name: str
    func: Callable[..., Any]
    policy: RetryPolicy


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _adhoc_name(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "unknown"
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{qualname}"


class TaskManager:
    """Tracks background tasks: ids, status, retries, timings, errors; optionally persisted.

    In memory when neither ``snapshot_db`` (a SQLite file path) nor ``snapshot_backend`` (a
    :class:`~taskflow.backends.SnapshotBackend` or a backend URL) is given.
    """

    def __init__(
        self,
        snapshot_db: str | os.PathLike[str] | None = None,
        snapshot_backend: SnapshotBackend | str | None = None,
        snapshot_interval: float = 30.0,
        *,
        max_records: int = 10_000,
        max_unflushed: int = 100_000,
        shutdown_timeout: float = 20.0,
        instance_id: str | None = None,
        display_func_args: bool = False,
        max_workers: int = 32,
        retention_days: float | None = None,
        max_history: int | None = None,
        restore_limit: int = 1000,
    ) -> None:
        if snapshot_db is not None and snapshot_backend is not None:
            raise ValueError("give snapshot_db or snapshot_backend, not both")
        backend: SnapshotBackend | None
        if isinstance(snapshot_backend, str):
            backend = backend_from_url(snapshot_backend)
        elif snapshot_db is not None:
            backend = load_backend_class("SqliteBackend")(snapshot_db)
        else:
            backend = snapshot_backend
        self.store = TaskStore(max_records=max_records, max_unflushed=max_unflushed)
        self.bus = EventBus()
        self._scheduler = SnapshotScheduler(
            self.store,
            self.bus,
            backend,
            interval=snapshot_interval,
            restore_limit=restore_limit,
            retention_days=retention_days,
            max_history=max_history,
        )
        self.shutdown_timeout = shutdown_timeout
        self.display_func_args = display_func_args
        self.max_workers = max_workers
        self._instance_id = instance_id
        self._by_name: dict[str, TaskDefinition] = {}
        self._by_func: dict[Callable[..., Any], TaskDefinition] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._threads = DaemonThreadPool(max_workers)
        self._started = False
        self.draining = False
        self.bus.subscribe(self._on_event)

    @property
    def instance_id(self) -> str:
        """Stored on every record: explicit, or ``host-pid`` of the current process."""
        return self._instance_id or default_instance_id()

    @property
    def ready(self) -> bool:
        """Accepting work and the backend (if any) reachable: what ``/readyz`` reports."""
        return self._started and not self.draining and self._scheduler.ready

    # -- registration ----------------------------------------------------------------------

    @overload
    def task(self, func: F, /) -> F: ...
    @overload
    def task(
        self,
        /,
        *,
        retries: int = 0,
        delay: float = 0.0,
        backoff: float = 1.0,
        name: str | None = None,
    ) -> Callable[[F], F]: ...

    def task(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        retries: int = 0,
        delay: float = 0.0,
        backoff: float = 1.0,
        name: str | None = None,
    ) -> Any:
        """Register a sync or async function as a tracked task with a retry policy.

        The task name (default: the function's ``__name__``) is the stable key in records,
        lookups and retries; two functions under one name raise ``ValueError``. The function is
        returned unchanged, so it can still be called directly.
        """
        policy = RetryPolicy(retries, delay, backoff)

        def register(fn: F) -> F:
            task_name = name or getattr(fn, "__name__", None) or _adhoc_name(fn)
            known = self._by_name.get(task_name)
            if known is not None and known.func is not fn:
                raise ValueError(
                    f"task name {task_name!r} is already registered for {_adhoc_name(known.func)}; "
                    f"pass name= to register {_adhoc_name(fn)} under another name"
                )
            definition = TaskDefinition(task_name, fn, policy)
            self._by_name[task_name] = definition
            self._by_func[fn] = definition
            return fn

        return register(func) if func is not None else register

    def definition(self, name: str) -> TaskDefinition | None:
        return self._by_name.get(name)

    # -- submitting ------------------------------------------------------------------------

    def get_tasks(self, background_tasks: BackgroundTasks) -> ManagedBackgroundTasks:
        """FastAPI dependency: ``tasks = Depends(task_manager.get_tasks)``; ``add_task`` -> id."""
        return bind(self, background_tasks)

    def enqueue(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        retry_of: str | None = None,
    ) -> tuple[TaskRecord, Runner]:
        """Create a pending record; the returned runner starts the task when awaited.

        Functions that were never registered are tracked too, under ``module.qualname`` and
        without retries. Nothing here blocks or does I/O.
        """
        definition = self._by_func.get(func) or TaskDefinition(
            _adhoc_name(func), func, RetryPolicy()
        )
        record = TaskRecord(
            task_id=new_task_id(),
            func_name=definition.name,
            instance_id=self.instance_id,
            retry_of=retry_of,
        )
        if self.display_func_args:
            record.args, record.kwargs = safe_arguments(args, kwargs)
        self.store.add(record, CallSpec(func, args, kwargs))
        self.bus.publish(EventKind.CREATED, record)

        async def runner() -> None:
            if self._started and not self.draining:
                task = asyncio.create_task(self._run(record, definition, args, kwargs))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            else:
                await self._run(record, definition, args, kwargs)

        return record, runner

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> str:
        """Start a task now, outside any request (the manager must be started)."""
        if not self._started:
            raise RuntimeError("submit() needs a started manager (inside the app's lifespan)")
        record, runner = self.enqueue(func, args, kwargs)
        asyncio.get_running_loop().create_task(runner())
        return record.task_id

    async def _run(
        self,
        record: TaskRecord,
        definition: TaskDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        if record.status is not TaskStatus.PENDING:
            return  # interrupted by shutdown before it could start
        try:
            await execute(
                record,
                definition.func,
                args,
                kwargs,
                policy=definition.policy,
                bus=self.bus,
                threads=self._threads,
            )
        except asyncio.CancelledError:
            if not self.draining:
                raise

    def _on_event(self, event: Any) -> None:
        if event.kind is EventKind.FINISHED:
            self.store.finish(event.record)

    async def retry(self, task_id: str) -> TaskRecord:
        """Run a failed or interrupted task again as a new task with its original arguments."""
        record = await self._scheduler.aget(task_id)
        if record is None:
            raise KeyError(task_id)
        if record.status not in (TaskStatus.FAILED, TaskStatus.INTERRUPTED):
            raise RetryRefused(
                f"task {task_id} is {record.status.value}; only failed or interrupted tasks can "
                "be retried"
            )
        call = self.store.call_of(task_id)
        definition = self._by_name.get(record.func_name)
        if call is None and definition is not None and record.args is not None:
            call = CallSpec(definition.func, tuple(record.args), dict(record.kwargs or {}))
        if call is None:
            raise RetryRefused(
                f"the arguments of task {task_id} are no longer known (it left this instance's "
                "memory and arguments are stored only with display_func_args=True), or its "
                f"function {record.func_name!r} is not registered here"
            )
        new_record, runner = self.enqueue(call.func, call.args, call.kwargs, retry_of=task_id)
        await runner()
        return new_record

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start persistence (restore, flush loops). Called by TaskAdmin's lifespan hook."""
        if self._started:
            return
        self.draining = False
        if self._threads_closed:
            self._threads = DaemonThreadPool(self.max_workers)
        await self._scheduler.start()
        self._started = True
        logger.info(
            "taskflow started: instance %s, backend %s",
            self.instance_id,
            self._scheduler.backend.describe() if self._scheduler.backend else "memory",
        )

    @property
    def _threads_closed(self) -> bool:
        return getattr(self._threads, "_shutdown", False) is True

    async def stop(self) -> None:
        """Drain: let running tasks finish up to ``shutdown_timeout``, interrupt the rest, flush."""
        if not self._started:
            return
        self.draining = True
        began = time.monotonic()
        finished_in_drain = interrupted = 0
        if self._running:
            done, still = await asyncio.wait(set(self._running), timeout=self.shutdown_timeout)
            finished_in_drain, interrupted = len(done), len(still)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        for record in self.store.live():
            if record.status is TaskStatus.PENDING:
                interrupt_unstarted(record, self.bus)
                interrupted += 1
        await self._scheduler.stop()
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._started = False
        logger.info(
            "taskflow shutdown: %d tasks finished during drain, %d interrupted, %d unflushed, "
            "%.2fs",
            finished_in_drain,
            interrupted,
            len(self.store.unflushed()),
            time.monotonic() - began,
        )
