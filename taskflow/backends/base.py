"""The two contracts a backend fulfils: history (what every backend must do) and cluster.

:class:`HistoryBackend` stores and reads task records: enough for persistence, restarts and
the shared history. :class:`ClusterBackend` adds what several instances need to work as one
cluster: the instance registry and heartbeats, claims of a lost instance's live records,
idempotency keys, and logouts seen everywhere. A backend that implements only the history
works; the manager then turns the cluster features off and says so once in its log.
:class:`ScheduleBackend` claims the ticks of periodic schedules and keeps delayed tasks.
:class:`SnapshotBackend` is all three, as the kit's backends are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from taskflow.backends.codec import RecordCodec
from taskflow.models import AuditEntry, TaskRecord
from taskflow.query import Page, Selection, TaskQuery

#: Audit entries older than this are removed by the backend as new ones arrive (seconds).
AUDIT_KEEP_SECONDS = 90 * 24 * 3600
#: Most audit entries a backend keeps (the oldest go first).
AUDIT_KEEP_ENTRIES = 100_000

#: Seconds a cancellation request is kept in the backend: the instance running the task reads
#: it within a second; the rest of the time covers an instance that was briefly cut off.
CANCEL_REQUEST_TTL = 3600.0
#: Most cancellation requests one :meth:`ClusterBackend.cancel_requests` call returns.
CANCEL_BATCH = 1000


class BackendError(RuntimeError):
    """The backend could not be reached or answered with something it should not have."""


@dataclass(slots=True)
class InstanceInfo:
    """One running instance as registered in the backend."""

    instance_id: str
    host: str
    pid: int
    started_at: datetime
    last_heartbeat: datetime


@dataclass(slots=True)
class HistoryCounts:
    """Totals over everything stored: by status and by function name."""

    by_status: dict[str, int] = field(default_factory=dict)
    by_func: dict[str, int] = field(default_factory=dict)


class HistoryBackend(ABC):
    """Shared store of task records, used by every instance that points at it.

    Implementations are used from one event loop per process; every method is a coroutine and
    never blocks the loop. Connections are opened in :meth:`open` (inside the server's lifespan,
    after any fork), never in ``__init__``.
    """

    #: Short name shown in logs and metrics ("sqlite", "redis").
    kind: str = "backend"
    #: Encodes every record written and decodes every record read (see :mod:`codec`); the
    #: manager replaces it to encrypt stored arguments. Set it before :meth:`open`.
    codec: RecordCodec

    async def open(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Connect and prepare storage (schema, indexes). Idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release connections. Idempotent; the backend may be opened again afterwards."""

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, for log lines (never includes a password)."""

    @abstractmethod
    def clone(self) -> HistoryBackend:
        """A new, unopened backend on the same store (used for calls from another event loop)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`BackendError` unless the store answers right now."""

    @abstractmethod
    async def save(self, records: Sequence[TaskRecord]) -> list[str]:
        """Upsert ``records`` by task id, encoded with :attr:`codec`; return the ids refused
        because another instance took them over.

        Each record is stored together with all its index entries atomically; when it raises,
        some records of the batch may be stored and others not, and saving the batch again is
        harmless (idempotent). A record never moves from a terminal status back to a live one:
        a stale live copy does not overwrite a finished record. A stored record whose owner
        (``instance_id``) is not the owner of the copy being saved is not replaced and its id
        is returned: :meth:`claim_live` moved it to another instance, and this copy is a late
        result of the former owner (the owner ``""``, parking a task for requeue, is the one
        exception; a backend without claims refuses nothing). Nothing is written when a key
        the write needs holds data of another kind.
        """

    @abstractmethod
    async def get(self, task_id: str) -> TaskRecord | None:
        """The stored record with this id, or ``None``; raises
        :class:`~taskflow.backends.codec.UnreadableRecord` when one is stored but cannot be
        decoded."""

    @abstractmethod
    async def query(self, query: TaskQuery) -> Page:
        """Records matching ``query``, newest sort time first (ties by task id, descending).
        Records that cannot be decoded are skipped (and counted by :attr:`codec`); the page
        still holds ``limit`` records when that many readable ones match.

        Pages are stable: following ``next_cursor`` never repeats or skips a record that was
        stored before the first page was read.
        """

    @abstractmethod
    async def load_recent(self, limit: int) -> list[TaskRecord]:
        """The ``limit`` newest records, newest first (used to warm memory at startup)."""

    @abstractmethod
    async def prune(self, *, older_than: datetime | None, keep: int | None) -> int:
        """Delete finished records older than ``older_than`` and beyond the newest ``keep``.

        Records and their index entries go together. Returns how many records were removed.
        """

    @abstractmethod
    async def counts(self) -> HistoryCounts:
        """Record counts by status and by function over everything stored."""

    @abstractmethod
    async def count_selected(self, selection: Selection) -> int:
        """How many stored records ``selection`` matches (a read; finished records only)."""

    @abstractmethod
    async def purge(self, selection: Selection, limit: int) -> int:
        """Delete up to ``limit`` stored records that ``selection`` matches, oldest sort time
        first, and return how many were deleted.

        Only finished records are ever deleted, whatever the selection says: a live record
        stays. Each record goes with all its index entries atomically (in chunks: when it
        raises, some records may be deleted and others not, and purging again is harmless).
        """

    @abstractmethod
    async def append_audit(self, entry: AuditEntry) -> None:
        """Store ``entry`` in the audit trail every instance on the store shares, and remove
        entries older than :data:`AUDIT_KEEP_SECONDS` or beyond the newest
        :data:`AUDIT_KEEP_ENTRIES` (so it stays bounded). Idempotent by ``entry_id``; once it
        returns, :meth:`audit_entries` lists the entry on every instance."""

    @abstractmethod
    async def audit_entries(self, limit: int, before: str | None = None) -> list[AuditEntry]:
        """Up to ``limit`` audit entries, newest first (``entry_id`` descending), only those
        whose ``entry_id`` sorts before ``before`` when given (the next page). Entries that
        cannot be decoded are skipped."""


class ClusterBackend(ABC):
    """What several instances on one store need to work as one cluster: the instance registry
    and heartbeats, claims of live records (a lost instance's tasks go to exactly one survivor),
    idempotency keys, and logouts every instance sees. Every method is atomic where it says so,
    never a read followed by a write."""

    # -- instances, ownership of live records, idempotency ------------------------------------

    @abstractmethod
    async def heartbeat(self, info: InstanceInfo) -> None:
        """Register the instance, or refresh its ``last_heartbeat`` (an upsert)."""

    @abstractmethod
    async def deregister(self, instance_id: str) -> None:
        """Remove the instance from the registry (a clean shutdown). Idempotent."""

    @abstractmethod
    async def instances(self) -> list[InstanceInfo]:
        """Every registered instance, expired or not."""

    @abstractmethod
    async def expire_instances(self, heartbeat_before: datetime) -> list[str]:
        """Remove instances whose last heartbeat is older than ``heartbeat_before``.

        Atomic: when several instances call this at once, each expired id is returned to
        exactly one of them.
        """

    @abstractmethod
    async def live_owners(self) -> set[str]:
        """Instance ids that own at least one live (pending or running) record.

        ``""`` stands for the unowned queue (tasks persisted for requeue at a clean shutdown).
        """

    @abstractmethod
    async def claim_live(
        self, owner: str, new_owner: str, limit: int | None = None
    ) -> list[TaskRecord]:
        """Move up to ``limit`` live records owned by ``owner`` to ``new_owner`` and return them.

        Atomic per record and exclusive: when several callers claim from the same owner at
        once, each record is returned to exactly one of them. Records are returned as stored
        (their ``instance_id`` still names the old owner); the caller saves their new state.
        """

    @abstractmethod
    async def claim_new(self, record: TaskRecord) -> TaskRecord | None:
        """Store ``record`` unless a record with its id is pending, running or succeeded.

        Returns that existing record instead (and stores nothing), or ``None`` when ``record``
        was stored. The check and the write are one atomic operation, so of several callers
        with the same id at once exactly one gets ``None``.
        """

    # -- cancellation requests, read by whichever instance runs the task --------------------

    @abstractmethod
    async def request_cancel(self, task_id: str) -> None:
        """Ask for task ``task_id`` to be cancelled by the instance that runs it.

        Appends to an ordered log of requests that every instance reads with
        :meth:`cancel_requests`; requests older than :data:`CANCEL_REQUEST_TTL` are removed by
        the backend (a TTL, a trimmed stream or pruned on the next request), so the log stays
        bounded. Not idempotent: asking twice appends twice (harmless to readers).
        """

    @abstractmethod
    async def cancel_requests(self, after: str | None) -> tuple[list[str], str]:
        """Task ids whose cancellation was requested after position ``after``, oldest first
        (at most :data:`CANCEL_BATCH`), and the position to read on from.

        ``after=None`` returns no ids, only the current position: a reader starts from "now".
        Positions are opaque strings of this backend, ordered; a reader that keeps passing the
        position it got back sees every request once, in order, unless it fell more than
        :data:`CANCEL_REQUEST_TTL` behind.
        """

    # -- dashboard sessions ended by a logout, shared so that every instance refuses them -----

    @abstractmethod
    async def revoke_session(self, session_id: str, expires_at: datetime) -> None:
        """Record that the login session ``session_id`` was ended, until ``expires_at`` (the
        moment it would have expired anyway; nothing is stored when that has passed).

        Idempotent. Once it returns, :meth:`session_revoked` answers True for this id on every
        instance that shares the store, until ``expires_at``. Entries past ``expires_at`` are
        removed by the backend itself (a TTL, or pruned on the next revocation), so the storage
        stays bounded by the logouts of one session lifetime.
        """

    @abstractmethod
    async def session_revoked(self, session_id: str) -> bool:
        """True when ``session_id`` was revoked and its ``expires_at`` has not passed (a read)."""


@dataclass(slots=True)
class ScheduleState:
    """What the store knows of one periodic schedule: its last claimed tick and whether it is
    paused. A schedule never claimed nor paused has no state."""

    name: str
    #: The newest tick claimed (its scheduled time, UTC), or ``None``.
    last_tick: datetime | None = None
    #: The task id of the run started for :attr:`last_tick`.
    last_task_id: str | None = None
    paused: bool = False


class ScheduleBackend(ABC):
    """What scheduled tasks need from a store shared by several instances: periodic ticks
    claimed exactly once across the cluster, the paused state of each schedule, and delayed
    one-off tasks that any instance runs when their time comes (see docs/schedules.md).

    A history-only backend need not implement it: each instance then schedules for itself
    (in memory), as without a backend.
    """

    @abstractmethod
    async def claim_tick(self, name: str, tick: datetime, run: TaskRecord) -> bool:
        """Claim tick ``tick`` (its scheduled time) of schedule ``name`` for ``run``, the
        record of the task that runs it (pending, owned by the caller): True for exactly one
        caller.

        Atomic and monotonic: when several callers claim the same tick at once, exactly one
        gets True; a tick at or before the newest one claimed is never claimed again (so a host
        whose clock lags cannot run a tick a second time); nothing is claimed while the
        schedule is paused. On True, ``run`` is stored with the claim (in the same transaction
        where the store has them; Redis saves it right after), so a claimer killed before the
        task starts leaves a live record that the cluster takes over, never a silent gap; its
        id becomes the schedule's ``last_task_id``.
        """

    @abstractmethod
    async def schedule_states(self) -> dict[str, ScheduleState]:
        """Every schedule with a stored state (claimed at least once, or paused), by name."""

    @abstractmethod
    async def set_paused(self, name: str, paused: bool) -> None:
        """Pause or resume schedule ``name`` for every instance (idempotent). A paused
        schedule's ticks are not claimed; its last tick stays as it was."""

    @abstractmethod
    async def add_delayed(self, record: TaskRecord) -> None:
        """Store ``record`` (status ``scheduled``, due at ``record.scheduled_for``, its
        arguments exact) in the history, and in the queue of delayed tasks.

        The record is visible to reads at once. The record's owner is the instance that
        accepted it, but any instance may claim it with :meth:`claim_due`. Idempotent by task
        id (adding it again replaces its time)."""

    @abstractmethod
    async def next_due(self) -> datetime | None:
        """When the earliest delayed task is due (a read), or ``None`` when none waits."""

    @abstractmethod
    async def claim_due(self, now: datetime, new_owner: str, limit: int) -> list[TaskRecord]:
        """Take up to ``limit`` delayed tasks due at or before ``now`` out of the queue, make
        ``new_owner`` their stored owner, and return them (as stored, status ``scheduled``).

        Atomic and exclusive: when several callers claim at once, each delayed task is
        returned to exactly one of them. The caller saves their new state (``pending``)."""


def cluster_part(backend: object) -> ClusterBackend | None:
    """``backend`` when it implements the cluster contract too, else ``None``."""
    return backend if isinstance(backend, ClusterBackend) else None


def schedule_part(backend: object) -> ScheduleBackend | None:
    """``backend`` when it implements the schedule contract too, else ``None``."""
    return backend if isinstance(backend, ScheduleBackend) else None


class SnapshotBackend(HistoryBackend, ClusterBackend, ScheduleBackend):
    """A backend of every contract: the history, the cluster and the schedules (the kit's
    SQLite, Redis and PostgreSQL backends)."""

    @abstractmethod
    def clone(self) -> SnapshotBackend:
        """A new, unopened backend on the same store (both contracts)."""
