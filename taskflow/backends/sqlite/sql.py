"""The SQL the SQLite backend runs against the ``tasks`` table, and the rows it binds."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from taskflow.backends.codec import KEY_HOLDER_VALUES, LIVE_VALUES, TERMINAL_VALUES, RecordCodec
from taskflow.models import TaskRecord
from taskflow.query import Selection, TaskQuery, sort_ts


def sql_list(values: tuple[str, ...]) -> str:
    """``('a', 'b')``: a status set as an SQL list (the values are the enum's, never input)."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


_TERMINAL = ", ".join(f"'{value}'" for value in TERMINAL_VALUES)
#: The live statuses and the idempotency key holders, as SQL lists.
LIVE_SQL = sql_list(LIVE_VALUES)
KEY_HOLDERS_SQL = sql_list(KEY_HOLDER_VALUES)

#: The INTO ... VALUES part of every insert of a row built by :func:`task_row`.
TASK_INSERT = """INTO tasks
    (task_id, func_name, status, sort_ts, created_ts, end_ts, instance_id, data, tags)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"""

# A stale live copy (pending/running) never replaces a finished row, and a row another instance
# took over (claim_live made it its owner) is not replaced by its former owner's copy (a late
# result: see owners_refused); anything else is upserted. The owner '' parks a task for requeue.
UPSERT = f"""
    INSERT {TASK_INSERT}
    ON CONFLICT (task_id) DO UPDATE SET
        func_name = excluded.func_name, status = excluded.status, sort_ts = excluded.sort_ts,
        created_ts = excluded.created_ts, end_ts = excluded.end_ts,
        instance_id = excluded.instance_id, data = excluded.data, tags = excluded.tags
    WHERE (tasks.status NOT IN ({_TERMINAL}) OR excluded.status IN ({_TERMINAL}))
        AND (tasks.instance_id = excluded.instance_id OR excluded.instance_id = '')
"""

#: The ``task_tags`` rows of one stored task (its id bound), from its row as stored: run after
#: the upsert that wrote it, for tagged records only; a later sort time replaces the earlier.
TAGS_OF = """
    INSERT OR REPLACE INTO task_tags (tag, task_id, sort_ts)
    SELECT j.key || ':' || j.value, tasks.task_id, tasks.sort_ts
    FROM tasks, json_each(tasks.tags) AS j
    WHERE tasks.task_id = ? AND tasks.tags IS NOT NULL
"""
#: ``task_tags`` rows whose task is gone (after retention removed finished tasks).
PRUNE_TAGS = """
    DELETE FROM task_tags
    WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.task_id = task_tags.task_id)
"""

#: Most ids one ``IN (...)`` list binds (SQLite's variable limit is 32,766 since 3.32).
IN_CHUNK = 500

PRUNE_OLDER = f"DELETE FROM tasks WHERE status IN ({_TERMINAL}) AND sort_ts < ?"

# Every finished row at or past the (keep+1)-th newest finished one; no such row: nothing.
# The subquery walks the newest-first index (status is in it) for about `keep` entries; left to
# itself the planner would sort every finished row instead.
PRUNE_BEYOND = f"""
    DELETE FROM tasks WHERE status IN ({_TERMINAL}) AND (sort_ts, task_id) <= (
        SELECT sort_ts, task_id FROM tasks INDEXED BY tasks_by_time
        WHERE status IN ({_TERMINAL})
        ORDER BY sort_ts DESC, task_id DESC LIMIT 1 OFFSET ?)
"""

#: How rows are read: as bytes, decoded here, so that a row whose text is not valid UTF-8 (written
#: by hand or by another program) is skipped alone instead of failing the whole fetch.
READ_COLUMNS = "CAST(task_id AS BLOB), CAST(data AS BLOB)"

COUNT_BY_STATUS = "SELECT status, COUNT(*) FROM tasks GROUP BY status"
COUNT_BY_FUNC = "SELECT func_name, COUNT(*) FROM tasks GROUP BY func_name"


def select_sql(query: TaskQuery, after: tuple[float, str] | None = None) -> tuple[str, list[Any]]:
    """The SELECT serving ``query``, newest first; its LIMIT value (the last ``?``) is not bound.

    ``after`` is a (sort_ts, task_id) position to continue strictly after. Every combination of
    filters is served by one index of the schema, walked in order (no sort step); with tags,
    the first tag's range of ``task_tags`` is walked in order and the rest are checked per row.
    """
    where: list[str] = []
    params: list[Any] = []
    # With tags, the listing order comes from task_tags (t), joined to its tasks rows.
    order_of = "t." if query.tags else ""
    if query.tags:
        (key, value), *others = query.tags
        where.append("t.tag = ?")
        params.append(f"{key}:{value}")
        for key, value in others:
            where.append(
                "EXISTS (SELECT 1 FROM task_tags o WHERE o.tag = ? AND o.task_id = t.task_id)"
            )
            params.append(f"{key}:{value}")
    if query.status is not None:
        where.append("tasks.status = ?")
        params.append(query.status.value)
    if query.func_name is not None:
        where.append("tasks.func_name = ?")
        params.append(query.func_name)
    if query.since is not None:
        where.append(f"{order_of}sort_ts >= ?")
        params.append(query.since.timestamp())
    if query.until is not None:
        where.append(f"{order_of}sort_ts <= ?")
        params.append(query.until.timestamp())
    cursor = (query.cursor.sort_ts, query.cursor.task_id) if query.cursor else None
    for position in (cursor, after):
        if position is not None:
            where.append(f"({order_of}sort_ts, {order_of}task_id) < (?, ?)")
            params.extend(position)
    filters = f" WHERE {' AND '.join(where)}" if where else ""
    order = f"ORDER BY {order_of}sort_ts DESC, {order_of}task_id DESC LIMIT ?"
    if query.tags:
        columns = "CAST(tasks.task_id AS BLOB), CAST(tasks.data AS BLOB), t.sort_ts"
        source = "task_tags t JOIN tasks ON tasks.task_id = t.task_id"
        return f"SELECT {columns} FROM {source}{filters} {order}", params
    return f"SELECT {READ_COLUMNS}, sort_ts FROM tasks{filters} {order}", params


def selection_sql(selection: Selection) -> tuple[str, list[Any]]:
    """The WHERE clause (without the keyword) of the finished rows ``selection`` matches.

    The terminal condition is always there, so a bulk action never touches a live row.
    """
    statuses = selection.status_values
    where = [f"status IN ({_TERMINAL})", f"status IN ({', '.join('?' * len(statuses))})"]
    params: list[Any] = list(statuses)
    if selection.func_name is not None:
        where.append("func_name = ?")
        params.append(selection.func_name)
    if selection.since is not None:
        where.append("sort_ts >= ?")
        params.append(selection.since.timestamp())
    if selection.until is not None:
        where.append("sort_ts <= ?")
        params.append(selection.until.timestamp())
    return " AND ".join(where), params


def count_selected_sql(selection: Selection) -> tuple[str, list[Any]]:
    where, params = selection_sql(selection)
    return f"SELECT COUNT(*) FROM tasks WHERE {where}", params


def purge_sql(selection: Selection, limit: int) -> tuple[str, list[Any]]:
    """Delete the ``limit`` oldest rows ``selection`` matches (walked on the status index)."""
    where, params = selection_sql(selection)
    oldest = f"SELECT task_id FROM tasks WHERE {where} ORDER BY sort_ts, task_id LIMIT ?"
    return f"DELETE FROM tasks WHERE task_id IN ({oldest})", [*params, limit]


def task_row(codec: RecordCodec, record: TaskRecord) -> tuple[Any, ...]:
    """The values :data:`UPSERT` binds for ``record`` (its JSON encoded here, once)."""
    record, data = codec.encode(record)  # values orjson refuses are made safe: SQLite's too
    end = record.end_time
    return (
        record.task_id,
        record.func_name,
        record.status.value,
        sort_ts(record),
        record.created_at.timestamp(),
        end.timestamp() if end is not None else None,
        record.instance_id,
        data.decode(),
        orjson.dumps(record.tags).decode() if record.tags else None,
    )


def read_row(codec: RecordCodec, task_id: bytes, data: bytes) -> TaskRecord | None:
    """The record of a row read as :data:`READ_COLUMNS` (``None`` when it cannot be decoded)."""
    return codec.decode(data, task_id.decode("utf-8", "replace"))


def owners_refused(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[str]:
    """Ids of ``rows`` (as :func:`task_row` makes them) that :data:`UPSERT` did not write
    because another instance owns them now; run in the same transaction, after it."""
    written = {row[0]: row[6] for row in rows}  # task id -> the owner the row was written with
    refused = []
    ids = list(written)
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT task_id, instance_id FROM tasks WHERE task_id IN ({marks})"
        for task_id, owner in conn.execute(sql, chunk):
            if owner != written[task_id] and written[task_id] != "":
                refused.append(task_id)
    return refused
