"""Filters that backends do not index (instance, part of a task id), served by a bounded scan.

The scan reads history pages with the indexed filters (status, function, time) and keeps the
records that also match here. One request examines at most :data:`SCAN_BUDGET` records; when it
runs out before filling a page it answers with what it found and a cursor that continues the scan,
so paging stays server-side and no request reads the whole history.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from taskflow.models import TaskRecord
from taskflow.query import Cursor, Page, TaskQuery, sort_ts

if TYPE_CHECKING:
    from taskflow.persistence.scheduler import SnapshotScheduler

#: Most records one request examines before it answers with a cursor to continue from.
SCAN_BUDGET = 5_000
#: Records read per history page while scanning.
SCAN_BATCH = 500


@dataclass(frozen=True, slots=True)
class ExtraFilter:
    """``instance_id`` must equal the record's; ``id_contains`` must occur in its task id."""

    instance_id: str | None = None
    id_contains: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.instance_id or self.id_contains)

    def matches(self, record: TaskRecord) -> bool:
        if self.instance_id and record.instance_id != self.instance_id:
            return False
        return not self.id_contains or self.id_contains in record.task_id


def _after(record: TaskRecord) -> str:
    return Cursor(sort_ts(record), record.task_id).encode()


async def scan(
    scheduler: SnapshotScheduler,
    query: TaskQuery,
    extra: ExtraFilter,
    *,
    budget: int = SCAN_BUDGET,
) -> Page:
    """One page of records matching ``query`` and ``extra``, newest first.

    Without extra filters this is one ordinary query. With them the page may hold fewer than
    ``query.limit`` records (even none) with a ``next_cursor`` when the budget ran out first: the
    next page continues where this scan stopped.
    """
    if not extra.active:
        return await scheduler.aquery(query)
    if extra.id_contains:  # a whole id, pasted: one lookup instead of a scan
        exact = await scheduler.aget(extra.id_contains)
        if exact is not None and query.matches(exact) and extra.matches(exact):
            return Page([exact], None)
    found: list[TaskRecord] = []
    batch = replace(query, limit=SCAN_BATCH)
    scanned = 0
    while True:
        page = await scheduler.aquery(batch)
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
