"""The schedule contract kept in one process: for a manager without a backend, or with a
history-only one. Ticks are then claimed once per process, and delayed tasks live and die with
it."""

from __future__ import annotations

import heapq
from dataclasses import replace
from datetime import datetime

from taskflow.backends.base import ScheduleBackend, ScheduleState
from taskflow.models import TaskRecord, TaskStatus


class MemorySchedules(ScheduleBackend):
    """:class:`~taskflow.backends.base.ScheduleBackend` in memory. Only one event loop uses
    it, and no method awaits anything, so each is atomic."""

    def __init__(self) -> None:
        self._states: dict[str, ScheduleState] = {}
        self._delayed: dict[str, TaskRecord] = {}
        self._queue: list[tuple[datetime, str]] = []

    async def claim_tick(self, name: str, tick: datetime, run: TaskRecord) -> bool:
        state = self._states.setdefault(name, ScheduleState(name))
        if state.paused or (state.last_tick is not None and tick <= state.last_tick):
            return False
        state.last_tick, state.last_task_id = tick, run.task_id
        return True  # the run's record is this process's own: the store holds it

    async def schedule_states(self) -> dict[str, ScheduleState]:
        return {name: replace(state) for name, state in self._states.items()}

    async def set_paused(self, name: str, paused: bool) -> None:
        self._states.setdefault(name, ScheduleState(name)).paused = paused

    async def add_delayed(self, record: TaskRecord) -> None:
        if record.status is not TaskStatus.SCHEDULED or record.scheduled_for is None:
            raise ValueError("a delayed task is stored with status scheduled and its time")
        self._delayed[record.task_id] = record
        heapq.heappush(self._queue, (record.scheduled_for, record.task_id))

    async def next_due(self) -> datetime | None:
        self._drop_stale()
        return self._queue[0][0] if self._queue else None

    async def claim_due(self, now: datetime, new_owner: str, limit: int) -> list[TaskRecord]:
        claimed: list[TaskRecord] = []
        self._drop_stale()
        while self._queue and self._queue[0][0] <= now and len(claimed) < limit:
            _, task_id = heapq.heappop(self._queue)
            record = self._delayed.pop(task_id)
            record.instance_id = new_owner
            claimed.append(record)
            self._drop_stale()
        return claimed

    def _drop_stale(self) -> None:
        # Entries of a task added again with another time: the newest time counts.
        queue, delayed = self._queue, self._delayed
        while queue and (
            queue[0][1] not in delayed or delayed[queue[0][1]].scheduled_for != queue[0][0]
        ):
            heapq.heappop(queue)
