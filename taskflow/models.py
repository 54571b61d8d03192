"""Plain task data: :class:`TaskStatus` and :class:`TaskRecord`. No I/O lives here."""

from __future__ import annotations

import itertools
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any


class TaskStatus(str, Enum):
    """Lifecycle of a task: ``pending -> running -> success | failed | interrupted | cancelled``
    (``pending -> cancelled`` too: a task cancelled before it started never starts); a delayed
    one-off task is ``scheduled`` until its time comes (then ``pending``)."""

    SCHEDULED = "scheduled"
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the terminal states, which never change again."""
        return self in TERMINAL_STATUSES


#: Statuses that never change again. The backends' SQL and Lua are built from these sets.
TERMINAL_STATUSES = frozenset(
    {TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.INTERRUPTED, TaskStatus.CANCELLED}
)
#: Statuses of a task some instance owns and runs (or will run): the cluster view's records.
LIVE_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING})
#: Statuses under which an idempotency key's task counts as taken (no second one runs); a
#: failed, interrupted or cancelled one is replaced, so the key runs again.
KEY_HOLDERS = LIVE_STATUSES | {TaskStatus.SUCCESS}


#: Most tags one task may carry (``add_task(..., tags={...})``).
MAX_TAGS = 16
#: Longest tag key and value (characters).
MAX_TAG_KEY, MAX_TAG_VALUE = 64, 200
#: What a tag key may be: letters, digits, ``_``, ``.``, ``-`` (never ``:``, which separates key
#: and value in ``tag=key:value`` filters).
TAG_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_tags(tags: Any) -> dict[str, str] | None:
    """``tags`` validated: a dict of at most :data:`MAX_TAGS` string keys (:data:`TAG_KEY`, at
    most :data:`MAX_TAG_KEY` characters) to non-empty string values (at most
    :data:`MAX_TAG_VALUE` characters, no control characters, valid UTF-8). ``None`` or ``{}``
    give ``None``; anything else raises ``ValueError`` saying what is wrong."""
    if tags is None:
        return None
    if not isinstance(tags, dict):
        raise ValueError(f"tags must be a dict of str to str, got {type(tags).__name__}")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags, got {len(tags)}")
    for key, value in tags.items():
        check_tag(key, value)
    return dict(tags) or None


def check_tag(key: Any, value: Any) -> None:
    """Raise ``ValueError`` unless ``key: value`` is a valid tag (see :func:`check_tags`)."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_TAG_KEY or not TAG_KEY.fullmatch(key):
        raise ValueError(
            f"tag key {str(key)[:80]!r} must be 1-{MAX_TAG_KEY} letters, digits, '_', '.' or '-'"
        )
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TAG_VALUE:
        raise ValueError(f"tag {key!r} must have a string value of 1-{MAX_TAG_VALUE} characters")
    if _CONTROL.search(value):
        raise ValueError(f"tag {key!r} has a control character in its value")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"tag {key!r} has a value that is not valid UTF-8") from None


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


_audit_sequence = itertools.count()


def _audit_id() -> str:
    """32 hex digits: 12 of the time in milliseconds (what orders entries and what trimming by
    age compares), 8 of a counter of this process (its entries of one millisecond keep their
    order), 12 random (entries of other processes never collide)."""
    sequence = next(_audit_sequence) & 0xFFFFFFFF
    return f"{time.time_ns() // 1_000_000:012x}{sequence:08x}{random.getrandbits(48):012x}"


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


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _logs(value: Any) -> list[dict[str, Any]] | None:
    """Stored log lines as written; anything else in their place (hand-edited) is ignored."""
    if not isinstance(value, list):
        return None
    return [line for line in value if isinstance(line, dict)] or None


def _tags(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str)} or None


def _progress(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    fraction = value.get("fraction")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
        fraction = None
    message = value.get("message")
    return {"fraction": fraction, "message": message if isinstance(message, str) else ""}


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
    #: Lines the task logged with ``task_log()`` (and captured ``logging`` records): dicts of
    #: ``at`` (epoch seconds), ``level``, ``message`` and optional ``fields``; the newest kept
    #: within the bounds of :mod:`taskflow.context`, ``None`` when it logged nothing.
    logs: list[dict[str, Any]] | None = None
    #: Log lines dropped (the oldest first) to keep ``logs`` within its bounds.
    logs_dropped: int = 0
    #: The task's last ``task_context().progress()``: ``fraction`` (0..1 or ``None``) and
    #: ``message``; ``None`` when it never reported any.
    progress: dict[str, Any] | None = None
    #: ``add_task(..., tags={"tenant": "acme"})``: string keys and values, indexed by every
    #: backend (``GET /tasks?tag=tenant:acme``); ``None`` without tags.
    tags: dict[str, str] | None = None
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

    def to_dict(self, *, include_args: bool = True, include_logs: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; times are ISO 8601 with a UTC offset. Without ``include_logs``
        the log lines are left out (``log_count`` still says how many there are)."""
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
            "tags": self.tags or {},
            "progress": self.progress,
            "log_count": len(self.logs) if self.logs else 0,
            "logs_dropped": self.logs_dropped,
            "schedule": self.schedule,
            "scheduled_for": _iso(self.scheduled_for),
        }
        if include_logs:
            data["logs"] = self.logs or []
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
            logs=_logs(data.get("logs")),
            logs_dropped=_count(data.get("logs_dropped")),
            progress=_progress(data.get("progress")),
            tags=_tags(data.get("tags")),
            schedule=_text(data.get("schedule")),
            scheduled_for=_parse_time(data.get("scheduled_for")),
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One state-changing admin action: who (``actor``: how the request authenticated, never
    a secret), from where (``client``: the client's address), what (``action``, and ``target``:
    what it touched), when, and on which instance. ``entry_id`` orders entries newest last (it
    begins with the time, as task ids do)."""

    entry_id: str
    at: datetime
    action: str
    actor: str
    client: str
    target: str
    instance_id: str

    @classmethod
    def new(
        cls, action: str, target: str, *, actor: str, client: str, instance_id: str
    ) -> AuditEntry:
        return cls(_audit_id(), utcnow(), action, actor, client, target, instance_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "at": self.at.isoformat(),
            "action": self.action,
            "actor": self.actor,
            "client": self.client,
            "target": self.target,
            "instance_id": self.instance_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEntry:
        """Inverse of :meth:`to_dict`; ``ValueError``, ``TypeError`` or ``KeyError`` on
        malformed data."""
        at = _parse_time(data["at"])
        if at is None:
            raise ValueError("an audit entry needs its time")
        return cls(
            str(data["entry_id"]),
            at,
            str(data["action"]),
            str(data.get("actor") or ""),
            str(data.get("client") or ""),
            str(data.get("target") or ""),
            str(data.get("instance_id") or ""),
        )
