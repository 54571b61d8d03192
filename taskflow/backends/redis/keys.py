"""Where the Redis backend keeps things: every key name, derived from one prefix.

Every key starts with the prefix wrapped in a hash tag, ``{taskflow}:...``: in Redis Cluster all
keys then live in one slot, so the Lua scripts may update any of them in one atomic call.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskflow.models import TaskStatus

#: Prefix used when none is given; instances sharing a prefix share the history.
DEFAULT_PREFIX = "taskflow"

#: Hash per record, ``task:<id>``: ``data`` (JSON of ``to_dict()``, the source of truth) plus
#: ``status``, ``func_name``, ``owner`` and ``sort_ts``, which the scripts read to maintain the
#: indexes (and the tests, to check them).
TASK = "task:"
#: Sorted set per status, ``idx:status:<status>``, scored by sort time (epoch seconds).
IDX_STATUS = "idx:status:"
#: Sorted set per status and function, ``idx:sf:<status>:<func_name>``: both filters, one range.
#: These two kinds are the only indexes, so a save writes two sorted-set entries per record: a
#: listing of one function merges its few ``idx:sf:*`` sets, the unfiltered listing the status
#: sets, and retention walks the finished statuses' sets (layout 2; layout 1 also kept sets of
#: all records, of finished ones and per function: 30% of a large save's script time).
IDX_STATUS_FUNC = "idx:sf:"
#: Sorted set per tag, ``idx:tag:<key>:<value>``, scored by sort time: the records carrying it
#: (maintained by the save and prune scripts; a record's tags are in its hash's ``tags`` field,
#: one ``key:value`` per line).
IDX_TAG = "idx:tag:"
#: What layout 1 had besides: removed when a backend opens on such data.
LAYOUT1_ALL, LAYOUT1_DONE, LAYOUT1_FUNC = "idx:all", "idx:done", "idx:func:"
#: Set of the function names that have records, so counts and retention find ``idx:func:*``.
FUNCS = "funcs"
#: Set per owner instance, ``live:<instance_id>``: ids of its live (pending, running) records.
#: The owner ``""`` is the unowned queue of tasks persisted for requeue at a clean shutdown.
LIVE = "live:"
#: Set of the instance ids that own live records (what ``live_owners()`` lists).
OWNERS = "owners"
#: Hash of registered instances: instance id -> JSON (host, pid, started_at).
INSTANCES = "instances"
#: Sorted set of registered instance ids scored by their last heartbeat (epoch seconds).
HEARTBEATS = "heartbeats"
#: Hash per periodic schedule, ``sched:<name>``: ``last_tick`` (epoch seconds of the newest
#: claimed tick), ``last_task_id`` and ``paused`` ("1" or "0").
SCHED = "sched:"
#: Set of the schedule names that have a ``sched:`` hash (what ``schedule_states()`` reads).
SCHEDULES = "schedules"
#: Sorted set of the delayed tasks' ids scored by when each is due (epoch seconds); their
#: records are ordinary ``task:`` hashes with status ``scheduled``.
DELAYED = "delayed"
#: String per dashboard session ended by a logout, ``revoked:<session id>``, with a TTL that
#: ends when the session would have expired anyway: Redis drops it itself, nothing prunes.
REVOKED = "revoked:"
#: Stream of cancellation requests (field ``task``): every instance reads it from its own
#: position; trimmed to about :data:`CANCEL_STREAM_MAXLEN` entries on each request.
CANCELS = "cancels"
#: Entries the cancellation stream keeps at least (``XADD ... MAXLEN ~``): far more than arrive
#: within CANCEL_REQUEST_TTL in any deployment we know, and a few hundred KiB at most.
CANCEL_STREAM_MAXLEN = 10_000
#: Sorted set of the audit trail, every member scored 0 and ordered by its text:
#: ``<entry id>|<JSON>``, so entry ids (which begin with the time) order it, a page is one
#: ZRANGE BYLEX, and trimming by age is one ZREMRANGEBYLEX up to the cut-off time's id prefix.
AUDIT = "audit"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """The key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "{}*?[] \t\r\n"):
            raise ValueError(
                f"Redis key prefix {self.prefix!r} must be non-empty, without braces, "
                "glob characters or whitespace"
            )

    @property
    def base(self) -> str:
        """What every key starts with: the hash-tagged prefix, ``{taskflow}:``."""
        return f"{{{self.prefix}}}:"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of this prefix."""
        return self.base + "*"

    def task(self, task_id: str) -> str:
        return self.base + TASK + task_id

    def index(self, status: TaskStatus, func_name: str | None = None) -> str:
        """The sorted set listing records with this status (and function)."""
        if func_name is not None:
            return f"{self.base}{IDX_STATUS_FUNC}{status.value}:{func_name}"
        return self.base + IDX_STATUS + status.value

    def indexes(self, status: TaskStatus | None = None, func_name: str | None = None) -> list[str]:
        """The sorted sets whose union lists the records with these filters."""
        statuses = list(TaskStatus) if status is None else [status]
        return [self.index(s, func_name) for s in statuses]

    def tag(self, key: str, value: str) -> str:
        """The sorted set of the records tagged ``key: value``."""
        return f"{self.base}{IDX_TAG}{key}:{value}"

    @property
    def tag_prefix(self) -> str:
        return self.base + IDX_TAG

    def finished_indexes(self) -> list[str]:
        """The status sets of the finished records (what retention walks)."""
        return [self.index(s) for s in TaskStatus if s.finished]

    @property
    def funcs(self) -> str:
        return self.base + FUNCS

    def live(self, owner: str) -> str:
        return self.base + LIVE + owner

    @property
    def owners(self) -> str:
        return self.base + OWNERS

    @property
    def instances(self) -> str:
        return self.base + INSTANCES

    @property
    def heartbeats(self) -> str:
        return self.base + HEARTBEATS

    @property
    def audit(self) -> str:
        return self.base + AUDIT

    def schedule(self, name: str) -> str:
        return self.base + SCHED + name

    @property
    def schedules(self) -> str:
        return self.base + SCHEDULES

    @property
    def delayed(self) -> str:
        return self.base + DELAYED

    def revoked(self, session_id: str) -> str:
        return self.base + REVOKED + session_id

    @property
    def cancels(self) -> str:
        return self.base + CANCELS

    @property
    def script_keys(self) -> list[str]:
        """KEYS of the write scripts: the function set and the owners set."""
        return [self.funcs, self.owners]

    @property
    def script_prefixes(self) -> list[str]:
        """First ARGV of the write scripts: prefixes of the record hashes, the two index kinds
        and the live sets.

        The scripts build per-record and per-value key names from these, so this module stays
        the only place that knows the layout.
        """
        return [self.base + p for p in (TASK, IDX_STATUS, IDX_STATUS_FUNC, LIVE)]

    def layout1_keys(self, funcs: list[str]) -> list[str]:
        """Layout 1's extra indexes for these function names."""
        return [
            self.base + LAYOUT1_ALL,
            self.base + LAYOUT1_DONE,
            *(self.base + LAYOUT1_FUNC + name for name in funcs),
        ]
