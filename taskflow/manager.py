"""TaskManager: configuration, the ``@task`` decorator, submitting, retries, reading history,
start and stop. It builds the parts and wires them, each handing work down:

    acceptor (launch) -> runner -> events -> store / persistence -> backend
    cluster monitor -> takeover -> runner;   shutdown -> runner, cluster, persistence
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from fastapi import BackgroundTasks

from taskflow.arguments import DEFAULT_MAX_STORED_BYTES
from taskflow.backends.base import HistoryBackend, cluster_part, schedule_part
from taskflow.backends.cipher import ArgumentCipher
from taskflow.backends.codec import RecordCodec, UnreadableRecord
from taskflow.backends.urls import backend_from_url, load_backend_class
from taskflow.background import ManagedBackgroundTasks, bind
from taskflow.cancel import DEFAULT_CANCEL_POLL_INTERVAL, CancelRefused, CancelWatcher
from taskflow.cluster import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_INSTANCE_EXPIRY,
    ClusterMonitor,
    Takeover,
    default_instance_id,
)
from taskflow.context import capture_logging
from taskflow.events import EventBus, EventKind, Listener
from taskflow.launch import DONE, Acceptor, Launch
from taskflow.models import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    AuditEntry,
    TaskRecord,
    TaskStatus,
    utcnow,
)
from taskflow.persistence import Persistence
from taskflow.persistence.bulk import DEFAULT_PURGE_LIMIT, MAX_PURGE_LIMIT, PurgeResult
from taskflow.persistence.history import Counts, ExtraFilter
from taskflow.persistence.store import DEFAULT_MAX_BYTES, DEFAULT_MAX_UNFLUSHED_BYTES, TaskStore
from taskflow.query import Cursor, InvalidQuery, Page, Selection, TaskQuery
from taskflow.retry import (
    DEFAULT_BULK_RETRY_LIMIT,
    MAX_BULK_RETRY_LIMIT,
    RETRYABLE,
    BulkRetry,
    Retries,
)
from taskflow.runner import Runner
from taskflow.schedules.memory import MemorySchedules
from taskflow.schedules.scheduler import (
    DEFAULT_GRACE,
    CatchUp,
    Schedule,
    Scheduler,
    ScheduleView,
    delayed_task_id,
    run_time,
)
from taskflow.schedules.spec import make_spec
from taskflow.shutdown import shut_down
from taskflow.tasks import RetryPolicy, TaskDefinition, TaskRegistry, adhoc_name

logger = logging.getLogger("taskflow")

F = TypeVar("F", bound=Callable[..., Any])


class TaskManager:
    """Tracks background tasks: ids, status, retries, timings, errors; optionally persisted.

    In memory when neither ``snapshot_db`` (a SQLite file path) nor ``snapshot_backend`` (a
    :class:`~taskflow.backends.SnapshotBackend` or a backend URL) is given. A backend that
    implements only the history contract (:class:`~taskflow.backends.base.HistoryBackend`)
    works too, with the cluster features off (see :mod:`taskflow.backends.base`).
    """

    def __init__(
        self,
        snapshot_db: str | os.PathLike[str] | None = None,
        snapshot_backend: HistoryBackend | str | None = None,
        snapshot_interval: float = 30.0,
        *,
        max_records: int = 10_000,
        max_unflushed: int = 100_000,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_unflushed_bytes: int = DEFAULT_MAX_UNFLUSHED_BYTES,
        max_args_bytes: int = DEFAULT_MAX_STORED_BYTES,
        args_keys: Sequence[str | bytes] | None = None,
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
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        instance_expiry: float = DEFAULT_INSTANCE_EXPIRY,
        max_concurrency: int | None = None,
        cancel_poll_interval: float = DEFAULT_CANCEL_POLL_INTERVAL,
        capture_logging: bool = False,
    ) -> None:
        if snapshot_db is not None and snapshot_backend is not None:
            raise ValueError("give snapshot_db or snapshot_backend, not both")
        backend: HistoryBackend | None
        if isinstance(snapshot_backend, str):
            backend = backend_from_url(snapshot_backend)
        elif snapshot_db is not None:
            backend = load_backend_class("SqliteBackend")(snapshot_db)
        else:
            backend = snapshot_backend
        if max_args_bytes < 0:
            raise ValueError("max_args_bytes must be >= 0 (0 keeps no arguments to run again)")
        cipher = ArgumentCipher(args_keys) if args_keys else None
        if backend is not None and cipher is not None:
            backend.codec = RecordCodec(cipher)
        # The cluster features need the cluster contract: with a history-only backend, no live
        # records (nobody could claim a lost instance's), keys and logouts per instance.
        cluster = cluster_part(backend)
        persist_live = persist_live and cluster is not None
        self._history_only = backend is not None and cluster is None
        self._instance_id = instance_id
        self.shutdown_timeout = shutdown_timeout
        self.requeue_pending = requeue_pending
        self._registry = TaskRegistry()
        self._store = TaskStore(
            max_records=max_records,
            max_unflushed=max_unflushed,
            max_bytes=max_bytes,
            max_unflushed_bytes=max_unflushed_bytes,
        )
        self._bus = EventBus()
        self._bus.subscribe(self._on_event)
        self._scheduler = Persistence(
            self._store,
            self._bus,
            backend,
            interval=snapshot_interval,
            restore_limit=restore_limit,
            retention_days=retention_days,
            max_history=max_history,
            persist_live=persist_live,
        )
        self._runner = Runner(self._bus, max_workers=max_workers, max_concurrency=max_concurrency)
        self._acceptor = Acceptor(
            registry=self._registry,
            store=self._store,
            bus=self._bus,
            runner=self._runner,
            persistence=self._scheduler,
            claims=cluster,
            instance_id=lambda: self.instance_id,
            max_args_bytes=max_args_bytes,
            durable_accept=durable_accept and persist_live,
            accept_timeout=accept_timeout,
        )
        self._acceptor.display_args = display_func_args
        # Ticks and delayed tasks are claimed in the backend when it implements the schedule
        # contract; otherwise once per process, in memory.
        shared_schedules = schedule_part(backend)
        self._schedules = Scheduler(
            self._acceptor,
            shared_schedules or MemorySchedules(),
            lambda: self.instance_id,
            shared=shared_schedules is not None,
        )
        self._acceptor.delay = self._delay_soon
        self._retries = Retries(self._acceptor, self.aget)
        self._cluster = (
            ClusterMonitor(
                cluster,
                lambda: self.instance_id,
                Takeover(
                    self._registry, self._store, self._bus, self._runner, lambda: self.instance_id
                ),
                heartbeat_interval=heartbeat_interval,
                expiry=instance_expiry,
            )
            if cluster is not None and persist_live
            else None
        )
        self._cancels = (
            CancelWatcher(
                cluster,
                self._store,
                self._runner,
                lambda: self.instance_id,
                interval=cancel_poll_interval,
            )
            if cluster is not None and persist_live
            else None
        )
        #: Keep the ``logging`` records emitted inside tasks with their records while started
        #: (a root logger handler, :class:`~taskflow.context.TaskLogHandler`).
        self.capture_logging = capture_logging
        self._capturing = False
        self._started = False
        self.draining = False
        #: Set as soon as :meth:`stop` begins, so long-lived readers (dashboard streams) end first.
        self.stopping = asyncio.Event()

    @property
    def instance_id(self) -> str:
        """Stored on every record: explicit, or ``host-pid`` of the current process."""
        return self._instance_id or default_instance_id()

    @property
    def backend(self) -> HistoryBackend | None:
        """The shared store the history is written to, or ``None`` when in memory only."""
        return self._scheduler.backend

    @property
    def persistent(self) -> bool:
        """True when a backend stores the history (every instance on it shares it)."""
        return self._scheduler.backend is not None

    @property
    def ready(self) -> bool:
        """Accepting work and the backend (if any) reachable: what ``/readyz`` reports."""
        return self._started and not self.draining and self._scheduler.ready

    @property
    def display_func_args(self) -> bool:
        """Show task arguments in the API and the dashboard (and keep a display copy of those
        that cannot be stored exactly)."""
        return self._acceptor.display_args

    @display_func_args.setter
    def display_func_args(self, value: bool) -> None:
        self._acceptor.display_args = value

    @property
    def acceptor(self) -> Acceptor:
        """What accepts tasks into this manager: the request middleware
        (:class:`~taskflow.background.TasksMiddleware`) takes it."""
        return self._acceptor

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
        timeout: float | None = None,
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
        timeout: float | None = None,
    ) -> Any:
        """Register a sync or async function as a tracked task with a retry policy.

        The task name (default: the function's ``__name__``) is the stable key in records,
        lookups and retries; two functions under one name raise ``ValueError``. The function is
        returned unchanged, so it can still be called directly. With ``requeue_on_interrupt``,
        a task whose instance is lost runs again on a survivor (its arguments are stored).
        ``timeout``: seconds each attempt may run; one that runs out fails with a
        ``TimeoutError`` naming the limit and counts toward ``retries`` (a sync function's
        thread cannot be stopped: it is asked to through ``task_context().cancelled``).
        """
        policy = RetryPolicy(retries, delay, backoff)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")

        def register(fn: F) -> F:
            task_name = name or getattr(fn, "__name__", None) or adhoc_name(fn)
            self._registry.add(
                TaskDefinition(task_name, fn, policy, requeue_on_interrupt, timeout=timeout)
            )
            return fn

        return register(func) if func is not None else register

    def schedule(
        self,
        *,
        every: timedelta | float | None = None,
        cron: str | None = None,
        timezone: str | None = None,
        name: str | None = None,
        catch_up: CatchUp = "once",
        grace: timedelta | float = DEFAULT_GRACE,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        retries: int = 0,
        delay: float = 0.0,
        backoff: float = 1.0,
        requeue_on_interrupt: bool = False,
    ) -> Callable[[F], F]:
        """Run a sync or async function periodically: ``every=timedelta(minutes=5)`` (ticks at
        whole multiples of the interval since the epoch, UTC) or ``cron="*/5 * * * *"`` with an
        optional ``timezone="Europe/Berlin"``. Each tick runs once across every instance on the
        backend (once per process without one), as an ordinary task linked to its schedule.

        ``catch_up``: after a downtime, ``"once"`` runs the newest missed tick once, ``"skip"``
        waits for the next tick unless the missed one is at most ``grace`` (a timedelta or
        seconds) late; older missed
        ticks never run. The function is registered as a task (under ``name``, default its
        ``__name__``) with the retry policy given (and ``requeue_on_interrupt``: a run whose
        instance is lost runs again on a survivor), unless ``@task`` registered it already.
        ``args`` and ``kwargs`` are passed to every run. See docs/schedules.md.
        """
        spec = make_spec(every, cron, timezone)
        policy = RetryPolicy(retries, delay, backoff)

        def register(fn: F) -> F:
            definition = self._registry.for_func(fn)
            if self._registry.by_name(definition.name) is not definition:
                task_name = name or getattr(fn, "__name__", None) or adhoc_name(fn)
                definition = TaskDefinition(task_name, fn, policy, requeue_on_interrupt)
                self._registry.add(definition)
            schedule = Schedule(
                name=name or definition.name,
                definition=definition,
                spec=spec,
                catch_up=catch_up,
                grace=grace if isinstance(grace, timedelta) else timedelta(seconds=grace),
                args=tuple(args),
                kwargs=dict(kwargs or {}),
            )
            self._schedules.add(schedule)
            return fn

        return register

    async def schedule_once(
        self,
        func: Callable[..., Any],
        /,
        *args: Any,
        run_at: datetime | None = None,
        countdown: float | None = None,
        key: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Run a registered task once, at ``run_at`` (timezone-aware) or ``countdown`` seconds
        from now; returns its id once it is stored. Until it starts its status is
        ``scheduled``. Stored in the backend: if this instance is gone by then, another one
        runs it. ``key``: one delayed task per key (scheduling the key again before it ran
        moves it to the new time). Needs a started manager."""
        if not self._started:
            raise RuntimeError("schedule_once() needs a started manager (inside the lifespan)")
        when = run_time(run_at, countdown)
        task_id = delayed_task_id(key) if key is not None else None
        record = self._schedules.delayed_record(
            self._registry.for_func(func), args, kwargs, when, task_id
        )
        await self._schedules.add_delayed(record)
        return record.task_id

    def _delay_soon(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        run_at: datetime | None,
        countdown: float | None,
    ) -> tuple[str, Future[None]]:
        record = self._schedules.delayed_record(
            self._registry.for_func(func), args, kwargs, run_time(run_at, countdown)
        )
        return record.task_id, self._schedules.add_delayed_soon(record)

    async def schedules(self) -> list[ScheduleView]:
        """Every periodic schedule registered here, with its next run, its last run (and that
        run's status) and whether it is paused (what ``GET /tasks/schedules`` shows)."""
        return await self._schedules.views(self.aget)

    async def pause_schedule(self, name: str) -> None:
        """Stop firing schedule ``name`` on every instance until :meth:`resume_schedule`
        (``KeyError`` when no schedule has that name)."""
        await self._schedules.set_paused(name, True)

    async def resume_schedule(self, name: str) -> None:
        """Fire schedule ``name`` again (``KeyError`` for an unknown name). Ticks missed while
        it was paused follow its catch-up policy, as after a downtime."""
        await self._schedules.set_paused(name, False)

    def definition(self, name: str) -> TaskDefinition | None:
        """The task registered under ``name`` (its function and policies), or ``None``."""
        return self._registry.by_name(name)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(kind, record)`` on the event loop at every lifecycle event of this
        instance's tasks (created, started, retrying, updated: new log lines or progress,
        finished); it must be quick and never block. Returns the function that unsubscribes
        it."""
        return self._bus.subscribe(listener)

    # -- submitting ------------------------------------------------------------------------

    async def get_tasks(self, background_tasks: BackgroundTasks) -> ManagedBackgroundTasks:
        """FastAPI dependency: ``tasks = Depends(task_manager.get_tasks)``; ``add_task`` -> id.

        A coroutine only so FastAPI calls it on the event loop: a plain ``def`` dependency is
        run in a worker thread, a thread hop per request for no I/O at all.
        """
        return bind(self._acceptor, background_tasks)

    #: fastapi-taskflow's name for :meth:`get_tasks`: ``Depends(task_manager.background_tasks)``.
    background_tasks = get_tasks

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> str:
        """Start a task now, outside any request (the manager must be started).

        ``idempotency_key="..."`` (taken out of the keyword arguments) works as with
        ``add_task``: one task per key across every instance while it is pending, running or
        succeeded; so does ``tags={...}``.
        """
        if not self._started:
            raise RuntimeError("submit() needs a started manager (inside the app's lifespan)")
        key = kwargs.pop("idempotency_key", None)
        tags = kwargs.pop("tags", None)
        record, launch = self._acceptor.enqueue(func, args, kwargs, idempotency_key=key, tags=tags)
        if not isinstance(launch, Launch):  # the key's task is known here already
            return record.task_id
        # Started here, in one task tracked for the drain, as a request's tasks are.
        rest = launch.after_response()
        if rest is not DONE:  # it waits for a claim: in a task of its own, tracked
            self._runner.track(asyncio.ensure_future(rest), record)
        return record.task_id

    def _on_event(self, kind: EventKind, record: TaskRecord) -> None:
        if kind is EventKind.FINISHED:
            self._store.finish(record)

    async def flush(self) -> bool:
        """Write everything not yet written now (the flusher does so by itself within
        milliseconds); True when nothing is left unwritten."""
        return await self._scheduler.flush()

    # -- reading ---------------------------------------------------------------------------

    async def aget(self, task_id: str) -> TaskRecord | None:
        """The record with this id, from this instance's memory or the backend (any instance's
        task); ``None`` when unknown. Raises
        :class:`~taskflow.backends.codec.UnreadableRecord` when it is stored but unreadable."""
        return await self._scheduler.aget(task_id)

    def get(self, task_id: str) -> TaskRecord | None:
        """:meth:`aget` as a plain call. Called on the event loop (inside ``async def``), where
        waiting for the backend would block every request, it answers from this instance's
        memory only: await :meth:`aget` there for the whole cluster's history."""
        return self._scheduler.history.get(task_id)

    def live_tasks(self) -> list[TaskRecord]:
        """This instance's tasks that are pending or running, from memory."""
        return self._store.live()

    async def apage(
        self,
        query: TaskQuery,
        *,
        instance_id: str | None = None,
        id_contains: str | None = None,
    ) -> Page:
        """One page of history with its ``next_cursor`` (what ``GET /tasks`` serves).
        ``instance_id`` and ``id_contains`` are not indexed by the backends: a bounded scan
        serves them, and such a page may hold fewer records than ``limit`` (even none) with a
        cursor to continue."""
        return await self._scheduler.history.scan(query, ExtraFilter(instance_id, id_contains))

    async def counts(self) -> Counts:
        """Records by status and function over all stored history and this instance's own."""
        return await self._scheduler.history.counts()

    def persistence_stats(self) -> dict[str, Any]:
        """Flush health and counters (the ``persistence`` part of ``GET /tasks/metrics``)."""
        return self._scheduler.stats()

    def readiness(self) -> dict[str, Any]:
        """What ``GET /readyz`` answers: whether this instance should get traffic, and why."""
        health = self._scheduler.health
        persistent = self.persistent
        return {
            "ready": self.ready,
            "draining": self.draining,
            "backend_reachable": health.connected and health.reachable if persistent else True,
            "backend_writable": health.writable if persistent else True,
            "backend_error": health.last_error if persistent else None,
            "unflushed": len(self._store.unflushed_ids),
            "instance_id": self.instance_id,
        }

    async def aquery(
        self,
        status: str | TaskStatus | None = None,
        func_name: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> list[TaskRecord]:
        """History of every instance, newest first (this instance's live and unflushed records
        merged with the backend's). ``tags``: records carrying all of them. Raises
        :class:`~taskflow.query.InvalidQuery` for a bad filter. The synchronous form is
        :meth:`query`."""
        query = TaskQuery.build(
            status=status,
            func_name=func_name,
            limit=limit,
            since=since,
            until=until,
            cursor=cursor,
            tags=tags,
        )
        return (await self._scheduler.aquery(query)).records

    def query(
        self,
        status: str | TaskStatus | None = None,
        func_name: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> list[TaskRecord]:
        """:meth:`aquery` as a plain call: from scripts, sync route handlers (worker threads)
        and before the app starts; inside ``async def`` code, await :meth:`aquery`."""
        return self._scheduler.query(
            status=status,
            func_name=func_name,
            limit=limit,
            since=since,
            until=until,
            cursor=cursor,
            tags=tags,
        )

    async def retry(self, task_id: str) -> TaskRecord:
        """Run a failed or interrupted task again as a new task with its original arguments
        (see :mod:`taskflow.retry`): ``KeyError`` for an unknown id,
        :class:`~taskflow.retry.RetryRefused` saying why it cannot."""
        return await self._retries.run_again(task_id)

    async def cancel(self, task_id: str) -> TaskRecord:
        """Stop a pending or running task, from any instance. Returns its record as known here.

        On the instance that runs it, at once: a pending task never starts; a running async
        task is cancelled (``asyncio``); a running sync task is asked to stop
        (``task_context().cancelled``: threads cannot be killed) and recorded ``cancelled``
        when it returns. Elsewhere the request goes through the backend to that instance,
        which acts on it within ``cancel_poll_interval`` plus one read (about a quarter of a
        second). A delayed task (``scheduled``) is cancelled before its time wherever it was
        accepted: no instance starts it. ``KeyError`` for an unknown id,
        :class:`~taskflow.cancel.CancelRefused` when it has finished or no instance can be
        reached (a backend without the cluster part).
        """
        record = self._store.get(task_id)
        if record is not None and record.status in LIVE_STATUSES:
            if record.instance_id == self.instance_id or self._cancels is None:
                self._runner.cancel(record)
                return record
        else:
            try:
                record = await self.aget(task_id)
            except UnreadableRecord as exc:
                raise CancelRefused(f"{exc}; it cannot be cancelled") from None
        if record is None:
            raise KeyError(task_id)
        if record.status is TaskStatus.SCHEDULED:
            return await self._cancel_delayed(record)
        if record.status.finished:
            raise CancelRefused(
                f"task {task_id} has finished ({record.status.value}); only pending or running "
                "tasks can be cancelled"
            )
        backend = self.backend
        cluster = cluster_part(backend)
        if backend is None or cluster is None or self._cancels is None:
            raise CancelRefused(
                f"task {task_id} runs on instance {record.instance_id}, and the backend has no "
                "cluster contract to pass the request on"
            )
        if record.instance_id not in {i.instance_id for i in await cluster.instances()}:
            # Parked for requeue, or its instance is gone: nobody runs it, and no watcher would
            # read the request. Finished here instead, as its owner (a claim that moved it
            # meanwhile makes the save refuse, and the request below reaches the claimer).
            stopped = dataclasses.replace(
                record,
                status=TaskStatus.CANCELLED,
                end_time=utcnow(),
                error="cancelled before an instance ran it (parked, or its instance was gone)",
            )
            if not await backend.save([stopped]):
                return stopped
        await cluster.request_cancel(task_id)
        return record

    async def _cancel_delayed(self, record: TaskRecord) -> TaskRecord:
        self._schedules.cancel_delayed(record)
        await self.flush()
        cluster = cluster_part(self.backend)
        if cluster is not None and self._cancels is not None:
            # Passed on too, for an instance that claims it at this very moment.
            await cluster.request_cancel(record.task_id)
        return record

    def can_retry(self, record: TaskRecord) -> bool:
        """Whether a retry of ``record`` from any instance would run (the Retry button)."""
        return self._retries.can_retry(record)

    async def retry_many(
        self,
        *,
        status: str | TaskStatus | None = None,
        func_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = DEFAULT_BULK_RETRY_LIMIT,
        dry_run: bool = False,
        cursor: str | None = None,
    ) -> BulkRetry:
        """Retry every failed or interrupted task (``status`` one of them, or both when
        ``None``) of ``func_name`` whose sort time (end time) is within ``since``..``until``,
        starting at most ``limit`` retries (at most
        :data:`~taskflow.retry.MAX_BULK_RETRY_LIMIT`); ``dry_run`` only counts them
        (``matched``). Each task is retried at most once across every instance, however often
        this is called and wherever (see :meth:`retry`); ``more`` in the result says to call
        again, with ``cursor`` (:func:`~taskflow.query.cursor_after` of its ``last_examined``)
        to go on from where it stopped. Raises :class:`~taskflow.query.InvalidQuery` for a
        bad filter, limit or cursor and :class:`~taskflow.backends.BackendError` while the
        backend is not ready."""
        selection = Selection.build(
            allowed=RETRYABLE, status=status, func_name=func_name, since=since, until=until
        )
        _check_limit(limit, MAX_BULK_RETRY_LIMIT)
        after = Cursor.decode(cursor) if cursor is not None else None
        bulk = self._scheduler.bulk
        matched = await bulk.count(selection)
        if dry_run:
            return BulkRetry(matched=matched, more=matched > 0)
        result = await self._retries.retry_many(bulk.walk(selection, after), limit)
        result.matched = matched
        return result

    async def purge(
        self,
        *,
        status: str | TaskStatus | None = None,
        func_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = DEFAULT_PURGE_LIMIT,
        dry_run: bool = False,
    ) -> PurgeResult:
        """Delete finished tasks (``status`` one of success, failed, interrupted, or all of
        them when ``None``) of ``func_name`` whose sort time (end time) is within
        ``since``..``until`` (``until`` alone: older than it), oldest first, at most ``limit``
        (at most :data:`~taskflow.persistence.bulk.MAX_PURGE_LIMIT`), from the backend every
        instance shares and from this instance's memory. A pending or running task is never
        deleted. ``dry_run`` only counts them (``matched``). Raises
        :class:`~taskflow.query.InvalidQuery` for a bad filter or limit and
        :class:`~taskflow.backends.BackendError` while the backend is not ready."""
        selection = Selection.build(
            allowed=TERMINAL_STATUSES, status=status, func_name=func_name, since=since, until=until
        )
        _check_limit(limit, MAX_PURGE_LIMIT)
        bulk = self._scheduler.bulk
        if dry_run:
            matched = await bulk.count(selection)
            return PurgeResult(matched, 0, matched > 0)
        return await bulk.purge(selection, limit)

    # -- the audit trail -------------------------------------------------------------------

    async def record_audit(
        self, action: str, target: str, *, actor: str = "", client: str = ""
    ) -> AuditEntry:
        """Add an admin action to the audit trail every instance on the backend shares (in
        this process without one): ``action`` (``"retry"``, ``"purge"``...), ``target`` (what
        it touched), ``actor`` (who: never a secret) and ``client`` (the address it came
        from). The HTTP routes call it through :func:`taskflow.web.audit.record`. Never raises
        for the backend: an entry it cannot store is logged and kept in memory."""
        entry = AuditEntry.new(
            action, target, actor=actor, client=client, instance_id=self.instance_id
        )
        await self._scheduler.audit.append(entry)
        return entry

    async def audit_log(self, limit: int = 50, before: str | None = None) -> list[AuditEntry]:
        """The audit trail, newest first: up to ``limit`` entries (at most
        :data:`~taskflow.persistence.audit.MAX_AUDIT_PAGE`), those older than the entry id
        ``before`` when given (the next page). Raises
        :class:`~taskflow.backends.BackendError` when the backend cannot be read."""
        return await self._scheduler.audit.entries(limit, before)

    # -- lifecycle -------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """The manager's lifespan: ``FastAPI(lifespan=task_manager.lifespan)``, or
        ``async with task_manager.lifespan(app):`` inside your own. Starts it, and stops it (the
        drain and the final flush) when the app shuts down. ``TaskAdmin`` does this itself."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        """Start persistence (restore, flush loops). Called by TaskAdmin's lifespan hook."""
        if self._started:
            return
        self.draining = False
        self.stopping = asyncio.Event()  # a fresh one for this run's event loop
        self._acceptor.loop = asyncio.get_running_loop()
        self._runner.start()
        await self._scheduler.start()
        if self._cluster is not None:
            await self._cluster.start()
        if self._cancels is not None:
            await self._cancels.start()
        if self.capture_logging:
            capture_logging(True)
            self._capturing = True
        await self._schedules.start()
        self._started = True
        if self._history_only:
            logger.warning(
                "taskflow backend %s implements the history contract only: the cluster view, "
                "takeover of a lost instance's tasks, cluster-wide idempotency keys and logouts "
                "seen by every instance are off",
                self._scheduler.backend.describe() if self._scheduler.backend else "",
            )
        logger.info(
            "taskflow started: instance %s, backend %s",
            self.instance_id,
            self._scheduler.backend.describe() if self._scheduler.backend else "memory",
        )

    async def stop(self) -> None:
        """Shut down (see :mod:`taskflow.shutdown`): let running tasks finish up to
        ``shutdown_timeout``, interrupt the rest, leave the cluster, flush, log a summary."""
        if not self._started:
            return
        self.draining = True
        self.stopping.set()
        if self._cancels is not None:
            await self._cancels.stop()
        if self._capturing:
            capture_logging(False)
            self._capturing = False
        await self._schedules.stop()
        await shut_down(
            self._runner,
            self._store,
            self._cluster,
            self._scheduler,
            timeout=self.shutdown_timeout,
            requeue_pending=self.requeue_pending,
        )
        self._acceptor.loop = None
        self._started = False

    #: fastapi-taskflow's name for :meth:`start`, for lifespans written for it.
    startup = start
    #: fastapi-taskflow's name for :meth:`stop`.
    shutdown = stop


def _check_limit(limit: int, most: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= most:
        raise InvalidQuery(f"limit must be between 1 and {most}, got {limit!r}", field="limit")
