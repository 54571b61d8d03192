"""Launch: what starts one enqueued task, after its response or, with durable acceptance,
while that response waits for its write."""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any

from taskflow import recovery
from taskflow.executor import interrupt_unstarted
from taskflow.models import TaskRecord
from taskflow.registry import TaskDefinition

if TYPE_CHECKING:
    from taskflow.manager import TaskManager


class _Done:
    """An awaitable that is already done: awaiting it neither suspends nor makes a frame."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]  # already exhausted: await returns None


DONE = _Done()


class Launch:
    """Starts one enqueued task, once.

    Awaited after the response (FastAPI runs it as a background task, ``submit`` and
    ``retry`` await it directly). With durable acceptance the response that returns the id
    first calls :meth:`accept`: until then the record is held out of writes (no client knows
    its id yet), and a successful response starts the task before it waits for the write, so a
    short task has finished by the time the group commit takes its batch and is written once,
    finished, instead of twice (accepted, then finished).
    """

    __slots__ = ("args", "claim", "definition", "held", "kwargs", "manager", "record", "started")

    def __init__(
        self,
        manager: TaskManager,
        record: TaskRecord,
        definition: TaskDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        claim: bool,
    ) -> None:
        self.manager = manager
        self.record = record
        self.definition = definition
        self.args = args
        self.kwargs = kwargs
        #: An idempotent task claims its id in the backend first (an await): never early.
        self.claim = claim
        self.started = False
        self.held = False

    def hold(self) -> None:
        """Keep the record out of writes until :meth:`accept` (its response will call it)."""
        self.held = True
        self.manager.store.hold(self.record.task_id)

    def accept(self, start: bool) -> None:
        """The response returning the id waits for the write now: include the record in it,
        and with ``start`` start the task first."""
        self._release()
        if start:
            self.start_early()
        self.manager._scheduler.mark_live(self.record)

    def abandon(self) -> None:
        """The request that queued the task has ended without starting it: it raised, and
        FastAPI runs no background task of a request that raised. Recorded as never run,
        instead of staying pending (and in memory) forever."""
        if self.started:
            return
        self.started = True
        if self.claim:
            # Its id is the idempotency key's, and this instance never claimed it: the stored
            # task of that id (if any) belongs to someone else. Forget it, write nothing.
            self.manager.store.discard(self.record.task_id)
            return
        self._release()
        interrupt_unstarted(
            self.record,
            self.manager.bus,
            "not run: the request that queued it failed before its response",
        )

    def _release(self) -> None:
        if self.held:
            self.held = False
            self.manager.store.release(self.record.task_id)

    def after_response(self) -> Awaitable[None]:
        """What FastAPI awaits after the response: starts the task and returns an awaitable
        that is already done, or, when the task must wait for something, its coroutine."""
        self._release()
        self.start_early()
        return DONE if self.started else self()

    async def __call__(self) -> None:
        self._release()
        if self.started:
            return
        self.started = True
        manager = self.manager
        if self.claim and not await recovery.claim_key(manager, self.record):
            return
        if manager._started and not manager.draining:
            manager.spawn(self.record, self.definition, self.args, self.kwargs)
        else:
            await manager._run(self.record, self.definition, self.args, self.kwargs)

    def start_early(self) -> None:
        """Start now, in a task of its own, unless it must wait for something (a claim)."""
        manager = self.manager
        if self.started or self.claim or not manager._started or manager.draining:
            return
        self.started = True
        manager.spawn(self.record, self.definition, self.args, self.kwargs)
