"""Retry: run a failed or interrupted task again, as a new task with its original arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskflow.models import TaskRecord, TaskStatus
from taskflow.store import CallSpec

if TYPE_CHECKING:
    from taskflow.manager import TaskManager


class RetryRefused(Exception):
    """A task cannot be run again; the message says why (the API answers 409)."""


async def run_again(manager: TaskManager, task_id: str) -> TaskRecord:
    """The new task's record; ``KeyError`` for an unknown id, :class:`RetryRefused` when the
    task is in another state or its arguments are no longer known."""
    record = await manager._scheduler.aget(task_id)
    if record is None:
        raise KeyError(task_id)
    if record.status not in (TaskStatus.FAILED, TaskStatus.INTERRUPTED):
        raise RetryRefused(
            f"task {task_id} is {record.status.value}; only failed or interrupted tasks can "
            "be retried"
        )
    call = manager.store.call_of(task_id)
    definition = manager.registry.by_name(record.func_name)
    if call is None and definition is not None and record.args is not None:
        call = CallSpec(definition.func, tuple(record.args), dict(record.kwargs or {}))
    if call is None:
        raise RetryRefused(
            f"the arguments of task {task_id} are no longer known (it left this instance's "
            "memory and arguments are stored only with display_func_args=True), or its "
            f"function {record.func_name!r} is not registered here"
        )
    new_record, runner = manager.enqueue(call.func, call.args, call.kwargs, retry_of=task_id)
    await runner()
    return new_record
