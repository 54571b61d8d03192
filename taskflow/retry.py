"""Retry: run a failed or interrupted task again, as a new task with its original arguments.

Any instance can retry a task whose record holds its exact arguments (``rerunnable``, see
:mod:`taskflow.arguments`) and whose function is registered there; the instance that ran it
can also retry one whose arguments it still holds in memory. Anything else is refused with the
reason. A task is retried once: its retry's id is derived from its own (an idempotency key), so
a double click, or two instances asked at once, start one retry, and asking again while it is
pending, running or succeeded returns it; once it failed, retry the retry.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from taskflow.backends.codec import UnreadableRecord
from taskflow.cluster import idempotent_task_id
from taskflow.launch import Acceptor, Launch
from taskflow.models import TaskRecord, TaskStatus
from taskflow.persistence.store import CallSpec

#: Statuses a task can be retried from.
RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.INTERRUPTED, TaskStatus.CANCELLED})
#: Retries one bulk retry starts when the caller names no ``limit``.
DEFAULT_BULK_RETRY_LIMIT = 100
#: Most retries one bulk retry may start (a larger ``limit`` is refused: ask again instead).
MAX_BULK_RETRY_LIMIT = 1000
#: Most matching records one bulk retry examines (retried already, refused or retried) before
#: it answers with ``more``: a history of a million failures is never walked in one request.
BULK_SCAN_BUDGET = 5000
#: Refusal reasons one bulk retry reports (the first ones; the count covers them all).
REPORTED_REFUSALS = 20


class RetryRefused(Exception):
    """A task cannot be run again; the message says why (the API answers 409).

    ``retried_as`` is the id of the task's retry when the refusal is that it was retried
    already (and that retry failed): retry that one.
    """

    def __init__(self, message: str, *, retried_as: str | None = None) -> None:
        super().__init__(message)
        self.retried_as = retried_as


@dataclass(slots=True)
class BulkRetry:
    """What a bulk retry did (see :meth:`Retries.retry_many`).

    ``matched`` counts the failed and interrupted tasks the filters matched when it began
    (those retried already included); ``retried`` maps each task retried by this call to its
    retry's id; ``already_retried`` counts tasks whose retry exists (started earlier, by
    another call or instance: not run again); ``refused`` counts tasks no instance can run
    again, with the first reasons in ``refusals`` (task id -> reason); ``more`` says that
    matching tasks were left unexamined (the limit or the scan budget was reached): ask again,
    with ``last_examined`` (the position to continue after) as the cursor to skip those seen.
    """

    matched: int = 0
    retried: dict[str, str] = field(default_factory=dict)
    already_retried: int = 0
    refused: int = 0
    refusals: dict[str, str] = field(default_factory=dict)
    more: bool = False
    last_examined: TaskRecord | None = None


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
        retry, _ = await self.retry_record(record)
        return retry

    async def retry_many(
        self, candidates: AsyncGenerator[TaskRecord, None], limit: int
    ) -> BulkRetry:
        """Retry each record of ``candidates`` (failed or interrupted ones of a selection) until
        ``limit`` retries were started, each at most once across every instance (the retry's
        idempotency key: a bulk retry asked twice, or of two instances at once, runs no task
        twice). Stops after :data:`BULK_SCAN_BUDGET` records with ``more`` set."""
        result = BulkRetry()
        examined = 0
        async with aclosing(candidates):
            async for record in candidates:
                if len(result.retried) >= limit or examined >= BULK_SCAN_BUDGET:
                    result.more = True
                    break
                examined += 1
                result.last_examined = record
                await self._retry_into(record, result)
        return result

    async def _retry_into(self, record: TaskRecord, result: BulkRetry) -> None:
        try:
            retry, started = await self.retry_record(record)
        except RetryRefused as exc:
            if exc.retried_as is not None:
                result.already_retried += 1
            else:
                result.refused += 1
                if len(result.refusals) < REPORTED_REFUSALS:
                    result.refusals[record.task_id] = str(exc)
            return
        if started:
            result.retried[record.task_id] = retry.task_id
        else:
            result.already_retried += 1

    async def retry_record(self, record: TaskRecord) -> tuple[TaskRecord, bool]:
        """The retry of ``record`` and whether this call started it (False: it existed, here
        or on another instance); :class:`RetryRefused` as :meth:`run_again`."""
        task_id = record.task_id
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
                    f"{earlier.status.value}: retry that one",
                    retried_as=earlier.task_id,
                )
            return earlier, False
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
        # Not a Launch: this instance held the key's task already. A Launch whose claim lost:
        # another instance (or call) started the retry first.
        started = isinstance(starter, Launch) and not starter.refused
        return new_record, started

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
