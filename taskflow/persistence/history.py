"""History reads: this instance's records in memory merged with the backend's, newest first.

The backend is the source of truth for anything finished, and nothing caches it: a task another
instance finished a few milliseconds ago is listed. Reads never change the backend's health
(only pings and writes do): a read that fails is logged and served from memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from taskflow.backends.base import BackendError, HistoryBackend
from taskflow.models import TaskRecord
from taskflow.persistence.health import BackendHealth
from taskflow.persistence.store import TaskStore
from taskflow.query import Cursor, Page, TaskQuery, merge_pages, page_of, sort_ts

logger = logging.getLogger("taskflow.persistence")

T = TypeVar("T")

#: Longest one read of the backend may take before it is served from memory instead (seconds):
#: a backend that hangs is noticed within a few seconds and then not read at all.
READ_TIMEOUT = 2.0
#: How long a synchronous ``query()`` from another thread waits for the server's event loop.
SYNC_QUERY_TIMEOUT = 30.0
#: Most records one scan (filters the backends do not index) examines before it answers with a
#: cursor to continue from.
SCAN_BUDGET = 5_000
#: Records read per history page while scanning.
SCAN_BATCH = 500


@dataclass(frozen=True, slots=True)
class ExtraFilter:
    """Filters the backends do not index: ``instance_id`` must equal the record's;
    ``id_contains`` must occur in its task id."""

    instance_id: str | None = None
    id_contains: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.instance_id or self.id_contains)

    def matches(self, record: TaskRecord) -> bool:
        if self.instance_id and record.instance_id != self.instance_id:
            return False
        return not self.id_contains or self.id_contains in record.task_id


@dataclass(frozen=True, slots=True)
class Counts:
    """Records by status and by function over everything stored plus this instance's own."""

    by_status: dict[str, int]
    by_func: dict[str, int]


