"""Accepting a task: its record, what it keeps of its arguments, and the launch that starts it
once, after its response or, with durable acceptance, while that response waits for its write.

:class:`Acceptor` turns a call into a pending record (``add_task``, ``submit``, a retry);
:class:`Launch` starts it. Both hand work down: to the :class:`~taskflow.runner.Runner`, the
store, the persistence (which writes records) and the backend's idempotency claims; nothing
here calls back up into the manager.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from taskflow.arguments import keep_arguments
from taskflow.backends.base import ClusterBackend
from taskflow.cluster import claim_key, idempotent_task_id
from taskflow.events import EventBus, EventKind
from taskflow.models import KEY_HOLDERS, TaskRecord, check_tags, new_task_id
from taskflow.persistence import Persistence
from taskflow.persistence.store import CallSpec, TaskStore, approximate_size
from taskflow.runner import Runner, interrupt_unstarted
from taskflow.tasks import TaskDefinition, TaskRegistry

#: What starts an accepted task when awaited.
Starter = Callable[[], Awaitable[None]]
#: Stores a delayed task: (function, args, kwargs, run_at, countdown) -> its id, and a future
#: done once it is stored.
Delayer = Callable[
    [Callable[..., Any], tuple[Any, ...], dict[str, Any], "datetime | None", "float | None"],
    "tuple[str, Future[None]]",
]


class _Done:
    """An awaitable that is already done: awaiting it neither suspends nor makes a frame."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]  # already exhausted: await returns None


DONE = _Done()


async def _nothing() -> None:
    """The starter of an idempotent task whose key is already taken here: nothing to run."""


