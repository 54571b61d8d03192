"""Plain task data: :class:`TaskStatus` and :class:`TaskRecord`. No I/O lives here."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

#: Longest ``repr`` kept for an argument that is not JSON-serialisable.
MAX_REPR_CHARS = 200
#: Longest JSON text kept for all arguments of one task; larger argument sets are replaced.
MAX_ARGS_JSON_CHARS = 8_192


class TaskStatus(str, Enum):
    """Lifecycle of a task: ``pending -> running -> success | failed | interrupted``."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        """True for the terminal states, which never change again."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.INTERRUPTED})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_task_id() -> str:
    """32 hex digits: a 48-bit millisecond timestamp, then 80 random bits.

    Ids sort by creation time, so B-tree indexes keyed by id (SQLite's primary key) append near
    the end instead of touching pages all over the file on every insert.
    """
    # random (reseeded in every forked child by the random module) rather than os.urandom:
    # ids need uniqueness, not secrecy, and a system call per task was measurable.
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}"


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
        return text if len(text) <= MAX_REPR_CHARS else text[: MAX_REPR_CHARS - 3] + "..."
    return value


def exact_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """True when the arguments survive a JSON round trip unchanged (they can be stored to run
    the task again elsewhere)."""
    try:
        return bool(json.loads(json.dumps([list(args), kwargs])) == [list(args), kwargs])
    except (TypeError, ValueError):
        return False


def safe_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Arguments made JSON-safe: values that are not JSON become a truncated ``repr``.

    When the whole set is still larger than :data:`MAX_ARGS_JSON_CHARS` it is replaced by a
    single truncated marker so one task can never bloat the store or the backend.
    """
    safe_args = [_json_safe(a) for a in args]
    safe_kwargs = {str(k): _json_safe(v) for k, v in kwargs.items()}
    text = json.dumps([safe_args, safe_kwargs])
    if len(text) > MAX_ARGS_JSON_CHARS:
        return [f"<arguments truncated: {len(text)} characters>"], {}
    return safe_args, safe_kwargs


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


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
        }
        if include_args:
            data["args"] = self.args
            data["kwargs"] = self.kwargs
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        """Inverse of :meth:`to_dict`. Raises ``ValueError`` or ``KeyError`` on malformed data."""
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
            error=data.get("error"),
            traceback=data.get("traceback"),
            instance_id=str(data.get("instance_id") or ""),
            args=list(args) if isinstance(args, list) else None,
            kwargs=dict(kwargs) if isinstance(kwargs, dict) else None,
            retry_of=data.get("retry_of"),
            idempotency_key=data.get("idempotency_key"),
            rerunnable=bool(data.get("rerunnable")),
        )
