"""Tasks beyond one instance's life: what is stored to run them again, what happens when their
instance goes away, and idempotency keys.

Claimed records come from :class:`~taskflow.cluster.ClusterMonitor` (each record to exactly one
survivor); parked records are the pending tasks a clean shutdown leaves for the next instance.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from taskflow.arguments import keep_arguments
from taskflow.backends.base import BackendError
from taskflow.cluster import QUEUE_OWNER
from taskflow.events import EventKind
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.registry import TaskDefinition
from taskflow.store import CallSpec, approximate_size

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

logger = logging.getLogger("taskflow.recovery")


def idempotent_task_id(key: str) -> str:
    """The task id every instance derives from one idempotency key (32 hex digits)."""
    return hashlib.sha256(f"taskflow-idempotency:{key}".encode()).hexdigest()[:32]


def adopt(manager: TaskManager, records: list[TaskRecord], owner: str) -> None:
    """Handle records claimed from ``owner`` (a lost instance, or the requeue queue).

    Queued tasks, and tasks declared ``requeue_on_interrupt``, run here again with their stored
    arguments; the rest are finished as ``interrupted`` with the reason.
    """
    for record in records:
        definition = manager.registry.by_name(record.func_name)
        wanted = owner == QUEUE_OWNER or (definition and definition.requeue_on_interrupt)
        if definition is not None and wanted and record.rerunnable and record.args is not None:
            rerun(
                manager,
                record,
                CallSpec(definition.func, tuple(record.args), dict(record.kwargs or {})),
            )
            continue
        if owner == QUEUE_OWNER:
            why = "it was queued at shutdown but its arguments or function are not known here"
        else:
            why = f"instance {owner} was lost (no heartbeat)"
        record.status = TaskStatus.INTERRUPTED
        record.end_time = utcnow()
        record.error = f"interrupted: {why}"
        # The claim made this instance the owner: the former one's late copy cannot replace
        # this verdict (see SnapshotBackend.save), it is kept beside it.
        record.instance_id = manager.instance_id
        manager.bus.publish(EventKind.FINISHED, record)
    if records:
        logger.warning("taskflow took over %d tasks from %s", len(records), owner or "the queue")


def rerun(manager: TaskManager, record: TaskRecord, call: CallSpec) -> None:
    """Run a claimed record on this instance under its own id (exactly once: it was claimed)."""
    record.status = TaskStatus.PENDING
    record.instance_id = manager.instance_id
    record.start_time = record.end_time = None
    record.error = record.traceback = None
    manager.store.add(record, call)
    manager.bus.publish(EventKind.CREATED, record)
    manager.spawn(record, manager.registry.for_func(call.func), call.args, call.kwargs)


def park_pending(manager: TaskManager, record: TaskRecord) -> bool:
    """At a clean shutdown, leave a task that never started for the next instance.

    True when parked (its arguments are stored exactly); the final flush writes it under the
    queue owner, where any instance claims it.
    """
    if not (manager.requeue_pending and record.rerunnable and record.args is not None):
        return False
    record.instance_id = QUEUE_OWNER
    manager._scheduler.mark_live(record)
    return True


def call_of(
    manager: TaskManager,
    record: TaskRecord,
    definition: TaskDefinition,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> CallSpec:
    """Keep on ``record`` what it stores of its arguments (see :mod:`taskflow.arguments`), and
    return the call to run, which also says whether it stays in memory once the task finished.
    """
    kept = keep_arguments(
        args, kwargs, max_bytes=manager.max_args_bytes, display=manager.display_func_args
    )
    record.args, record.kwargs, record.rerunnable = kept.args, kept.kwargs, kept.exact
    if kept.exact:
        # The record's stored arguments run it again anywhere once its function is known by
        # name; an ad-hoc function is known here only, by the call.
        size = kept.size
        keep = manager.registry.by_name(definition.name) is not definition
    else:
        size = approximate_size(args, kwargs)
        keep = size <= manager.max_args_bytes
    return CallSpec(definition.func, args, kwargs, size, keep)


async def claim_key(manager: TaskManager, record: TaskRecord) -> bool:
    """Claim an idempotent task's id cluster-wide; False when another task holds it."""
    backend = manager._scheduler.backend
    assert backend is not None
    try:
        holder = await backend.claim_new(record)
    except BackendError as exc:
        logger.warning(
            "taskflow could not check idempotency key %r (%s); running it here",
            record.idempotency_key,
            exc,
        )
        holder = None
    if holder is not None:
        manager.store.discard(record.task_id)
        return False
    manager.store.release(record.task_id)
    manager._scheduler.mark_live(record)
    return True