class History:
    """Reads of one instance: ``backend`` is ``None`` in memory only."""

    def __init__(
        self,
        store: TaskStore,
        backend: HistoryBackend | None,
        health: BackendHealth,
        *,
        live_in_backend: bool,
    ) -> None:
        self.store = store
        self.backend = backend
        self.health = health
        self.live_in_backend = live_in_backend
        self.loop: asyncio.AbstractEventLoop | None = None

    def _backend(self) -> HistoryBackend | None:
        """The backend to read, or ``None`` to answer from memory: while it is not ready (down,
        hung, refusing writes) a read would wait for its timeouts, and a listing, the dashboard
        and the metrics would hang with it."""
        if self.backend is None or not self.health.ready:
            return None
        return self.backend

    async def aquery(self, query: TaskQuery) -> Page:
        """One page of records matching ``query``, newest first.

        With the backend answering, memory adds only what the backend may not hold (live
        records, finished ones not written yet): a finished record deleted there (pruned,
        purged from any instance) is not listed again from this instance's memory. The local
        part is taken before the backend is read, so a record written meanwhile is in one or
        the other.
        """
        backend = self._backend()
        if backend is None:
            return page_of(self.store, query)
        local = page_of(self.store.not_written(), query)
        try:
            stored = await asyncio.wait_for(backend.query(query), READ_TIMEOUT)
        except (BackendError, OSError, asyncio.TimeoutError) as exc:
            # Readiness is the pings' and the writes' to say: a read failing alone (and a
            # query no backend could serve) must not take the instance out of rotation.
            logger.warning("taskflow history read from %s failed: %r", backend.describe(), exc)
            return page_of(self.store, query)
        return merge_pages([local, stored], query.limit)

    async def aget(self, task_id: str) -> TaskRecord | None:
        """The record with this id from memory or, failing that, from the backend; raises
        :class:`~taskflow.backends.codec.UnreadableRecord` for one stored but unreadable."""
        record = self.store.get(task_id)
        backend = self._backend()
        if record is not None or backend is None:
            return record
        try:
            return await asyncio.wait_for(backend.get(task_id), READ_TIMEOUT)
        except (BackendError, OSError, asyncio.TimeoutError) as exc:
            logger.warning("taskflow read of %s failed: %r", task_id, exc)
            return None

    def query(self, query: TaskQuery) -> Page:
        """:meth:`aquery` as a plain call: from scripts, sync route handlers (worker threads),
        before the app starts. Called on the event loop itself (inside ``async def``), where
        waiting for the backend would block every request, it answers from this instance's
        memory: its own live and recent records and the history restored at startup."""
        if _loop_running():
            return page_of(self.store, query)
        return self._run_sync(self._detached(query))

    def get(self, task_id: str) -> TaskRecord | None:
        """:meth:`aget` as a plain call (on the event loop: from memory only, as :meth:`query`)."""
        if _loop_running():
            return self.store.get(task_id)
        return self._run_sync(self._detached_get(task_id))

    async def scan(
        self, query: TaskQuery, extra: ExtraFilter, *, budget: int = SCAN_BUDGET
    ) -> Page:
        """One page of records matching ``query`` and ``extra``, newest first.

        Without extra filters this is one ordinary query. With them it reads history pages
        with the indexed filters and keeps the records that also match; one request examines
        at most ``budget`` records, and when the budget runs out before a page is full it
        answers with what it found (even nothing) and a ``next_cursor`` that continues the
        scan: paging stays server-side and no request reads the whole history.
        """
        if not extra.active:
            return await self.aquery(query)
        if extra.id_contains:  # a whole id, pasted: one lookup instead of a scan
            exact = await self.aget(extra.id_contains)
            if exact is not None and query.matches(exact) and extra.matches(exact):
                return Page([exact], None)
        found: list[TaskRecord] = []
        batch = replace(query, limit=SCAN_BATCH)
        scanned = 0
        while True:
            page = await self.aquery(batch)
            for record in page.records:
                scanned += 1
                if extra.matches(record):
                    found.append(record)
                    if len(found) > query.limit:  # one more than a page: more exist
                        return Page(found[: query.limit], _after(found[query.limit - 1]))
                if scanned >= budget:
                    return Page(found, _after(record))
            if page.next_cursor is None:
                return Page(found, None)
            batch = replace(batch, cursor=Cursor.decode(page.next_cursor))

    async def counts(self) -> Counts:
        """All stored history plus this instance's live and unflushed records, each once."""
        by_status: Counter[str] = Counter()
        by_func: Counter[str] = Counter()
        backend = self._backend()
        history_counted = False
        if backend is not None:
            try:
                counts = await asyncio.wait_for(backend.counts(), READ_TIMEOUT)
            except (BackendError, OSError, asyncio.TimeoutError):
                pass
            else:
                by_status.update(counts.by_status)
                by_func.update(counts.by_func)
                history_counted = True
        # The backend's counts include this instance's records once they are written: finished
        # ones when flushed, live ones too when live records are persisted (the cluster view).
        live_in_history = history_counted and self.live_in_backend
        unflushed = self.store.unflushed_ids
        for record in self.store:
            if record.status.finished:
                counted = history_counted and record.task_id not in unflushed
            else:
                counted = live_in_history
            if not counted:
                by_status[record.status.value] += 1
                by_func[record.func_name] += 1
        return Counts(dict(by_status), dict(by_func))

    async def _detached(self, query: TaskQuery) -> Page:
        if self.loop is not None and asyncio.get_running_loop() is self.loop:
            return await self.aquery(query)
        if self.backend is None:
            return page_of(self.store, query)
        backend = self.backend.clone()
        await backend.open()
        try:
            stored = await backend.query(query)
        finally:
            await backend.close()
        return merge_pages([page_of(self.store, query), stored], query.limit)

    async def _detached_get(self, task_id: str) -> TaskRecord | None:
        if self.loop is not None and asyncio.get_running_loop() is self.loop:
            return await self.aget(task_id)
        record = self.store.get(task_id)
        if record is not None or self.backend is None:
            return record
        backend = self.backend.clone()
        await backend.open()
        try:
            return await backend.get(task_id)
        finally:
            await backend.close()

    def _run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.loop is not None and self.loop.is_running():
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
            return future.result(timeout=SYNC_QUERY_TIMEOUT)
        return asyncio.run(coro)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _after(record: TaskRecord) -> str:
    return Cursor(sort_ts(record), record.task_id).encode()
