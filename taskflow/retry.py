"""Retry: run a failed or interrupted task again, as a new task with its original arguments.

Any instance can retry a task whose record holds its exact arguments (``rerunnable``, see
:mod:`taskflow.arguments`) and whose function is registered there; the instance that ran it
can also retry one whose arguments it still holds in memory. Anything else is refused with the
reason. A task is retried once: its retry's id is derived from its own (an idempotency key), so
a double click, or two instances asked at once, start one retry, and asking again while it is
pending, running or succeeded returns it; once it failed, retry the retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskflow.backends.codec import UnreadableRecord
from taskflow.models import TaskRecord, TaskStatus
from taskflow.recovery import idempotent_task_id
from taskflow.store import CallSpec

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

#: Statuses a task can be retried from.
RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.INTERRUPTED})


class RetryRefused(Exception):
    """A task cannot be run again; the message says why (the API answers 409)."""


def retry_key(task_id: str) -> str:
    """The idempotency key of the retry of ``task_id``."""
    return f"taskflow-retry:{task_id}"


def can_retry(manager: TaskManager, record: TaskRecord) -> bool:
    """True when a retry of ``record`` from *any* instance would run (what the dashboard's
    Retry button means): it failed or was interrupted and its exact arguments are stored, or
    there is one instance only (no backend) and this one still holds them."""
    if record.status not in RETRYABLE:
        return False
    if record.rerunnable and record.args is not None:
        return manager.registry.by_name(record.func_name) is not None
    return not manager.persistent and manager.store.call_of(record.task_id) is not None


async def run_again(manager: TaskManager, task_id: str) -> TaskRecord:
    """The retry's record; ``KeyError`` for an unknown id, :class:`RetryRefused` when the
    task is in another state, already retried and that retry failed, or cannot be run here."""
    try:
        record = await manager.aget(task_id)
    except UnreadableRecord as exc:
        raise RetryRefused(f"{exc}; it cannot be retried") from None
    if record is None:
        raise KeyError(task_id)
    if record.status not in RETRYABLE:
        raise RetryRefused(
            f"task {task_id} is {record.status.value}; only failed or interrupted tasks can "
            "be retried"
        )
    key = retry_key(task_id)
    earlier = await _earlier_retry(manager, idempotent_task_id(key))
    if earlier is not None:
        if earlier.status in RETRYABLE:
            raise RetryRefused(
                f"task {task_id} was retried already as {earlier.task_id}, which is "
                f"{earlier.status.value}: retry that one"
            )
        return earlier
    call = _call(manager, record)
    new_record, runner = manager.enqueue(
        call.func, call.args, call.kwargs, retry_of=task_id, idempotency_key=key
    )
    await runner()
    return new_record


async def _earlier_retry(manager: TaskManager, retry_id: str) -> TaskRecord | None:
    try:
        return await manager.aget(retry_id)
    except UnreadableRecord:
        return None  # the claim decides; an unreadable record there is replaced


def _call(manager: TaskManager, record: TaskRecord) -> CallSpec:
    call = manager.store.call_of(record.task_id)
    if call is not None:
        return call
    definition = manager.registry.by_name(record.func_name)
    if definition is None:
        raise RetryRefused(
            f"function {record.func_name!r} of task {record.task_id} is not registered here "
            "(@task_manager.task), so no instance can look it up by name"
        )
    if record.sealed_args is not None:
        raise RetryRefused(
            f"the arguments of task {record.task_id} are encrypted with a key this instance "
            "does not have (args_keys / TASKFLOW_ARGS_KEYS)"
        )
    if not record.rerunnable or record.args is None:
        raise RetryRefused(
            f"the arguments of task {record.task_id} were not stored exactly (they are not "
            "plain JSON, or larger than max_args_bytes) and are no longer in this instance's "
            "memory"
        )
    return CallSpec(definition.func, tuple(record.args), dict(record.kwargs or {}))
