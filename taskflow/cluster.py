"""The cluster: every instance pointed at one backend, and the tasks that outlive an instance.

* Identity: each instance has an id (``host-pid`` by default), stored on its records.
* Membership: :class:`ClusterMonitor` heartbeats into the backend's instance registry and claims
  the live records of instances that stopped heartbeating (SIGKILL, OOM kill, lost host) or that
  were parked for requeue at a clean shutdown, each record for exactly one survivor.
* Takeover: :class:`Takeover` runs a claimed task again (queued, or ``requeue_on_interrupt``)
  or finishes it as interrupted; :func:`park` leaves an unstarted task for the next instance.
* Idempotency keys: one task id per key, claimed atomically in the backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta

from taskflow.backends.base import BackendError, ClusterBackend, InstanceInfo
from taskflow.events import EventBus, EventKind
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.persistence.store import CallSpec, TaskStore
from taskflow.runner import Runner
from taskflow.tasks import TaskRegistry

logger = logging.getLogger("taskflow.cluster")

_default_id: str | None = None


def _forget_default_id() -> None:
    global _default_id
    _default_id = None


# Forks (gunicorn workers) are other processes: they work out their own id. Caching it saves a
# getpid() system call per enqueued task.
os.register_at_fork(after_in_child=_forget_default_id)


def default_instance_id() -> str:
    """``host-pid`` of the current process (cached; a forked child works out its own)."""
    global _default_id
    if _default_id is None:
        _default_id = f"{socket.gethostname()}-{os.getpid()}"
    return _default_id


#: Owner of the records queued for requeue at a clean shutdown (any instance may claim them).
QUEUE_OWNER = ""

#: Seconds between two heartbeats of an instance (TaskManager's ``heartbeat_interval``). A round
#: costs one write and one to three short reads on the backend (measured in
#: docs/multi-instance.md, "Reclaim"): about a millisecond on SQLite, less on Redis.
DEFAULT_HEARTBEAT_INTERVAL = 1.0
#: Seconds of silence after which an instance is lost (``instance_expiry``): its live tasks are
#: claimed between ``expiry - interval`` and ``expiry + interval`` after it stopped, so within
#: about 5 s of a SIGKILL. Four heartbeats in a row must go missing, which an event loop blocked
#: for a moment or a busy backend does not do; a longer stall is what late results are for.
DEFAULT_INSTANCE_EXPIRY = 4.0

#: Longest registering may hold up startup (seconds); a backend that does not answer is retried
#: by the heartbeat loop.
REGISTER_TIMEOUT = 5.0
#: Longest leaving the registry may take at shutdown (seconds): a hung backend must not hold up
#: the final flush; the survivors expire this instance instead.
DEREGISTER_TIMEOUT = 2.0

#: Called with claimed records and the owner they were taken from.
ClaimHandler = Callable[[list[TaskRecord], str], None]


class ClusterMonitor:
    """One instance's membership of the cluster.

    Every ``heartbeat_interval`` seconds: refresh this instance's heartbeat, expire instances
    silent for ``expiry`` seconds, and claim the live records of owners that are not registered
    (expired or never deregistered) plus the unowned queue. Claims are atomic per record in the
    backend, so each record goes to exactly one survivor, which decides (``on_claimed``) whether
    to run it again or mark it interrupted.
    """

    def __init__(
        self,
        backend: ClusterBackend,
        instance_id: Callable[[], str],
        on_claimed: ClaimHandler,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        expiry: float = DEFAULT_INSTANCE_EXPIRY,
    ) -> None:
        if heartbeat_interval <= 0 or expiry <= heartbeat_interval:
            raise ValueError("need heartbeat_interval > 0 and expiry > heartbeat_interval")
        self.backend = backend
        self.instance_id = instance_id
        self.on_claimed = on_claimed
        self.heartbeat_interval = heartbeat_interval
        self.expiry = expiry
        self.claimed_total = 0
        self._started_at = utcnow()
        self._last_beat: float | None = None
        #: Since when (monotonic) this instance's heartbeats have gone through without a gap.
        self._seeing_since: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register, take back what a previous process with this instance id left running,
        and start the heartbeat loop."""
        self._started_at = utcnow()
        self._last_beat = self._seeing_since = None
        try:
            await asyncio.wait_for(self._register(), REGISTER_TIMEOUT)
        except Exception as exc:  # the app starts anyway; the heartbeat loop tries again
            logger.warning("taskflow cluster registration failed: %r; retrying", exc)
        self._task = asyncio.create_task(self._loop(), name="taskflow-heartbeat")

    async def _register(self) -> None:
        await self._heartbeat()
        # Nothing runs here yet: live records already owned by this id were left by an
        # earlier process with the same id (same host name and pid after a restart).
        me = self.instance_id()
        self._hand_over(await self.backend.claim_live(me, me), me)
        await self.tick()

    async def stop(self) -> None:
        """Stop heartbeating and leave the registry (best effort: the backend may be down)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2.0)
            self._task = None
        try:
            await asyncio.wait_for(self.backend.deregister(self.instance_id()), DEREGISTER_TIMEOUT)
        except Exception as exc:  # a shutdown must go on to the final flush whatever this does
            logger.warning("taskflow could not deregister %s: %s", self.instance_id(), exc)

    async def tick(self) -> int:
        """One round: heartbeat, expire, claim. Returns how many records were claimed.

        Others are expired only once this instance's own heartbeats have gone through without
        a gap for ``expiry`` seconds: after a stall of the backend that every instance shared
        (a held lock, a paused server, a cut that healed), nobody could heartbeat, and whoever
        beats first must not declare the others gone for a silence that was the backend's.
        """
        await self._heartbeat()
        if not self._seen_long_enough():
            expired: list[str] = []
        else:
            cutoff = utcnow() - timedelta(seconds=self.expiry)
            expired = await self.backend.expire_instances(cutoff)
        for instance in expired:
            logger.warning(
                "taskflow instance %s sent no heartbeat for %.0fs: claiming its tasks",
                instance,
                self.expiry,
            )
        me = self.instance_id()
        registered = {info.instance_id for info in await self.backend.instances()}
        orphaned = await self.backend.live_owners() - registered - {me}
        claimed = 0
        for owner in sorted(orphaned):
            records = await self.backend.claim_live(owner, me)
            claimed += len(records)
            self._hand_over(records, owner)
        return claimed

    def _seen_long_enough(self) -> bool:
        since = self._seeing_since
        return since is not None and time.monotonic() - since >= self.expiry

    def _hand_over(self, records: list[TaskRecord], owner: str) -> None:
        if records:
            self.claimed_total += len(records)
            self.on_claimed(records, owner)

    async def _heartbeat(self) -> None:
        info = InstanceInfo(
            self.instance_id(), socket.gethostname(), os.getpid(), self._started_at, utcnow()
        )
        await self.backend.heartbeat(info)
        now = time.monotonic()
        gap = None if self._last_beat is None else now - self._last_beat
        if self._seeing_since is None or (gap is not None and gap > 2 * self.heartbeat_interval):
            self._seeing_since = now  # a heartbeat went missing: this instance was blind
        if self._last_beat is not None and now - self._last_beat > self.expiry:
            logger.warning(
                "taskflow instance %s sent no heartbeat for %.0fs (instance_expiry %.0fs): "
                "the cluster may have declared it gone and given its tasks to other instances; "
                "its results of such tasks are kept as late results (late_of)",
                info.instance_id,
                now - self._last_beat,
                self.expiry,
            )
        self._last_beat = now

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.tick()
            except (BackendError, OSError) as exc:
                logger.debug("taskflow heartbeat failed: %s", exc)
            except Exception:  # a bug here must not end heartbeats (others would claim our work)
                logger.exception("taskflow heartbeat round failed")


class Takeover:
    """What this instance does with the records it claimed from ``owner`` (a lost instance, or
    the queue of tasks parked at a clean shutdown).

    Queued tasks, and tasks declared ``requeue_on_interrupt``, run here again with their stored
    arguments, under their own id (exactly once: each was claimed by one instance); the rest
    are finished as ``interrupted`` with the reason. Either way this instance becomes the
    owner, so a late copy from the former one cannot replace its verdict (see
    :meth:`~taskflow.backends.base.HistoryBackend.save`).
    """

    def __init__(
        self,
        registry: TaskRegistry,
        store: TaskStore,
        bus: EventBus,
        runner: Runner,
        instance_id: Callable[[], str],
    ) -> None:
        self.registry = registry
        self.store = store
        self.bus = bus
        self.runner = runner
        self.instance_id = instance_id

    def __call__(self, records: list[TaskRecord], owner: str) -> None:
        for record in records:
            definition = self.registry.by_name(record.func_name)
            wanted = owner == QUEUE_OWNER or (definition and definition.requeue_on_interrupt)
            rerunnable = record.rerunnable and record.args is not None
            if definition is not None and wanted and rerunnable:
                self._rerun(record, definition.func)
                continue
            if owner == QUEUE_OWNER:
                why = "it was queued at shutdown but its arguments or function are not known here"
            elif owner == self.instance_id():
                why = f"instance {owner} restarted: its previous process stopped while it ran"
            else:
                why = f"instance {owner} was lost (no heartbeat)"
            record.status = TaskStatus.INTERRUPTED
            record.end_time = utcnow()
            record.error = f"interrupted: {why}"
            record.instance_id = self.instance_id()
            self.bus.publish(EventKind.FINISHED, record)
        if not records:
            return
        if owner == self.instance_id():
            # Registering under an id whose live records are still there: an earlier process
            # with this id (the same container or pod, restarted) stopped without draining.
            logger.warning(
                "taskflow instance %s took back %d tasks that its previous process left "
                "unfinished (it stopped without draining: killed or crashed)",
                owner,
                len(records),
            )
        else:
            logger.warning(
                "taskflow took over %d tasks from %s", len(records), owner or "the queue"
            )

    def _rerun(self, record: TaskRecord, func: Callable[..., object]) -> None:
        args, kwargs = tuple(record.args or ()), dict(record.kwargs or {})
        record.status = TaskStatus.PENDING
        record.instance_id = self.instance_id()
        record.start_time = record.end_time = None
        record.error = record.traceback = None
        # Its stored arguments are exact: the record holds them, the call need not stay.
        self.store.add(record, CallSpec(func, args, kwargs, keep=False))
        self.bus.publish(EventKind.CREATED, record)
        self.runner.spawn(record, self.registry.for_func(func), args, kwargs)


def park(record: TaskRecord) -> bool:
    """At a clean shutdown, leave a task that never started for the next instance: True when
    parked (its arguments are stored exactly). The caller writes it, under the queue owner,
    where any instance claims it."""
    if not (record.rerunnable and record.args is not None):
        return False
    record.instance_id = QUEUE_OWNER
    return True


def idempotent_task_id(key: str) -> str:
    """The task id every instance derives from one idempotency key (32 hex digits)."""
    return hashlib.sha256(f"taskflow-idempotency:{key}".encode()).hexdigest()[:32]


async def claim_key(backend: ClusterBackend, record: TaskRecord) -> bool:
    """Claim an idempotent task's id cluster-wide: True when this record was stored as the
    key's task, False when another task holds the key. A backend error runs it here (logged):
    a task is better run twice than never."""
    try:
        holder = await backend.claim_new(record)
    except BackendError as exc:
        logger.warning(
            "taskflow could not check idempotency key %r (%s); running it here",
            record.idempotency_key,
            exc,
        )
        return True
    return holder is None
