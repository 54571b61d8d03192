"""Plain task data: :class:`TaskStatus` and :class:`TaskRecord`. No I/O lives here."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any


class TaskStatus(str, Enum):
    """Lifecycle of a task: ``pending -> running -> success | failed | interrupted``; a delayed
    one-off task is ``scheduled`` until its time comes (then ``pending``)."""

    SCHEDULED = "scheduled"
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        """True for the terminal states, which never change again."""
        return self in TERMINAL_STATUSES


#: Statuses that never change again. The backends' SQL and Lua are built from these sets.
TERMINAL_STATUSES = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.INTERRUPTED})
#: Statuses of a task some instance owns and runs (or will run): the cluster view's records.
LIVE_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING})
#: Statuses under which an idempotency key's task counts as taken (no second one runs); a
#: failed or interrupted one is replaced, so the key runs again.
KEY_HOLDERS = LIVE_STATUSES | {TaskStatus.SUCCESS}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def epoch(moment: datetime) -> float:
    """Epoch seconds of ``moment``; a naive datetime is taken as UTC, as queries do."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def new_task_id() -> str:
    """32 hex digits: a 48-bit millisecond timestamp, then 80 random bits.

    Ids sort by creation time, so B-tree indexes keyed by id (SQLite's primary key) append near
    the end instead of touching pages all over the file on every insert.
    """
    # random (reseeded in every forked child by the random module) rather than os.urandom:
    # ids need uniqueness, not secrecy, and a system call per task was measurable.
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(slots=True)
class TaskRecord:
    """One task's tracked state. Times are timezone-aware UTC datetimes."""

    task_id: str
    func_name: str
    status: TaskStatus = TaskStatus.PENDING
    created_at: datetime = field(default_factory=utcnow)
    start_time: datetime | None = None
    end_time: datetime | None = None
    attempts: int = 0
    error: str | None = None
    traceback: str | None = None
    instance_id: str = ""
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    retry_of: str | None = None
    idempotency_key: str | None = None
    #: ``args``/``kwargs`` hold the exact arguments, so another instance may run the task again.
    rerunnable: bool = False
    #: The arguments as stored when an argument key is set: encrypted, ``args``/``kwargs`` then
    #: stored as ``None``. Set on a record read back only when no key here could decrypt them.
    sealed_args: str | None = None
    #: This record is a late result of task ``late_of``: this instance ran it, but was declared
    #: gone meanwhile and another instance took the task over (see docs/operations.md).
    late_of: str | None = None
    #: The schedule this run belongs to (a periodic schedule's name), see docs/schedules.md.
    schedule: str | None = None
    #: When it was due: the tick of a periodic schedule, the ``run_at`` of a delayed one-off.
    scheduled_for: datetime | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from first start to end, or ``None`` while unfinished."""
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    @property
    def sort_time(self) -> datetime:
        """The time lists are ordered by, newest first: end time once finished, else creation."""
        return self.end_time or self.created_at

    def to_dict(self, *, include_args: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; times are ISO 8601 with a UTC offset."""
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "func_name": self.func_name,
            "status": self.status.value,
            "created_at": _iso(self.created_at),
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
            "duration": self.duration,
            "attempts": self.attempts,
            "error": self.error,
            "traceback": self.traceback,
            "instance_id": self.instance_id,
            "retry_of": self.retry_of,
            "idempotency_key": self.idempotency_key,
            "rerunnable": self.rerunnable,
            "late_of": self.late_of,
            "schedule": self.schedule,
            "scheduled_for": _iso(self.scheduled_for),
        }
        if include_args:
            data["args"] = self.args
            data["kwargs"] = self.kwargs
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        """Inverse of :meth:`to_dict`. Raises ``ValueError``, ``TypeError``, ``KeyError`` or
        ``OverflowError`` on malformed data."""
        created = _parse_time(data.get("created_at"))
        args = data.get("args")
        kwargs = data.get("kwargs")
        return cls(
            task_id=str(data["task_id"]),
            func_name=str(data["func_name"]),
            status=TaskStatus(data["status"]),
            created_at=created or utcnow(),
            start_time=_parse_time(data.get("start_time")),
            end_time=_parse_time(data.get("end_time")),
            attempts=int(data.get("attempts") or 0),
            error=_text(data.get("error")),
            traceback=_text(data.get("traceback")),
            instance_id=str(data.get("instance_id") or ""),
            args=list(args) if isinstance(args, list) else None,
            kwargs=dict(kwargs) if isinstance(kwargs, dict) else None,
            retry_of=_text(data.get("retry_of")),
            idempotency_key=_text(data.get("idempotency_key")),
            rerunnable=bool(data.get("rerunnable")),
            sealed_args=_text(data.get("sealed_args")),
            late_of=_text(data.get("late_of")),
            schedule=_text(data.get("schedule")),
            scheduled_for=_parse_time(data.get("scheduled_for")),
        )
