"""Running scheduled tasks: periodic schedules whose ticks fire once across the cluster, and
delayed one-off tasks that any instance runs when their time comes.

Every instance runs one :class:`Scheduler` loop. At each tick of a periodic schedule every
instance tries to claim the tick in the backend (keyed by the tick's scheduled time); the one
that wins starts an ordinary task, linked to its schedule. Delayed tasks are stored in the
backend with status ``scheduled``; when one is due, the instance that claims it runs it. See
docs/schedules.md for the semantics (catch-up policy, clock skew, what a kill loses).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from taskflow.arguments import keep_arguments
from taskflow.backends.base import BackendError, HistoryBackend, ScheduleBackend, ScheduleState
from taskflow.backends.codec import UnreadableRecord
from taskflow.events import EventKind
from taskflow.launch import DONE, Acceptor, Launch
from taskflow.models import TaskRecord, TaskStatus, new_task_id, utcnow
from taskflow.persistence.store import CallSpec
from taskflow.schedules.spec import ScheduleSpec
from taskflow.tasks import TaskDefinition

logger = logging.getLogger("taskflow.schedules")

#: Reads one record by id from the whole history (the manager's ``aget``).
HistoryLookup = Callable[[str], Awaitable[TaskRecord | None]]

#: What a periodic schedule does with the ticks it missed while no instance ran (or all were
#: paused by a stall): ``"once"`` runs the newest missed tick once, ``"skip"`` runs nothing
#: until the next tick that comes on time. Older missed ticks never run: no burst.
CatchUp = Literal["once", "skip"]
CATCH_UP_POLICIES: tuple[str, ...] = ("once", "skip")
#: How late a tick may start and still count as on time under ``catch_up="skip"``.
DEFAULT_GRACE = timedelta(seconds=60)
#: Longest the loop sleeps between two rounds (seconds): how soon a pause or resume from
#: another instance, and a delayed task accepted by another instance, are noticed.
POLL_INTERVAL = 0.5
#: Most delayed tasks one round claims.
CLAIM_LIMIT = 100
#: Seconds between two attempts to store a delayed task while the backend fails.
STORE_RETRY = 1.0
#: Longest ``countdown`` (seconds): ten years; a datetime beyond it is a mistake.
MAX_COUNTDOWN = 10 * 365 * 86400.0


def run_time(run_at: datetime | None, countdown: float | None) -> datetime:
    """When a delayed task is due: ``run_at`` (timezone-aware) or ``countdown`` seconds from
    now, exactly one of them (ValueError otherwise)."""
    if (run_at is None) == (countdown is None):
        raise ValueError("give run_at= or countdown=, exactly one")
    if run_at is not None:
        if not isinstance(run_at, datetime) or run_at.tzinfo is None:
            raise ValueError("run_at must be a timezone-aware datetime")
        return run_at.astimezone(timezone.utc)
    if isinstance(countdown, bool) or not isinstance(countdown, (int, float)):
        raise ValueError(f"countdown must be a number of seconds, not {countdown!r}")
    if not 0 <= countdown <= MAX_COUNTDOWN:
        raise ValueError(f"countdown must be between 0 and {MAX_COUNTDOWN:.0f} seconds")
    return utcnow() + timedelta(seconds=countdown)


def delayed_task_id(key: str) -> str:
    """The task id every instance derives from a ``schedule_once`` key (32 hex digits)."""
    return hashlib.sha256(f"taskflow-schedule-once:{key}".encode()).hexdigest()[:32]


@dataclass(slots=True)
class Schedule:
    """A periodic schedule: which task runs, when, with what, and its catch-up policy."""

    name: str
    definition: TaskDefinition
    spec: ScheduleSpec
    catch_up: CatchUp = "once"
    grace: timedelta = DEFAULT_GRACE
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ScheduleView:
    """A schedule as ``GET /tasks/schedules`` shows it."""

    name: str
    func_name: str
    spec: str
    catch_up: str
    next_run: datetime | None
    last_run: datetime | None
    last_task_id: str | None
    last_status: str | None
    paused: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "func_name": self.func_name,
            "spec": self.spec,
            "catch_up": self.catch_up,
            "next_run": self.next_run.isoformat() if self.next_run else None,
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "last_task_id": self.last_task_id,
            "last_status": self.last_status,
            "paused": self.paused,
        }


class Scheduler:
    """One instance's share of the scheduling: claims ticks and due delayed tasks, and starts
    what it claimed through the ``acceptor``.

    ``backend`` is shared by the instances (``shared``), or a
    :class:`~taskflow.schedules.memory.MemorySchedules` of this process.
    """

    def __init__(
        self,
        acceptor: Acceptor,
        backend: ScheduleBackend,
        instance_id: Callable[[], str],
        *,
        shared: bool,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.acceptor = acceptor
        self.backend = backend
        self.instance_id = instance_id
        self.shared = shared
        self.poll_interval = poll_interval
        self.schedules: dict[str, Schedule] = {}
        #: Ticks this instance claimed and started, and ticks it skipped (``catch_up="skip"``).
        self.fired = 0
        self.skipped = 0
        self._started_at = utcnow()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._writes: set[asyncio.Task[None]] = set()
        self._skipped_ticks: dict[str, datetime] = {}

    def add(self, schedule: Schedule) -> None:
        """Register a periodic schedule; a second one under a taken name raises ValueError."""
        if schedule.name in self.schedules:
            raise ValueError(f"a schedule named {schedule.name!r} is already registered")
        if schedule.catch_up not in CATCH_UP_POLICIES:
            raise ValueError(
                f"catch_up must be one of {CATCH_UP_POLICIES}, not {schedule.catch_up!r}"
            )
        self.schedules[schedule.name] = schedule

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._started_at = utcnow()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="taskflow-scheduler")

    async def stop(self) -> None:
        """Stop claiming (before the drain): what is claimed already is running or written."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._writes:
            await asyncio.wait(self._writes, timeout=2.0)
            for task in self._writes:
                task.cancel()

    async def _loop(self) -> None:
        while True:
            try:
                wait = await self.round()
            except (BackendError, OSError) as exc:
                logger.debug("taskflow scheduler round failed: %s", exc)
                wait = self.poll_interval
            except Exception:  # a bug here must not end the schedules
                logger.exception("taskflow scheduler round failed")
                wait = self.poll_interval
            self._wake.clear()
            # asyncio.wait, not wait_for: on Python 3.11 wait_for loses a cancellation that
            # arrives as the wake-up completes, and stop() would wait for this loop forever.
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=max(wait, 0.0))
            finally:
                waiter.cancel()

    async def round(self) -> float:
        """Claim and start what is due now; return the seconds until the next thing is due
        (at most the poll interval)."""
        now = utcnow()
        wait = self.poll_interval
        if self.schedules:
            states = await self.backend.schedule_states()
            for schedule in self.schedules.values():
                await self._tick(schedule, states.get(schedule.name), now)
                following = schedule.spec.next_after(now)
                wait = min(wait, (following - utcnow()).total_seconds())
        due = await self.backend.next_due()
        if due is not None and due <= now and self.acceptor.runner.open:
            claimed = await self.backend.claim_due(now, self.instance_id(), CLAIM_LIMIT)
            for record in claimed:
                await self._start_delayed(record)
            return 0.0 if len(claimed) == CLAIM_LIMIT else wait
        if due is not None:
            wait = min(wait, (due - utcnow()).total_seconds())
        return wait

    # -- periodic schedules ----------------------------------------------------------------------

    def _due_tick(
        self, schedule: Schedule, state: ScheduleState | None, now: datetime
    ) -> datetime | None:
        """The tick to claim now, if any: the newest one not claimed yet, by the policy."""
        if state is not None and state.paused:
            return None
        tick = schedule.spec.latest(now)
        last = state.last_tick if state is not None else None
        if last is not None and tick <= last:
            return None
        if last is None and tick < self._started_at:
            return None  # a schedule never run before starts at its first tick from now on
        late = now - tick
        if schedule.catch_up == "skip" and late > schedule.grace:
            if self._skipped_ticks.get(schedule.name) != tick:
                self._skipped_ticks[schedule.name] = tick
                self.skipped += 1
                logger.info(
                    "taskflow schedule %s skipped tick %s (%.0fs late, catch_up=skip)",
                    schedule.name,
                    tick.isoformat(),
                    late.total_seconds(),
                )
            return None
        return tick

    async def _tick(self, schedule: Schedule, state: ScheduleState | None, now: datetime) -> None:
        tick = self._due_tick(schedule, state, now)
        if tick is None or not self.acceptor.runner.open:
            return
        last = state.last_tick if state is not None else None
        run = self._run_record(schedule, tick)
        if not await self.backend.claim_tick(schedule.name, tick, run):
            return  # another instance fired it
        self.fired += 1
        if last is not None and tick > schedule.spec.next_after(last):
            logger.info(
                "taskflow schedule %s missed ticks after %s: running tick %s once",
                schedule.name,
                last.isoformat(),
                tick.isoformat(),
            )
        definition = schedule.definition
        record, launch = self.acceptor.enqueue(
            definition.func,
            schedule.args,
            dict(schedule.kwargs),
            task_id=run.task_id,
            schedule=schedule.name,
            scheduled_for=tick,
        )
        if isinstance(launch, Launch):
            rest = launch.after_response()
            if rest is not DONE:
                self.acceptor.runner.track(asyncio.ensure_future(rest), record)

    def _run_record(self, schedule: Schedule, tick: datetime) -> TaskRecord:
        """The pending record of a tick's run, stored with its claim (the launch then makes
        the same record, under the same id, and writes its progress over it)."""
        kept = keep_arguments(
            schedule.args,
            schedule.kwargs,
            max_bytes=self.acceptor.max_args_bytes,
            display=self.acceptor.display_args,
        )
        return TaskRecord(
            task_id=new_task_id(),
            func_name=schedule.definition.name,
            instance_id=self.instance_id(),
            args=kept.args,
            kwargs=kept.kwargs,
            rerunnable=kept.exact,
            schedule=schedule.name,
            scheduled_for=tick,
        )

    async def views(self, history: HistoryLookup) -> list[ScheduleView]:
        """Every registered schedule with its next and last run (the last run's status read
        through ``history``)."""
        states = await self.backend.schedule_states()
        now = utcnow()
        views = []
        for name in sorted(self.schedules):
            schedule = self.schedules[name]
            state = states.get(name) or ScheduleState(name)
            status = None
            if state.last_task_id is not None:
                try:
                    record = await history(state.last_task_id)
                except (UnreadableRecord, BackendError, OSError):
                    record = None  # the list still shows the schedule; its last status is unknown
                status = record.status.value if record is not None else None
            views.append(
                ScheduleView(
                    name=name,
                    func_name=schedule.definition.name,
                    spec=schedule.spec.describe(),
                    catch_up=schedule.catch_up,
                    next_run=None if state.paused else schedule.spec.next_after(now),
                    last_run=state.last_tick,
                    last_task_id=state.last_task_id,
                    last_status=status,
                    paused=state.paused,
                )
            )
        return views

    async def set_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a registered schedule (``KeyError`` for an unknown name), for every
        instance on the backend."""
        if name not in self.schedules:
            raise KeyError(name)
        await self.backend.set_paused(name, paused)
        self._wake.set()

    # -- delayed one-off tasks -------------------------------------------------------------------

    def delayed_record(
        self,
        definition: TaskDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        run_at: datetime,
        task_id: str | None = None,
    ) -> TaskRecord:
        """The ``scheduled`` record of a delayed task. Its function must be registered and its
        arguments stored exactly (another instance may be the one that runs it): ValueError."""
        acceptor = self.acceptor
        if acceptor.registry.by_name(definition.name) is not definition:
            raise ValueError(
                f"{definition.name} is not a registered task: a delayed task may run on another "
                "instance, which finds its function by name (register it with @task_manager.task)"
            )
        if run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware (datetime.now(timezone.utc) + ...)")
        kept = keep_arguments(args, kwargs, max_bytes=acceptor.max_args_bytes, display=False)
        if not kept.exact:
            raise ValueError(
                "a delayed task's arguments must be JSON values within max_args_bytes: another "
                "instance may be the one that runs it"
            )
        return TaskRecord(
            task_id=task_id or new_task_id(),
            func_name=definition.name,
            status=TaskStatus.SCHEDULED,
            instance_id=self.instance_id(),
            args=kept.args,
            kwargs=kept.kwargs,
            rerunnable=True,
            scheduled_for=run_at.astimezone(timezone.utc),
        )

    async def add_delayed(self, record: TaskRecord) -> None:
        """Store a delayed task now (the backend's write, awaited)."""
        if not self.shared:
            self.acceptor.store.add(record)  # in memory: what reads show until it runs
        await self.backend.add_delayed(record)
        self._wake.set()

    def add_delayed_soon(self, record: TaskRecord) -> Future[None]:
        """Store a delayed task from synchronous code (``add_task(run_at=...)``, maybe in a
        worker thread): in a task of its own on the manager's loop, retried while the backend
        fails. Until it is stored the record is kept in this instance's memory, so reads here
        show it. The returned future is done once it is stored (a held response waits for it)."""
        self.acceptor.store.add(record)
        loop = self.acceptor.loop
        if loop is None:
            raise RuntimeError("add_task(run_at=...) needs a started manager")
        stored: Future[None] = Future()
        loop.call_soon_threadsafe(self._spawn_write, record, stored)
        return stored

    def _spawn_write(self, record: TaskRecord, stored: Future[None]) -> None:
        task = asyncio.get_running_loop().create_task(self._write(record, stored))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, record: TaskRecord, stored: Future[None]) -> None:
        while True:
            try:
                await self.backend.add_delayed(record)
                break
            except (BackendError, OSError) as exc:
                logger.warning("taskflow could not store delayed task %s: %s", record.task_id, exc)
                await asyncio.sleep(STORE_RETRY)
        if not stored.done():
            stored.set_result(None)
        if self.shared:
            self.acceptor.store.discard(record.task_id)  # the backend shows it from now on
        self._wake.set()

    def cancel_delayed(self, record: TaskRecord) -> None:
        """Cancel a delayed task before its time: its record turns ``cancelled`` and is written
        like any finished task. No instance starts it then: a shared backend's claim takes
        ``scheduled`` records only, and in memory the start below looks at the store first."""
        record.status = TaskStatus.CANCELLED
        record.end_time = utcnow()
        record.error = "cancelled before its time"
        self.acceptor.store.add(record)
        self.acceptor.bus.publish(EventKind.FINISHED, record)

    async def _start_delayed(self, record: TaskRecord) -> None:
        """Run a delayed task this instance claimed: saved as pending under this instance
        at once (so a kill from here on leaves a live record that the cluster takes over),
        then started like any task."""
        acceptor = self.acceptor
        known = acceptor.store.get(record.task_id)
        if known is not None and known.status is TaskStatus.CANCELLED:
            return  # cancelled before its time (in memory: the claim does not know)
        me = self.instance_id()
        definition = acceptor.registry.by_name(record.func_name)
        record.instance_id = me
        if definition is None or not record.rerunnable or record.args is None:
            record.status = TaskStatus.FAILED
            record.end_time = utcnow()
            record.error = f"not run: task {record.func_name!r} is not registered on instance {me}"
            acceptor.store.add(record)
            acceptor.bus.publish(EventKind.FINISHED, record)
            return
        record.status = TaskStatus.PENDING
        if self.shared and isinstance(acceptor.persistence.backend, HistoryBackend):
            try:
                await acceptor.persistence.backend.save([record])
            except (BackendError, OSError) as exc:  # the flusher writes it with the next write
                logger.warning(
                    "taskflow could not mark delayed task %s pending: %s", record.task_id, exc
                )
        args, kwargs = tuple(record.args), dict(record.kwargs or {})
        acceptor.store.add(record, CallSpec(definition.func, args, kwargs, keep=False))
        acceptor.bus.publish(EventKind.CREATED, record)
        acceptor.runner.spawn(record, definition, args, kwargs)
