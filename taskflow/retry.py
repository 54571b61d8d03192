"""Retry: run a failed or interrupted task again, as a new task with its original arguments.

Any instance can retry a task whose record holds its exact arguments (``rerunnable``, see
:mod:`taskflow.arguments`) and whose function is registered there; the instance that ran it
can also retry one whose arguments it still holds in memory. Anything else is refused with the
reason. A task is retried once: its retry's id is derived from its own (an idempotency key), so
a double click, or two instances asked at once, start one retry, and asking again while it is
pending, running or succeeded returns it; once it failed, retry the retry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from taskflow.backends.codec import UnreadableRecord
from taskflow.cluster import idempotent_task_id
from taskflow.launch import Acceptor
from taskflow.models import TaskRecord, TaskStatus
from taskflow.persistence.store import CallSpec

#: Statuses a task can be retried from.
RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.INTERRUPTED, TaskStatus.CANCELLED})


class RetryRefused(Exception):
    """A task cannot be run again; the message says why (the API answers 409)."""


def retry_key(task_id: str) -> str:
    """The idempotency key of the retry of ``task_id``."""
    return f"taskflow-retry:{task_id}"


class Retries:
    """Retries of one manager's tasks: ``get`` reads a record (memory, then the backend)."""

    def __init__(
        self, acceptor: Acceptor, get: Callable[[str], Awaitable[TaskRecord | None]]
    ) -> None:
        self.acceptor = acceptor
        self.get = get

    def can_retry(self, record: TaskRecord) -> bool:
        """True when a retry of ``record`` from *any* instance would run (what the dashboard's
        Retry button means): it failed or was interrupted and its exact arguments are stored,
        or there is one instance only (no backend) and this one still holds them."""
        if record.status not in RETRYABLE:
            return False
        if record.rerunnable and record.args is not None:
            return self.acceptor.registry.by_name(record.func_name) is not None
        held = self.acceptor.store.call_of(record.task_id) is not None
        return held and not self.acceptor.persistent

    async def run_again(self, task_id: str) -> TaskRecord:
        """The retry's record; ``KeyError`` for an unknown id, :class:`RetryRefused` when the
        task is in another state, already retried and that retry failed, or cannot be run
        here."""
        try:
            record = await self.get(task_id)
        except UnreadableRecord as exc:
            raise RetryRefused(f"{exc}; it cannot be retried") from None
        if record is None:
            raise KeyError(task_id)
        if record.status not in RETRYABLE:
            raise RetryRefused(
                f"task {task_id} is {record.status.value}; only failed, interrupted or cancelled "
                "tasks can be retried"
            )
        key = retry_key(task_id)
        earlier = await self._earlier_retry(idempotent_task_id(key))
        if earlier is not None:
            if earlier.status in RETRYABLE:
                raise RetryRefused(
                    f"task {task_id} was retried already as {earlier.task_id}, which is "
                    f"{earlier.status.value}: retry that one"
                )
            return earlier
        call = self._call(record)
        new_record, starter = self.acceptor.enqueue(
            call.func,
            call.args,
            call.kwargs,
            retry_of=task_id,
            idempotency_key=key,
            tags=record.tags,
        )
        await starter()
        return new_record

    async def _earlier_retry(self, retry_id: str) -> TaskRecord | None:
        try:
            return await self.get(retry_id)
        except UnreadableRecord:
            return None  # the claim decides; an unreadable record there is replaced

    def _call(self, record: TaskRecord) -> CallSpec:
        call = self.acceptor.store.call_of(record.task_id)
        if call is not None:
            return call
        definition = self.acceptor.registry.by_name(record.func_name)
        if definition is None:
            raise RetryRefused(
                f"function {record.func_name!r} of task {record.task_id} is not registered "
                "here (@task_manager.task), so no instance can look it up by name"
            )
        if record.sealed_args is not None:
            raise RetryRefused(
                f"the arguments of task {record.task_id} are encrypted with a key this "
                "instance does not have (args_keys / TASKFLOW_ARGS_KEYS)"
            )
        if not record.rerunnable or record.args is None:
            raise RetryRefused(
                f"the arguments of task {record.task_id} were not stored exactly (they are not "
                "plain JSON, or larger than max_args_bytes) and are no longer in this "
                "instance's memory"
            )
        return CallSpec(definition.func, tuple(record.args), dict(record.kwargs or {}))
