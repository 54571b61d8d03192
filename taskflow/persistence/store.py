"""Bounded in-memory store of this instance's live and recently finished records."""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, KeysView
from dataclasses import dataclass
from typing import Any

import orjson

from taskflow.models import TaskRecord
from taskflow.storable import storable

logger = logging.getLogger("taskflow.persistence.store")

#: What a finished record costs in memory besides its error, traceback and arguments (bytes;
#: measured with tracemalloc: the dataclass, its datetimes and id strings, the dict entries).
RECORD_BYTES = 1_000
#: Quarantined task ids remembered, so that a record that cannot be stored is tried once.
QUARANTINED_IDS = 10_000
#: Default byte bounds: of the recent finished window, and of the records waiting for a write.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_UNFLUSHED_BYTES = 256 * 1024 * 1024


@dataclass(slots=True)
class CallSpec:
    """How a task was called: the function and the very argument objects (to run it again).

    ``size`` is about what the arguments take in memory; ``keep`` says whether the call stays
    once the task finished (for a retry on this instance: its arguments could not be stored
    exactly, or its function is not registered) or goes (the record's stored arguments do).
    """

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    size: int = 0
    keep: bool = True


def approximate_size(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Bytes the argument objects take, counted one level deep (a 1 MiB string counts fully)."""
    return sum(sys.getsizeof(value) for value in (*args, *kwargs.values()))


class TaskStore:
    """Live records (pending, running), a window of recent finished ones, and the unflushed.

    Memory stays bounded in count and in bytes (a record's error, traceback and arguments
    counted): the finished window holds at most ``max_records`` records and ``max_bytes``; when
    persistence is on, finished records that are not yet written to the backend are held apart
    (at most ``max_unflushed`` records and ``max_unflushed_bytes``) so a record leaves memory
    only after it is persisted, or, past those bounds, with a loud error.
    """

    def __init__(
        self,
        *,
        max_records: int = 10_000,
        max_unflushed: int = 100_000,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_unflushed_bytes: int = DEFAULT_MAX_UNFLUSHED_BYTES,
    ) -> None:
        if max_records < 1 or max_unflushed < 1:
            raise ValueError("max_records and max_unflushed must be at least 1")
        if max_bytes < RECORD_BYTES or max_unflushed_bytes < RECORD_BYTES:
            raise ValueError(f"max_bytes and max_unflushed_bytes must be at least {RECORD_BYTES}")
        self.max_records = max_records
        self.max_unflushed = max_unflushed
        self.max_bytes = max_bytes
        self.max_unflushed_bytes = max_unflushed_bytes
        self._live: dict[str, TaskRecord] = {}
        self._finished: OrderedDict[str, TaskRecord] = OrderedDict()
        self._unflushed: OrderedDict[str, TaskRecord] = OrderedDict()
        self._calls: dict[str, CallSpec] = {}
        self._dirty_live: dict[str, TaskRecord] = {}
        self._held: set[str] = set()
        self._quarantined: OrderedDict[str, None] = OrderedDict()
        #: Bytes of every finished record held (window or unflushed), by id.
        self._weights: dict[str, int] = {}
        self.finished_bytes = 0
        self.unflushed_bytes = 0
        self.dropped_unflushed = 0
        self.track_unflushed = False

    def __len__(self) -> int:
        ids = self._live.keys() | self._finished.keys() | self._unflushed.keys()
        return len(ids)

    def add(self, record: TaskRecord, call: CallSpec | None = None) -> None:
        self._live[record.task_id] = record
        if call is not None:
            self._calls[record.task_id] = call

    def get(self, task_id: str) -> TaskRecord | None:
        return (
            self._live.get(task_id) or self._unflushed.get(task_id) or self._finished.get(task_id)
        )

    def call_of(self, task_id: str) -> CallSpec | None:
        return self._calls.get(task_id)

    # -- live records waiting to be written (the cluster view) --------------------------------

    def mark_live_dirty(self, record: TaskRecord) -> None:
        """A live record changed: write it with the next flush (unless it is held)."""
        task_id = record.task_id
        if task_id in self._live and task_id not in self._held and task_id not in self._quarantined:
            self._dirty_live[task_id] = record

    def take_live_dirty(self) -> list[TaskRecord]:
        """The changed live records, forgotten until they change again or are given back."""
        taken = [r for r in self._dirty_live.values() if not r.status.finished]
        self._dirty_live.clear()
        return taken

    def give_back_live_dirty(self, records: list[TaskRecord]) -> None:
        """Records a failed write took: write them with a later flush (if still live)."""
        for record in records:
            if not record.status.finished:
                self._dirty_live.setdefault(record.task_id, record)

    def hold(self, task_id: str) -> None:
        """Keep a new record out of writes until :meth:`release` (its id is not claimed yet)."""
        self._held.add(task_id)

    def release(self, task_id: str) -> None:
        self._held.discard(task_id)

    def discard(self, task_id: str) -> None:
        """Forget a record: one that will never run (another instance holds its id), or one
        whose stored version belongs to another instance now."""
        self._held.discard(task_id)
        self._live.pop(task_id, None)
        self._dirty_live.pop(task_id, None)
        self._calls.pop(task_id, None)
        self._forget_weight(task_id)

    def finish(self, record: TaskRecord) -> None:
        """Move a record that reached a terminal status out of the live set."""
        task_id = record.task_id
        self._live.pop(task_id, None)
        call = self._calls.get(task_id)
        args_bytes = 0
        if call is not None:
            args_bytes = call.size
            if not call.keep:
                del self._calls[task_id]
                call = None
        weight = RECORD_BYTES + _text_bytes(record) + args_bytes + (call.size if call else 0)
        self._forget_weight(task_id)
        self._weights[task_id] = weight
        self._remember(record, weight)
        if self.track_unflushed and task_id not in self._quarantined:
            self._unflushed[task_id] = record
            self._unflushed.move_to_end(task_id)
            self.unflushed_bytes += weight
            while len(self._unflushed) > 1 and (
                len(self._unflushed) > self.max_unflushed
                or self.unflushed_bytes > self.max_unflushed_bytes
            ):
                self._drop_oldest_unflushed()

    def _drop_oldest_unflushed(self) -> None:
        lost_id, _ = self._unflushed.popitem(last=False)
        self.unflushed_bytes -= self._weights.get(lost_id, 0)
        if lost_id not in self._finished:
            self._forget_weight(lost_id)
            self._calls.pop(lost_id, None)
        self.dropped_unflushed += 1
        logger.error(
            "taskflow unflushed buffer is full (%d records, %d bytes): dropped record %s; "
            "the backend has been failing for too long",
            self.max_unflushed,
            self.max_unflushed_bytes,
            lost_id,
        )

    def quarantine(self, record: TaskRecord) -> None:
        """Never write this record (it cannot be encoded): it stays in the window, in memory."""
        task_id = record.task_id
        self._quarantined[task_id] = None
        if len(self._quarantined) > QUARANTINED_IDS:
            self._quarantined.popitem(last=False)
        self._dirty_live.pop(task_id, None)
        if self._unflushed.pop(task_id, None) is not None:
            self.unflushed_bytes -= self._weights.get(task_id, 0)
            if task_id not in self._finished:
                self._forget_weight(task_id)

    def restore(self, records: list[TaskRecord]) -> None:
        """Put records read from the backend into the finished window (oldest first)."""
        for record in reversed(records):
            held = record.task_id in self._live or record.task_id in self._weights
            if not held and record.status.finished:  # what this instance holds is newer
                weight = RECORD_BYTES + _text_bytes(record) + _stored_args_bytes(record)
                self._forget_weight(record.task_id)
                self._weights[record.task_id] = weight
                self._remember(record, weight)

    def _remember(self, record: TaskRecord, weight: int) -> None:
        # The caller forgot any earlier version of this id (_forget_weight) first.
        self._finished[record.task_id] = record
        self.finished_bytes += weight
        while len(self._finished) > 1 and (
            len(self._finished) > self.max_records or self.finished_bytes > self.max_bytes
        ):
            old_id, _ = self._finished.popitem(last=False)
            self.finished_bytes -= self._weights.get(old_id, 0)
            if old_id not in self._unflushed:
                self._forget_weight(old_id)
                self._calls.pop(old_id, None)

    def _forget_weight(self, task_id: str) -> None:
        weight = self._weights.pop(task_id, 0)
        if weight and task_id in self._finished:
            self.finished_bytes -= weight
            del self._finished[task_id]
        if weight and task_id in self._unflushed:
            self.unflushed_bytes -= weight
            del self._unflushed[task_id]

    def not_written(self) -> Iterator[TaskRecord]:
        """The records whose current version the backend may not hold: live ones, finished
        ones not written yet, and quarantined ones (never written). The rest are in the
        backend (or were deleted there: pruned, purged), which is what lists them."""
        unflushed, quarantined = self._unflushed, self._quarantined
        for record in self:
            task_id = record.task_id
            if not record.status.finished or task_id in unflushed or task_id in quarantined:
                yield record

    def forget_finished(self, task_id: str) -> bool:
        """Drop a finished record from memory (the recent window and the unflushed, so it is
        never written): a purge. Returns whether it was unflushed (not in the backend yet)."""
        if task_id in self._live:
            return False
        unflushed = task_id in self._unflushed
        self._forget_weight(task_id)
        self._unflushed.pop(task_id, None)
        self._finished.pop(task_id, None)
        self._calls.pop(task_id, None)
        return unflushed

    def live(self) -> list[TaskRecord]:
        return list(self._live.values())

    @property
    def has_live(self) -> bool:
        """Some record is pending or running here."""
        return bool(self._live)

    def unflushed(self) -> list[TaskRecord]:
        return list(self._unflushed.values())

    @property
    def unflushed_ids(self) -> KeysView[str]:
        return self._unflushed.keys()

    def mark_flushed(self, records: list[TaskRecord]) -> None:
        for record in records:
            task_id = record.task_id
            if self._unflushed.get(task_id) is record:
                del self._unflushed[task_id]
                self.unflushed_bytes -= self._weights.get(task_id, 0)
                if task_id not in self._finished:
                    self._weights.pop(task_id, None)
                    self._calls.pop(task_id, None)

    def __iter__(self) -> Iterator[TaskRecord]:
        """Every record held: live, unflushed and the recent window, each id once."""
        seen: set[str] = set()
        for source in (self._live, self._unflushed, self._finished):
            for task_id, record in list(source.items()):
                if task_id not in seen:
                    seen.add(task_id)
                    yield record


def _text_bytes(record: TaskRecord) -> int:
    size = len(record.error or "") + len(record.traceback or "")
    if record.logs:  # bounded per task (taskflow.context): counted as stored
        size += len(orjson.dumps(record.logs))
    return size


def _stored_args_bytes(record: TaskRecord) -> int:
    if record.args is None and record.kwargs is None:
        return len(record.sealed_args or "")
    return len(orjson.dumps([storable(record.args), storable(record.kwargs)]))