class Acceptor:
    """Turns calls into tracked tasks of one manager: a pending record in the store, announced
    to the listeners, and its :class:`Launch`.

    ``durable_accept``: a response that enqueued tasks is held until the write carrying them
    succeeded (bounded by ``accept_timeout``), see :class:`~taskflow.background.TasksMiddleware`.
    """

    def __init__(
        self,
        *,
        registry: TaskRegistry,
        store: TaskStore,
        bus: EventBus,
        runner: Runner,
        persistence: Persistence,
        claims: ClusterBackend | None,
        instance_id: Callable[[], str],
        max_args_bytes: int,
        durable_accept: bool,
        accept_timeout: float,
    ) -> None:
        self.registry = registry
        self.store = store
        self.bus = bus
        self.runner = runner
        self.persistence = persistence
        #: Where idempotency keys are claimed cluster-wide (None: in this instance only).
        self.claims = claims
        self.instance_id = instance_id
        self.max_args_bytes = max_args_bytes
        self.durable_accept = durable_accept
        self.accept_timeout = accept_timeout
        #: Keep a display copy of arguments that cannot be stored exactly (display_func_args).
        self.display_args = False
        #: The manager's event loop while it runs: listeners are called on it.
        self.loop: asyncio.AbstractEventLoop | None = None
        #: Stores a delayed task (``add_task(..., run_at=...)``) and returns its id: the
        #: manager's scheduler, set by the manager.
        self.delay: Delayer | None = None

    @property
    def persistent(self) -> bool:
        """Records go to a backend that other instances share."""
        return self.persistence.backend is not None

    def enqueue(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        retry_of: str | None = None,
        idempotency_key: str | None = None,
        held: bool = False,
        tags: dict[str, str] | None = None,
        task_id: str | None = None,
        schedule: str | None = None,
        scheduled_for: datetime | None = None,
    ) -> tuple[TaskRecord, Starter]:
        """Create a pending record; the returned starter (usually a :class:`Launch`) starts the
        task when awaited.

        Functions that were never registered are tracked too, under ``module.qualname`` and
        without retries. Nothing here blocks or does I/O. With an ``idempotency_key`` the id is
        derived from the key; while a task with that id is pending, running or succeeded
        anywhere, no second one runs (claimed atomically in the backend by the launch).
        ``held``: the task belongs to a request whose response will accept it (durable
        acceptance): its record is kept out of writes until then. ``tags`` are checked
        (``ValueError``, see :func:`~taskflow.models.check_tags`) and stored on the record.
        acceptance): its record is kept out of writes until then. ``task_id`` (a periodic run,
        whose id was claimed with its tick), ``schedule`` and ``scheduled_for`` are stored on
        the record as given.
        """
        if tags is not None:
            tags = check_tags(tags)
        definition = self.registry.for_func(func)
        task_id = task_id or new_task_id()
        if idempotency_key is not None:
            task_id = idempotent_task_id(idempotency_key)
            known = self.store.get(task_id)
            if known is not None and known.status in KEY_HOLDERS:
                return known, _nothing
        record = TaskRecord(
            task_id=task_id,
            func_name=definition.name,
            instance_id=self.instance_id(),
            retry_of=retry_of,
            idempotency_key=idempotency_key,
            tags=tags,
            schedule=schedule,
            scheduled_for=scheduled_for,
        )
        call = self._call(record, definition, args, kwargs)
        claim = idempotency_key is not None and self.claims is not None
        if claim:
            self.store.hold(task_id)  # written by the claim in the launch, not by a flush
        self.store.add(record, call)
        launch = Launch(self, record, definition, args, kwargs, claim=claim)
        if held and not claim and self.durable_accept:
            launch.hold()  # before the announcement, whose listener marks the record for writing
        self._announce(record)
        return record, launch

    def persist_soon(self) -> Awaitable[bool] | None:
        """What a held response awaits: the write carrying its tasks (None: nothing to wait
        for, the backend is not ready)."""
        return self.persistence.persist_soon(self.accept_timeout)

    def _call(
        self,
        record: TaskRecord,
        definition: TaskDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> CallSpec:
        """Keep on ``record`` what it stores of its arguments (see :mod:`taskflow.arguments`),
        and return the call to run, which says whether it stays in memory once finished."""
        kept = keep_arguments(
            args, kwargs, max_bytes=self.max_args_bytes, display=self.display_args
        )
        record.args, record.kwargs, record.rerunnable = kept.args, kept.kwargs, kept.exact
        if kept.exact:
            # The record's stored arguments run it again anywhere once its function is known by
            # name; an ad-hoc function is known here only, by the call.
            size = kept.size
            keep = self.registry.by_name(definition.name) is not definition
        else:
            size = approximate_size(args, kwargs)
            keep = size <= self.max_args_bytes
        return CallSpec(definition.func, args, kwargs, size, keep)

    def _announce(self, record: TaskRecord) -> None:
        """Publish a new record on the manager's loop. A sync route handler enqueues from a
        worker thread, and the listeners touch what only the loop may touch (the flush timer,
        the dashboard streams' queues)."""
        loop = self.loop
        if loop is not None and not _running_on(loop):
            try:
                loop.call_soon_threadsafe(self.bus.publish, EventKind.CREATED, record)
                return
            except RuntimeError:  # that loop is closed: nothing listens on it any more
                pass
        self.bus.publish(EventKind.CREATED, record)


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # a worker thread: no loop runs here
        return False


class Launch:
    """Starts one accepted task, once.

    Awaited after the response (FastAPI runs it as a background task; ``submit`` and
    ``retry`` await it directly). With durable acceptance the response that returns the id
    first calls :meth:`accept`: until then the record is held out of writes (no client knows
    its id yet), and a successful response starts the task before it waits for the write, so a
    short task has finished by the time the group commit takes its batch and is written once,
    finished, instead of twice (accepted, then finished).
    """

    __slots__ = (
        "acceptor",
        "args",
        "claim",
        "definition",
        "held",
        "kwargs",
        "record",
        "refused",
        "started",
    )

    def __init__(
        self,
        acceptor: Acceptor,
        record: TaskRecord,
        definition: TaskDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        claim: bool,
    ) -> None:
        self.acceptor = acceptor
        self.record = record
        self.definition = definition
        self.args = args
        self.kwargs = kwargs
        #: An idempotent task claims its id in the backend first (an await): never early.
        self.claim = claim
        self.started = False
        self.held = False
        #: The claim found the id's task stored already (another instance runs it): not run.
        self.refused = False

    def hold(self) -> None:
        """Keep the record out of writes until :meth:`accept` (its response will call it)."""
        self.held = True
        self.acceptor.store.hold(self.record.task_id)

    def accept(self, start: bool) -> None:
        """The response returning the id waits for the write now: include the record in it,
        and with ``start`` start the task first."""
        self._release()
        if start:
            self.start_early()
        self.acceptor.persistence.mark_live(self.record)

    def abandon(self) -> None:
        """The request that queued the task has ended without starting it: it raised, and
        FastAPI runs no background task of a request that raised. Recorded as never run,
        instead of staying pending (and in memory) forever."""
        if self.started:
            return
        self.started = True
        if self.claim:
            # Its id is the idempotency key's, and this instance never claimed it: the stored
            # task of that id (if any) belongs to someone else. Forget it, write nothing.
            self.acceptor.store.discard(self.record.task_id)
            return
        self._release()
        interrupt_unstarted(
            self.record,
            self.acceptor.bus,
            "not run: the request that queued it failed before its response",
        )

    def _release(self) -> None:
        if self.held:
            self.held = False
            self.acceptor.store.release(self.record.task_id)

    def after_response(self) -> Awaitable[None]:
        """What FastAPI awaits after the response: starts the task and returns an awaitable
        that is already done, or, when the task must wait for something, its coroutine."""
        self._release()
        self.start_early()
        return DONE if self.started else self()

    async def __call__(self) -> None:
        self._release()
        if self.started:
            return
        self.started = True
        acceptor = self.acceptor
        if self.claim and not await self._claim():
            return
        if acceptor.runner.open:
            acceptor.runner.spawn(self.record, self.definition, self.args, self.kwargs)
        else:
            await acceptor.runner.run(self.record, self.definition, self.args, self.kwargs)

    async def _claim(self) -> bool:
        acceptor, record = self.acceptor, self.record
        assert acceptor.claims is not None
        if not await claim_key(acceptor.claims, record):
            acceptor.store.discard(record.task_id)
            self.refused = True
            return False
        acceptor.store.release(record.task_id)
        acceptor.persistence.mark_live(record)
        return True

    def start_early(self) -> None:
        """Start now, in a task of its own, unless it must wait for something (a claim)."""
        if self.started or self.claim or not self.acceptor.runner.open:
            return
        self.started = True
        self.acceptor.runner.spawn(self.record, self.definition, self.args, self.kwargs)
