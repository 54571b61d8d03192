"""History queries shared by the in-memory store and every backend: filters, pages, cursors."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from taskflow.models import TaskRecord, TaskStatus, check_tag

#: Largest page a single query may return.
MAX_LIMIT = 1000
#: Longest cursor text accepted; the cursors this server issues are about 80 characters.
MAX_CURSOR_CHARS = 1024
#: Longest task id a cursor may carry (ids are 32 hex digits).
MAX_CURSOR_ID_CHARS = 256
#: Sort times a cursor may carry: those a datetime can hold (years 1 to 9999, UTC).
MIN_SORT_TS = datetime(1, 1, 1, tzinfo=timezone.utc).timestamp()
MAX_SORT_TS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()


class InvalidQuery(ValueError):
    """A filter, limit or cursor that cannot be served (the API answers 422).

    ``field`` names the parameter at fault (``"status"``, ``"limit"``, ``"cursor"``).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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
        """The cursor :meth:`encode` made, or :class:`InvalidQuery` for anything else.

        Strict, so that nothing a client makes up reaches a backend: bounded length, strict
        base64 and UTF-8, a finite sort time a datetime can hold, a bounded id that encodes to
        UTF-8 (no lone surrogates).
        """
        try:
            return cls._parse(text)
        except (ValueError, TypeError, RecursionError) as exc:
            raise InvalidQuery(
                f"cursor {_short(text)!r} is not one this server issued", field="cursor"
            ) from exc

    @classmethod
    def _parse(cls, text: str) -> Cursor:
        if len(text) > MAX_CURSOR_CHARS:
            raise ValueError(f"longer than {MAX_CURSOR_CHARS} characters")
        padded = text + "=" * (-len(text) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError("not a pair")
        sort_ts, task_id = value
        # bool is an int; NaN fails both comparisons; a huge int fails them before float().
        if isinstance(sort_ts, bool) or not isinstance(sort_ts, (int, float)):
            raise TypeError("the sort time is not a number")
        if not MIN_SORT_TS <= sort_ts <= MAX_SORT_TS:
            raise ValueError("the sort time is out of range")
        if not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_CURSOR_ID_CHARS:
            raise ValueError("the task id is not a short string")
        task_id.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates
        return cls(float(sort_ts), task_id)

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
    #: Tags every listed record carries (AND), as ``(key, value)`` pairs, sorted.
    tags: tuple[tuple[str, str], ...] = ()

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
        tags: dict[str, str] | Iterable[str] | None = None,
    ) -> TaskQuery:
        """Validate raw filters; :class:`InvalidQuery` says what is wrong. ``tags``: a dict, or
        ``"key:value"`` strings (as ``GET /tasks?tag=key:value``), all of which must match."""
        if status is not None and not isinstance(status, TaskStatus):
            try:
                status = TaskStatus(status)
            except ValueError:
                allowed = ", ".join(s.value for s in TaskStatus)
                raise InvalidQuery(
                    f"status {_short(status)!r} is not one of: {allowed}", field="status"
                ) from None
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidQuery(
                f"limit must be between 1 and {MAX_LIMIT}, got {limit}", field="limit"
            )
        if isinstance(cursor, str):
            cursor = Cursor.decode(cursor)
        pairs = _tag_pairs(tags) if tags else ()
        return cls(status, func_name, limit, _aware(since), _aware(until), cursor, pairs)

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
        if self.tags:
            held = record.tags or {}
            if any(held.get(key) != value for key, value in self.tags):
                return False
        return self.cursor is None or self.cursor.before(record)


@dataclass(frozen=True, slots=True)
class Selection:
    """Finished records chosen by filters for a bulk action (a bulk retry, a purge): any of
    ``statuses`` (terminal ones only), one function, a range of sort times (inclusive)."""

    statuses: frozenset[TaskStatus]
    func_name: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def build(
        cls,
        *,
        allowed: frozenset[TaskStatus],
        status: str | TaskStatus | None = None,
        func_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Selection:
        """Validate raw filters; ``status`` ``None`` means every status of ``allowed`` (which
        must hold terminal statuses only). :class:`InvalidQuery` says what is wrong."""
        if not allowed or not all(s.finished for s in allowed):
            raise ValueError("a selection holds terminal statuses only")
        names = ", ".join(sorted(s.value for s in allowed))
        if status is None:
            statuses = allowed
        else:
            try:
                chosen = TaskStatus(status)
            except ValueError:
                raise InvalidQuery(
                    f"status {_short(str(status))!r} is not one of: {names}", field="status"
                ) from None
            if chosen not in allowed:
                raise InvalidQuery(
                    f"status {chosen.value!r} is not one of: {names}", field="status"
                )
            statuses = frozenset({chosen})
        if func_name is not None and not func_name:
            raise InvalidQuery("func_name must not be empty", field="func_name")
        since, until = _aware(since), _aware(until)
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and not _in_range(moment):
                raise InvalidQuery(f"{name} is out of range", field=name)
        if since is not None and until is not None and since > until:
            raise InvalidQuery("since is later than until", field="since")
        return cls(statuses, func_name, since, until)

    @property
    def status_values(self) -> tuple[str, ...]:
        """The statuses as stored, sorted (for SQL lists and index names)."""
        return tuple(sorted(s.value for s in self.statuses))

    def matches(self, record: TaskRecord) -> bool:
        if record.status not in self.statuses or not record.status.finished:
            return False
        if self.func_name is not None and record.func_name != self.func_name:
            return False
        ts = sort_ts(record)
        if self.since is not None and ts < self.since.timestamp():
            return False
        return self.until is None or ts <= self.until.timestamp()

    def queries(self, limit: int, cursor: Cursor | None = None) -> list[TaskQuery]:
        """One history query per status whose pages together list the selection (after
        ``cursor``, a position in the newest-first order every listing shares)."""
        return [
            TaskQuery(status, self.func_name, limit, self.since, self.until, cursor)
            for status in sorted(self.statuses, key=lambda s: s.value)
        ]


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


#: Most tag filters one query may combine.
MAX_TAG_FILTERS = 8


def _tag_pairs(tags: dict[str, str] | Iterable[str]) -> tuple[tuple[str, str], ...]:
    if isinstance(tags, dict):
        items = list(tags.items())
    else:
        items = []
        for text in tags:
            key, colon, value = str(text).partition(":")
            if not colon:
                raise InvalidQuery(f"tag {_short(str(text))!r} must be key:value", field="tag")
            items.append((key, value))
    if len(items) > MAX_TAG_FILTERS:
        raise InvalidQuery(f"at most {MAX_TAG_FILTERS} tag filters", field="tag")
    for key, value in items:
        try:
            check_tag(key, value)
        except ValueError as exc:
            raise InvalidQuery(str(exc), field="tag") from None
    return tuple(sorted(set(items)))


def cursor_after(record: TaskRecord) -> str:
    """The cursor of the position just after ``record`` in the newest-first order."""
    return Cursor(sort_ts(record), record.task_id).encode()


def _short(text: str, limit: int = 40) -> str:
    """``text`` cut for an error message (a client may send megabytes)."""
    return text if len(text) <= limit else text[:limit] + "..."


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a sort time")


def _in_range(moment: datetime) -> bool:
    try:
        return MIN_SORT_TS <= moment.timestamp() <= MAX_SORT_TS
    except (OverflowError, ValueError, OSError):
        return False


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value
