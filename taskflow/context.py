"""What a running task knows and says about itself: :func:`task_context` and :func:`task_log`.

Inside a task function (async, or sync in its thread) ``task_context()`` gives the task's id,
function name, attempt, instance, tags, whether a cancellation was asked for, and
``progress()``;
``task_log("...", level="info", **fields)`` keeps a line with the task's record (bounded in
count and bytes, the overflow counted). :class:`TaskLogHandler` (opt-in) keeps the task's own
``logging`` records the same way.

A task that uses none of it pays one context-variable assignment: its :class:`TaskContext` is
made on first use (or when the task is cancelled) and forgotten when it ends. Log lines and
progress reach the record at once and are announced (``EventKind.UPDATED``: the stream, the
live write) at most every :data:`UPDATE_INTERVAL` seconds per task, so a loop that reports
progress a thousand times costs a few announcements, not a thousand.

Threads cannot be stopped from outside, so a sync task that may run long checks
``task_context().cancelled`` now and then and returns when it is set; it is recorded
``cancelled`` whatever it returns (see docs/operations.md, "Cancelling a task").
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from taskflow.models import TaskRecord
from taskflow.storable import safe_text, storable, truncated

#: Most log lines kept per task; older ones are dropped (and counted) past it.
MAX_LOG_LINES = 200
#: Most bytes of log lines (their JSON) kept per task; older ones are dropped past it.
MAX_LOG_BYTES = 32 * 1024
#: Longest message kept in one log line (characters); longer ones are cut with "...".
MAX_LOG_MESSAGE = 2_000
#: Longest progress message kept (characters).
MAX_PROGRESS_MESSAGE = 200
#: Log levels ``task_log`` accepts (the ``logging`` names, lower case).
LEVELS = ("debug", "info", "warning", "error", "critical")
#: Seconds between two announcements of one task's new log lines or progress: the record
#: always holds the latest at once; listeners (stream, live write) hear of it at this pace,
#: and of the last change after a pause as well.
UPDATE_INTERVAL = 0.25

#: Called by a context to announce its record changed, after ``delay`` seconds (0: now); any
#: thread may call it (the runner hops to its event loop).
Notify = Callable[[TaskRecord, float, Callable[[], None]], None]

#: The record of the task running in this context and how to announce its changes (set by the
#: runner for each run; a sync task's thread runs in a copy of that context).
current_task: contextvars.ContextVar[tuple[TaskRecord, Notify]] = contextvars.ContextVar(
    "taskflow_task"
)
#: The attempt a sync task's thread runs (a timed-out attempt's thread may still be running
#: while the next attempt runs).
current_attempt: contextvars.ContextVar[int] = contextvars.ContextVar("taskflow_attempt")


def _no_notify(record: TaskRecord, delay: float, done: Callable[[], None]) -> None:
    done()


@dataclass(eq=False, slots=True)
class TaskContext:
    """One running task, as its own code sees it (``task_context()``)."""

    record: TaskRecord
    notify: Notify = _no_notify
    #: Someone asked for this task to stop (``task_manager.cancel`` / ``POST .../cancel``).
    cancel_requested: bool = False
    #: Attempts whose time ran out (``timeout=``): their threads are asked to stop.
    expired_attempts: set[int] = field(default_factory=set)
    _log_bytes: int = 0
    _announced: float = 0.0
    _scheduled: bool = False

    @property
    def task_id(self) -> str:
        return self.record.task_id

    @property
    def func_name(self) -> str:
        return self.record.func_name

    @property
    def attempt(self) -> int:
        """The attempt running now, from 1 (a sync attempt's thread: the one it runs)."""
        return current_attempt.get(self.record.attempts)

    @property
    def instance_id(self) -> str:
        return self.record.instance_id

    @property
    def tags(self) -> dict[str, str]:
        """The task's tags (``add_task(..., tags={...})``; a copy)."""
        return dict(self.record.tags or {})

    @property
    def cancelled(self) -> bool:
        """True once this task was asked to stop, or this attempt's ``timeout`` ran out: a
        sync task checks it between steps and returns."""
        if self.cancel_requested or self.record.status.finished:
            return True  # finished: a thread still running belongs to a run that is over
        return bool(self.expired_attempts) and self.attempt in self.expired_attempts

    def progress(self, fraction: float | None, message: str = "") -> None:
        """Report how far the task is: ``fraction`` from 0 to 1 (``None``: unknown), and a
        short ``message`` ("step 2 of 5"). Shown live in the dashboard and the API; cheap
        enough to call in a tight loop (announced at most every :data:`UPDATE_INTERVAL` s).
        ``ValueError`` for a fraction outside 0..1."""
        if fraction is not None:
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
                raise ValueError(
                    f"progress fraction must be a number from 0 to 1, got {fraction!r}"
                )
            if not 0.0 <= fraction <= 1.0:  # NaN fails this too
                raise ValueError(f"progress fraction must be from 0 to 1, got {fraction!r}")
            fraction = float(fraction)
        text = safe_text(truncated(str(message), MAX_PROGRESS_MESSAGE))
        self.record.progress = {"fraction": fraction, "message": text}
        self.changed()

    def log(self, message: str, level: str = "info", **fields: Any) -> None:
        """Keep a log line with the record (see :func:`task_log`)."""
        level = level.lower() if isinstance(level, str) else ""
        if level not in LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
        line: dict[str, Any] = {
            "at": round(time.time(), 6),
            "level": level,
            "message": safe_text(truncated(str(message), MAX_LOG_MESSAGE)),
        }
        if fields:
            line["fields"] = storable(fields)
        self._keep(line)
        self.changed()

    def _keep(self, line: dict[str, Any]) -> None:
        size = len(orjson.dumps(line))
        record = self.record
        logs = record.logs
        if logs is None:
            logs = record.logs = []
        if size > MAX_LOG_BYTES:  # one line alone over the bound: its message is cut to fit
            line["message"] = line["message"][: MAX_LOG_BYTES // 4]
            line.pop("fields", None)
            size = len(orjson.dumps(line))
        logs.append(line)
        self._log_bytes += size
        dropped = 0
        while len(logs) > MAX_LOG_LINES or self._log_bytes > MAX_LOG_BYTES:
            self._log_bytes -= len(orjson.dumps(logs.pop(0)))
            dropped += 1
        record.logs_dropped += dropped

    def changed(self) -> None:
        """Announce that the record changed: now, or at the end of the current interval."""
        if self._scheduled:
            return  # an announcement is due: it carries this change too
        wait = self._announced + UPDATE_INTERVAL - time.monotonic()
        self._scheduled = True
        self.notify(self.record, max(0.0, wait), self._announce_done)

    def _announce_done(self) -> None:
        self._announced = time.monotonic()
        self._scheduled = False


#: The contexts made so far, by ``id()`` of their (running) record; removed when it ends.
_contexts: dict[int, TaskContext] = {}


def context_of(record: TaskRecord, notify: Notify = _no_notify) -> TaskContext:
    """The context of a running ``record``, made on first use (thread-safe: ``setdefault``)."""
    known = _contexts.get(id(record))
    if known is not None and known.record is record:
        if notify is not _no_notify:
            known.notify = notify
        return known
    return _contexts.setdefault(id(record), TaskContext(record, notify))


def known_context(record: TaskRecord) -> TaskContext | None:
    """The context of ``record`` if one was made (cheap when none ever was)."""
    if not _contexts:
        return None
    known = _contexts.get(id(record))
    return known if known is not None and known.record is record else None


def forget(record: TaskRecord) -> None:
    """``record``'s run ended: drop its context."""
    if _contexts:
        known = _contexts.get(id(record))
        if known is not None and known.record is record:
            del _contexts[id(record)]


def task_context() -> TaskContext:
    """The running task's context; ``RuntimeError`` outside a task run by taskflow."""
    running = current_task.get(None)
    if running is None:
        raise RuntimeError("task_context() is only available inside a task run by taskflow")
    record, notify = running
    if record.status.finished:  # a timed-out thread outliving its task: nothing to keep
        return TaskContext(record)
    return context_of(record, notify)


def task_log(message: str, level: str = "info", **fields: Any) -> None:
    """Keep a log line with the running task's record: ``task_log("charged", amount=12)``.

    ``level`` is one of :data:`LEVELS`; ``fields`` are stored as JSON (other values as their
    ``repr``). Per task at most :data:`MAX_LOG_LINES` lines and :data:`MAX_LOG_BYTES` bytes are
    kept, the newest; the number dropped is ``logs_dropped`` on the record. Outside a task it
    raises ``RuntimeError``.
    """
    task_context().log(message, level, **fields)


class TaskLogHandler(logging.Handler):
    """A ``logging`` handler that keeps records emitted inside a task with that task's record
    (as :func:`task_log` lines, with the logger's name); outside tasks it does nothing.

    Opt-in: ``logging.getLogger("myapp").addHandler(TaskLogHandler())``, or
    ``TaskManager(capture_logging=True)`` for the root logger at INFO.
    """

    def emit(self, record: logging.LogRecord) -> None:
        running = current_task.get(None)
        if running is None or running[0].status.finished:
            return
        try:
            level = record.levelname.lower()
            context_of(*running).log(
                record.getMessage(),
                level if level in LEVELS else "info",
                logger=record.name,
            )
        except Exception:
            self.handleError(record)


#: The root logger's capturing handler while some manager with ``capture_logging`` runs, and
#: how many do (one handler for all of them, so a line is kept once).
_capture: list[TaskLogHandler] = []
_capturing = 0


def capture_logging(on: bool) -> None:
    """Start (``True``) or stop one manager's capture of ``logging`` records inside tasks."""
    global _capturing
    root = logging.getLogger()
    if on:
        _capturing += 1
        if not _capture:
            _capture.append(TaskLogHandler(logging.INFO))
            root.addHandler(_capture[0])
    elif _capturing > 0:
        _capturing -= 1
        if _capturing == 0 and _capture:
            root.removeHandler(_capture.pop())
