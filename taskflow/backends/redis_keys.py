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
#: ``status``, ``func_name`` and ``sort_ts``, which the scripts read to maintain the indexes.
TASK = "task:"
#: Sorted set of every record id scored by sort time (epoch seconds): the unfiltered listing.
IDX_ALL = "idx:all"
#: Sorted set of finished record ids only, scored by sort time: what retention walks, oldest first.
IDX_DONE = "idx:done"
#: Sorted set per status, ``idx:status:<status>``.
IDX_STATUS = "idx:status:"
#: Sorted set per function, ``idx:func:<func_name>``.
IDX_FUNC = "idx:func:"
#: Sorted set per status and function, ``idx:sf:<status>:<func_name>``: both filters, one range.
IDX_STATUS_FUNC = "idx:sf:"
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

    def index(self, status: TaskStatus | None = None, func_name: str | None = None) -> str:
        """The one sorted set listing records with this status and/or function."""
        if status is not None and func_name is not None:
            return f"{self.base}{IDX_STATUS_FUNC}{status.value}:{func_name}"
        if status is not None:
            return self.base + IDX_STATUS + status.value
        if func_name is not None:
            return self.base + IDX_FUNC + func_name
        return self.base + IDX_ALL

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
    def save_keys(self) -> list[str]:
        """KEYS of the save script: :attr:`script_keys` and the owners set."""
        return [*self.script_keys, self.owners]

    @property
    def save_prefixes(self) -> list[str]:
        """First ARGV of the save script: :attr:`script_prefixes` and the live-set prefix."""
        return [*self.script_prefixes, self.base + LIVE]

    @property
    def script_keys(self) -> list[str]:
        """KEYS of the write scripts: the all and finished indexes and the function set."""
        return [self.base + IDX_ALL, self.base + IDX_DONE, self.base + FUNCS]

    @property
    def script_prefixes(self) -> list[str]:
        """First ARGV of the scripts: prefixes of the record hashes and the per-value indexes.

        The scripts build per-record and per-value key names from these, so this module stays
        the only place that knows the layout.
        """
        return [self.base + p for p in (TASK, IDX_STATUS, IDX_FUNC, IDX_STATUS_FUNC)]
