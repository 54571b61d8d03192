"""TaskManager: configuration, the ``@task`` decorator, submitting, start and stop."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, overload

from fastapi import BackgroundTasks

from taskflow import recovery
from taskflow.backends.base import SnapshotBackend
from taskflow.backends.registry import backend_from_url, load_backend_class
from taskflow.cluster import ClusterMonitor
from taskflow.drain import drain
from taskflow.events import EventBus, EventKind
from taskflow.executor import RetryPolicy, execute
from taskflow.identity import default_instance_id
from taskflow.injection import ManagedBackgroundTasks, bind, note_launch
from taskflow.launch import DONE, Launch
from taskflow.models import (
    TaskRecord,
    TaskStatus,
    new_task_id,
)
from taskflow.registry import TaskDefinition, TaskRegistry, adhoc_name
from taskflow.retry import run_again
from taskflow.snapshot import SnapshotScheduler
from taskflow.store import CallSpec, TaskStore
from taskflow.threads import DaemonThreadPool

logger = logging.getLogger("taskflow")

F = TypeVar("F", bound=Callable[..., Any])
Runner = Callable[[], Coroutine[Any, Any, None]]


async def _nothing() -> None:
    """The runner of an idempotent add_task whose key is already taken: nothing to run."""


#: Statuses under which an idempotency key's task counts as already taken.
_KEY_HOLDERS = (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.SUCCESS)


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
        requeue_pending: bool = False,
        persist_live: bool = True,
        durable_accept: bool = True,
        accept_timeout: float = 1.0,
        heartbeat_interval: float = 5.0,
        instance_expiry: float = 15.0,
        max_concurrency: int | None = None,
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
            persist_live=persist_live,
        )
        self._cluster = (
            ClusterMonitor(
                backend,
                lambda: self.instance_id,
                lambda records, owner: recovery.adopt(self, records, owner),
                heartbeat_interval=heartbeat_interval,
                expiry=instance_expiry,
            )
            if backend is not None and persist_live
            else None
        )
        self.requeue_pending = requeue_pending
        self.durable_accept = durable_accept and persist_live and backend is not None
        self.accept_timeout = accept_timeout
        self.shutdown_timeout = shutdown_timeout
        self.display_func_args = display_func_args
        self.max_workers = max_workers
        self._instance_id = instance_id
        self.registry = TaskRegistry()
        self._running: dict[asyncio.Future[None], TaskRecord] = {}
        self.max_concurrency = max_concurrency
        self._slots: asyncio.Semaphore | None = None
        self._threads = DaemonThreadPool(max_workers)
        self._started = False
        self.draining = False
        #: Set as soon as :meth:`stop` begins, so long-lived readers (dashboard streams) end first.
        self.stopping = asyncio.Event()
        self.bus.subscribe(self._on_event)

    @property
    def instance_id(self) -> str:
        """Stored on every record: explicit, or ``host-pid`` of the current process."""
        return self._instance_id or default_instance_id()

    @property
    def backend(self) -> SnapshotBackend | None:
        """The shared history backend, or ``None`` when records live in this process only."""
        return self._scheduler.backend

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
        requeue_on_interrupt: bool = False,
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
        requeue_on_interrupt: bool = False,
    ) -> Any:
        """Register a sync or async function as a tracked task with a retry policy.

        The task name (default: the function's ``__name__``) is the stable key in records,
        lookups and retries; two functions under one name raise ``ValueError``. The function is
        returned unchanged, so it can still be called directly. With ``requeue_on_interrupt``,
        a task whose instance is lost runs again on a survivor (its arguments are stored).
        """
        policy = RetryPolicy(retries, delay, backoff)

        def register(fn: F) -> F:
            task_name = name or getattr(fn, "__name__", None) or adhoc_name(fn)
            self.registry.add(TaskDefinition(task_name, fn, policy, requeue_on_interrupt))
            return fn

        return register(func) if func is not None else register

    def definition(self, name: str) -> TaskDefinition | None:
        return self.registry.by_name(name)

    # -- submitting ------------------------------------------------------------------------

    async def get_tasks(self, background_tasks: BackgroundTasks) -> ManagedBackgroundTasks:
        """FastAPI dependency: ``tasks = Depends(task_manager.get_tasks)``; ``add_task`` -> id.

        A coroutine only so FastAPI calls it on the event loop: a plain ``def`` dependency is
        run in a worker thread, a thread hop per request for no I/O at all.
        """
        return bind(self, background_tasks)

    def enqueue(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        retry_of: str | None = None,
        idempotency_key: str | None = None,
        background: bool = False,
    ) -> tuple[TaskRecord, Runner]:
        """Create a pending record; the returned runner starts the task when awaited.

        Functions that were never registered are tracked too, under ``module.qualname`` and
        without retries. Nothing here blocks or does I/O. With an ``idempotency_key`` the id is
        derived from the key; while a task with that id is pending, running or succeeded
        anywhere, no second one runs (checked atomically in the backend by the runner).
        ``background``: the runner is one of the current request's background tasks, which
        FastAPI runs after the response, or never if the request fails (see
        :func:`~taskflow.injection.note_launch`).
        """
        definition = self.registry.for_func(func)
        task_id = new_task_id()
        if idempotency_key is not None:
            task_id = recovery.idempotent_task_id(idempotency_key)
            known = self.store.get(task_id)
            if known is not None and known.status in _KEY_HOLDERS:
                return known, _nothing
        record = TaskRecord(
            task_id=task_id,
            func_name=definition.name,
            instance_id=self.instance_id,
            retry_of=retry_of,
            idempotency_key=idempotency_key,
        )
        recovery.store_arguments(self, record, definition, args, kwargs)
        claim = idempotency_key is not None and self._scheduler.backend is not None
        if claim:
            self.store.hold(task_id)  # written by the claim in the runner, not by a flush
        self.store.add(record, CallSpec(func, args, kwargs))
        launch = Launch(self, record, definition, args, kwargs, claim=claim)
        if background and note_launch(launch) and not claim and self.durable_accept:
            launch.hold()  # before the announcement, whose listener marks the record for writing
        self._announce(record)
        return record, launch

    def _announce(self, record: TaskRecord) -> None:
        """Publish a new record on the manager's loop. A sync route handler enqueues from a
        worker thread, and the listeners touch what only the loop may touch (the flush timer,
        the dashboard streams' queues)."""
        loop = self._scheduler._loop if self._started else None
        if loop is not None and asyncio._get_running_loop() is not loop:
            try:
                loop.call_soon_threadsafe(self.bus.publish, EventKind.CREATED, record)
                return
            except RuntimeError:  # that loop is closed: nothing listens on it any more
                pass
        self.bus.publish(EventKind.CREATED, record)

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
        # all that _run() checks for.
        coro = (
            self._execute(record, definition, args, kwargs)
            if self._slots is None
            else self._run(record, definition, args, kwargs)
        )
        # The loop's own method: asyncio.create_task only adds a Python-level call around it.
        self._track(asyncio.get_running_loop().create_task(coro), record)

    def _track(self, task: asyncio.Future[None], record: TaskRecord) -> None:
        self._running[task] = record
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Future[None]) -> None:
        self._running.pop(task, None)

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> str:
        """Start a task now, outside any request (the manager must be started)."""
        if not self._started:
            raise RuntimeError("submit() needs a started manager (inside the app's lifespan)")
        record, launch = self.enqueue(func, args, kwargs)
        assert isinstance(launch, Launch)  # without an idempotency key there is always one
        # Started here, in one task tracked for the drain, as a request's tasks are.
        rest = launch.after_response()
        if rest is not DONE:  # draining: it runs in a task of its own, held here
            self._track(asyncio.ensure_future(rest), record)
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
            if self._slots is None:
                await self._execute(record, definition, args, kwargs)
                return
            async with self._slots:  # pending until one of max_concurrency slots is free
                if record.status is TaskStatus.PENDING and not self.draining:
                    await self._execute(record, definition, args, kwargs)
        except asyncio.CancelledError:
            if not self.draining:
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
        )

    def _on_event(self, kind: EventKind, record: TaskRecord) -> None:
        if kind is EventKind.FINISHED:
            self.store.finish(record)

    async def retry(self, task_id: str) -> TaskRecord:
        """Run a failed or interrupted task again as a new task with its original arguments."""
        return await run_again(self, task_id)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start persistence (restore, flush loops). Called by TaskAdmin's lifespan hook."""
        if self._started:
            return
        self.draining = False
        self.stopping = asyncio.Event()  # a fresh one for this run's event loop
        if self._threads_closed:
            self._threads = DaemonThreadPool(self.max_workers)
        if self.max_concurrency is not None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        await self._scheduler.start()
        if self._cluster is not None:
            await self._cluster.start()
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
        self.stopping.set()
        began = time.monotonic()
        summary = await drain(self)
        if self._cluster is not None:
            await self._cluster.stop()
        await self._scheduler.stop()
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._started = False
        logger.info(
            "taskflow shutdown%s: %d tasks finished during drain, %d interrupted, %d requeued, "
            "%d unflushed, %.2fs",
            " (forced by a second signal)" if summary.forced else "",
            summary.finished,
            summary.interrupted,
            summary.parked,
            len(self.store.unflushed()),
            time.monotonic() - began,
        )
