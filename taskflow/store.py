"""Bounded in-memory store of this instance's live and recently finished records."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, KeysView
from dataclasses import dataclass
from typing import Any

from taskflow.models import TaskRecord

logger = logging.getLogger("taskflow.store")


@dataclass(slots=True)
class CallSpec:
    """How a task was called: kept in memory only, so it can be run again (retry)."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class TaskStore:
    """Live records (pending, running), a window of recent finished ones, and the unflushed.

    Memory stays bounded: the finished window holds at most ``max_records`` records, and when
    persistence is on, finished records that are not yet written to the backend are held apart
    (at most ``max_unflushed``) so a record leaves memory only after it is persisted.
    """

    def __init__(self, *, max_records: int = 10_000, max_unflushed: int = 100_000) -> None:
        if max_records < 1 or max_unflushed < 1:
            raise ValueError("max_records and max_unflushed must be at least 1")
        self.max_records = max_records
        self.max_unflushed = max_unflushed
        self._live: dict[str, TaskRecord] = {}
        self._finished: OrderedDict[str, TaskRecord] = OrderedDict()
        self._unflushed: OrderedDict[str, TaskRecord] = OrderedDict()
        self._calls: dict[str, CallSpec] = {}
        self._dirty_live: dict[str, TaskRecord] = {}
        self._held: set[str] = set()
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
        if record.task_id in self._live and record.task_id not in self._held:
            self._dirty_live[record.task_id] = record

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
        """Forget a record that will never run (another instance holds its id)."""
        self._held.discard(task_id)
        self._live.pop(task_id, None)
        self._dirty_live.pop(task_id, None)
        self._calls.pop(task_id, None)

    def finish(self, record: TaskRecord) -> None:
        """Move a record that reached a terminal status out of the live set."""
        self._live.pop(record.task_id, None)
        self._remember(record)
        if self.track_unflushed:
            self._unflushed[record.task_id] = record
            self._unflushed.move_to_end(record.task_id)
            if len(self._unflushed) > self.max_unflushed:
                lost_id, _ = self._unflushed.popitem(last=False)
                self.dropped_unflushed += 1
                logger.error(
                    "taskflow unflushed buffer is full (%d records): dropped record %s; "
                    "the backend has been failing for too long",
                    self.max_unflushed,
                    lost_id,
                )

    def restore(self, records: list[TaskRecord]) -> None:
        """Put records read from the backend into the finished window (oldest first)."""
        for record in reversed(records):
            if record.task_id not in self._live and record.status.finished:
                self._remember(record)

    def _remember(self, record: TaskRecord) -> None:
        self._finished[record.task_id] = record
        self._finished.move_to_end(record.task_id)
        while len(self._finished) > self.max_records:
            old_id, _ = self._finished.popitem(last=False)
            if old_id not in self._unflushed:
                self._calls.pop(old_id, None)

    def live(self) -> list[TaskRecord]:
        return list(self._live.values())

    def unflushed(self) -> list[TaskRecord]:
        return list(self._unflushed.values())

    @property
    def unflushed_ids(self) -> KeysView[str]:
        return self._unflushed.keys()

    def mark_flushed(self, records: list[TaskRecord]) -> None:
        for record in records:
            if self._unflushed.get(record.task_id) is record:
                del self._unflushed[record.task_id]
                if record.task_id not in self._finished:
                    self._calls.pop(record.task_id, None)

    def __iter__(self) -> Iterator[TaskRecord]:
        """Every record held: live, unflushed and the recent window, each id once."""
        seen: set[str] = set()
        for source in (self._live, self._unflushed, self._finished):
            for task_id, record in list(source.items()):
                if task_id not in seen:
                    seen.add(task_id)
                    yield record
