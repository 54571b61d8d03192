"""Bulk reads and deletes of a selection of finished records (see
:class:`~taskflow.query.Selection`), over this instance's memory and the shared backend.

What bulk actions need that listings do not: an exact count first (the backend counts its rows,
memory adds the records not written yet), every matching record in turn (for a bulk retry), and
a purge that deletes the backend's records and this instance's copies together, so that a purged
record is not written again by a later flush nor listed from memory. Unlike listings, a bulk
action refuses to run on memory alone while a backend is configured but not ready: a count or a
purge of part of the history would mislead.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from taskflow.backends.base import BackendError, HistoryBackend
from taskflow.models import TaskRecord
from taskflow.persistence.health import BackendHealth
from taskflow.persistence.history import History
from taskflow.persistence.store import TaskStore
from taskflow.query import Cursor, Selection, TaskQuery, sort_key

T = TypeVar("T")

#: Records one purge deletes when the caller names no ``limit``.
DEFAULT_PURGE_LIMIT = 10_000
#: Most records one purge may delete (a larger ``limit`` is refused: purge again instead).
MAX_PURGE_LIMIT = 100_000
#: Longest a bulk count or purge may wait for the backend (seconds).
BULK_TIMEOUT = 30.0
#: Records read per page while walking a selection.
WALK_BATCH = 200


class BackendUnavailable(BackendError):
    """A bulk action needs the backend, which is configured but not ready (the API: 503)."""


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a purge did: ``matched`` records matched before it began, ``purged`` were deleted,
    ``more`` says that matching records remain (the limit was reached): purge again."""

    matched: int
    purged: int
    more: bool


class Bulk:
    """Counts, walks and purges selections for one instance."""

    def __init__(
        self,
        store: TaskStore,
        backend: HistoryBackend | None,
        health: BackendHealth,
        history: History,
        flush: Callable[[], Awaitable[bool]],
    ) -> None:
        self.store = store
        self.backend = backend
        self.health = health
        self.history = history
        self.flush = flush

    def _ready_backend(self) -> HistoryBackend | None:
        if self.backend is None:
            return None
        if not self.health.ready:
            raise BackendUnavailable(
                f"the history backend {self.backend.describe()} is not ready "
                f"({self.health.last_error or 'not connected'}); try again when it is"
            )
        return self.backend

    async def count(self, selection: Selection) -> int:
        """Matching records in the backend plus this instance's not yet written."""
        local = [record for record in self.store if selection.matches(record)]
        backend = self._ready_backend()
        if backend is None:
            return len(local)
        stored = await _within(backend.count_selected(selection), "count")
        unflushed = self.store.unflushed_ids
        return stored + sum(1 for record in local if record.task_id in unflushed)

    async def walk(
        self, selection: Selection, cursor: Cursor | None = None
    ) -> AsyncGenerator[TaskRecord, None]:
        """Every matching record newest first, after ``cursor`` when given (memory merged with
        the backend, as listings are): the per-status listings merged, so that the position of
        the last record taken is a cursor to continue from."""
        self._ready_backend()
        streams = [
            self._listed(selection, query) for query in selection.queries(WALK_BATCH, cursor)
        ]
        heads: list[tuple[_Newest, int]] = []
        for number, stream in enumerate(streams):
            first = await anext(stream, None)
            if first is not None:
                heapq.heappush(heads, (_Newest(first), number))
        while heads:
            newest, number = heapq.heappop(heads)
            yield newest.record
            following = await anext(streams[number], None)
            if following is not None:
                heapq.heappush(heads, (_Newest(following), number))

    async def _listed(
        self, selection: Selection, query: TaskQuery
    ) -> AsyncGenerator[TaskRecord, None]:
        while True:
            page = await self.history.aquery(query)
            for record in page.records:
                if selection.matches(record):  # as listed, not as it may have changed since
                    yield record
            if page.next_cursor is None:
                return
            query = replace(query, cursor=Cursor.decode(page.next_cursor))

    async def purge(self, selection: Selection, limit: int) -> PurgeResult:
        """Delete up to ``limit`` matching records, oldest first, from the backend and from
        this instance's memory (the records another instance holds in its memory leave its
        listings too: they are read from the backend).

        What this instance has not written yet is written first, so the backend's purge sees
        it, rather than dropped from memory while a write carrying it is under way (which
        would store it again after the purge). A task that finishes during the purge may be
        left; purge again.
        """
        backend = self._ready_backend()
        if backend is not None:
            await self.flush()
        matched = await self.count(selection)
        purged = 0
        if backend is not None:
            purged = await _within(backend.purge(selection, limit), "purge")
        everything = backend is None or purged < limit  # nothing matching is left stored
        unflushed = self.store.unflushed_ids
        # Oldest first, as the backend deletes: those not written yet count toward the limit.
        local = sorted(
            (record for record in self.store if selection.matches(record)),
            key=lambda record: (record.sort_time, record.task_id),
        )
        for record in local:
            if backend is None or record.task_id in unflushed:
                if purged >= limit:
                    break
                self.store.forget_finished(record.task_id)
                purged += 1
            elif everything:
                # A copy of a record the backend deleted. Copies of records still stored are
                # left (listings read those from the backend anyway).
                self.store.forget_finished(record.task_id)
        return PurgeResult(matched, purged, purged < matched)


@dataclass(frozen=True, slots=True)
class _Newest:
    """A record in a min-heap that pops the newest first (sort time, then id, descending)."""

    record: TaskRecord

    def __lt__(self, other: _Newest) -> bool:
        return sort_key(self.record) > sort_key(other.record)


async def _within(call: Awaitable[T], action: str) -> T:
    """``call`` within :data:`BULK_TIMEOUT`; a timeout or a network error as BackendError."""
    try:
        return await asyncio.wait_for(call, BULK_TIMEOUT)
    except (asyncio.TimeoutError, OSError) as exc:
        raise BackendError(f"the history backend did not {action}: {exc!r}") from exc
