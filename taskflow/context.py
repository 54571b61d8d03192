"""What a running task knows about itself: :func:`task_context`.

Inside a task function (async, or sync in its thread) ``task_context()`` gives the task's id,
function name, attempt, instance, and whether a cancellation was asked for. It costs a task
that never calls it nothing but one context-variable assignment: the :class:`TaskContext` of a
task is made on first use (or when the task is cancelled) and forgotten when it ends.

Threads cannot be stopped from outside, so a sync task that may run long checks
``task_context().cancelled`` now and then and returns when it is set; it is recorded
``cancelled`` whatever it returns (see docs/operations.md, "Cancelling a task").
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

from taskflow.models import TaskRecord

#: The record of the task running in this context (set by the runner for each run; a sync
#: task's thread runs in a copy of that context).
current_record: contextvars.ContextVar[TaskRecord] = contextvars.ContextVar("taskflow_task")
#: The attempt a sync task's thread runs (a timed-out attempt's thread may still be running
#: while the next attempt runs).
current_attempt: contextvars.ContextVar[int] = contextvars.ContextVar("taskflow_attempt")


@dataclass(eq=False, slots=True)
class TaskContext:
    """One running task, as its own code sees it (``task_context()``)."""

    record: TaskRecord
    #: Someone asked for this task to stop (``task_manager.cancel`` / ``POST .../cancel``).
    cancel_requested: bool = False
    #: Attempts whose time ran out (``timeout=``): their threads are asked to stop.
    expired_attempts: set[int] = field(default_factory=set)

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
    def cancelled(self) -> bool:
        """True once this task was asked to stop, or this attempt's ``timeout`` ran out: a
        sync task checks it between steps and returns."""
        if self.cancel_requested or self.record.status.finished:
            return True  # finished: a thread still running belongs to a run that is over
        return bool(self.expired_attempts) and self.attempt in self.expired_attempts


#: The contexts made so far, by ``id()`` of their (running) record; removed when it ends.
_contexts: dict[int, TaskContext] = {}


def context_of(record: TaskRecord) -> TaskContext:
    """The context of a running ``record``, made on first use (thread-safe: ``setdefault``)."""
    known = _contexts.get(id(record))
    if known is not None and known.record is record:
        return known
    return _contexts.setdefault(id(record), TaskContext(record))


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
    record = current_record.get(None)
    if record is None:
        raise RuntimeError("task_context() is only available inside a task run by taskflow")
    if record.status.finished:  # a timed-out thread outliving its task: nothing to keep
        return TaskContext(record)
    return context_of(record)
