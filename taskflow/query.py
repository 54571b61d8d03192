"""History queries shared by the in-memory store and every backend: filters, pages, cursors."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from taskflow.models import TaskRecord, TaskStatus

#: Largest page a single query may return.
MAX_LIMIT = 1000


class InvalidQuery(ValueError):
    """A filter, limit or cursor that cannot be served (the API answers 422)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position after the last record of a page: its sort time (epoch seconds) and id."""

    sort_ts: float
    task_id: str

    def encode(self) -> str:
        raw = json.dumps([self.sort_ts, self.task_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            padded = text + "=" * (-len(text) % 4)
            sort_ts, task_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
            return cls(float(sort_ts), str(task_id))
        except (ValueError, TypeError) as exc:
            raise InvalidQuery(f"cursor {text!r} is not one this server issued") from exc

    def before(self, record: TaskRecord) -> bool:
        """True when ``record`` sorts after this cursor (i.e. belongs on a later page)."""
        return (sort_ts(record), record.task_id) < (self.sort_ts, self.task_id)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """What to list, newest first. ``since``/``until`` bound the sort time (inclusive)."""

    status: TaskStatus | None = None
    func_name: str | None = None
    limit: int = 100
    since: datetime | None = None
    until: datetime | None = None
    cursor: Cursor | None = None

    @classmethod
    def build(
        cls,
        *,
        status: str | TaskStatus | None = None,
        func_name: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | Cursor | None = None,
    ) -> TaskQuery:
        """Validate raw filters; :class:`InvalidQuery` says what is wrong."""
        if status is not None and not isinstance(status, TaskStatus):
            try:
                status = TaskStatus(status)
            except ValueError:
                allowed = ", ".join(s.value for s in TaskStatus)
                raise InvalidQuery(f"status {status!r} is not one of: {allowed}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        if isinstance(cursor, str):
            cursor = Cursor.decode(cursor)
        return cls(status, func_name, limit, _aware(since), _aware(until), cursor)

    def matches(self, record: TaskRecord) -> bool:
        if self.status is not None and record.status is not self.status:
            return False
        if self.func_name is not None and record.func_name != self.func_name:
            return False
        ts = sort_ts(record)
        if self.since is not None and ts < self.since.timestamp():
            return False
        if self.until is not None and ts > self.until.timestamp():
            return False
        return self.cursor is None or self.cursor.before(record)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of records, newest first, and the cursor for the next page (``None`` at the end)."""

    records: list[TaskRecord]
    next_cursor: str | None


def sort_ts(record: TaskRecord) -> float:
    return record.sort_time.timestamp()


def sort_key(record: TaskRecord) -> tuple[float, str]:
    """Key ordering records oldest first; lists use it reversed (newest first)."""
    return (sort_ts(record), record.task_id)


def page_of(records: Iterable[TaskRecord], query: TaskQuery) -> Page:
    """Filter, order newest first and cut one page from records already in memory."""
    selected = sorted((r for r in records if query.matches(r)), key=sort_key, reverse=True)
    return make_page(selected[: query.limit + 1], query.limit)


def make_page(newest_first: list[TaskRecord], limit: int) -> Page:
    """A page from up to ``limit + 1`` ordered records (the extra one says whether more exist)."""
    records = newest_first[:limit]
    more = len(newest_first) > limit
    cursor = Cursor(sort_ts(records[-1]), records[-1].task_id).encode() if more else None
    return Page(records, cursor)


def merge_pages(pages: Iterable[Page], limit: int) -> Page:
    """Merge pages of the same query from several sources, dropping duplicate ids."""
    by_id: dict[str, TaskRecord] = {}
    for page in pages:
        for record in page.records:
            known = by_id.get(record.task_id)
            if known is None or (record.status.finished and not known.status.finished):
                by_id[record.task_id] = record
    more_anywhere = any(p.next_cursor for p in pages)
    merged = sorted(by_id.values(), key=sort_key, reverse=True)
    page = make_page(merged[: limit + 1], limit)
    if page.next_cursor is None and more_anywhere and page.records:
        last = page.records[-1]
        return Page(page.records, Cursor(sort_ts(last), last.task_id).encode())
    return page


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value
