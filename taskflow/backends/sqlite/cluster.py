"""The SQLite backend's cluster operations: instance registry, claiming live records,
idempotent inserts. Each function is one step run inside a ``BEGIN IMMEDIATE`` transaction
(or a read), so the check and the change it guards happen under the write lock."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import aiosqlite

from taskflow.backends.base import CANCEL_BATCH, CANCEL_REQUEST_TTL, InstanceInfo
from taskflow.backends.codec import RecordCodec
from taskflow.backends.sqlite.sql import (
    KEY_HOLDERS_SQL,
    LIVE_SQL,
    READ_COLUMNS,
    TAGS_OF,
    TASK_INSERT,
    read_row,
    task_row,
)
from taskflow.models import TaskRecord, epoch

logger = logging.getLogger("taskflow.backends.sqlite")


HEARTBEAT = """
    INSERT INTO instances (instance_id, host, pid, started_ts, heartbeat) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (instance_id) DO UPDATE SET heartbeat = excluded.heartbeat
"""


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


async def heartbeat(conn: aiosqlite.Connection, info: InstanceInfo) -> None:
    row = (
        info.instance_id,
        info.host,
        info.pid,
        epoch(info.started_at),
        epoch(info.last_heartbeat),
    )
    await conn.execute(HEARTBEAT, row)


async def deregister(conn: aiosqlite.Connection, instance_id: str) -> None:
    await conn.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))


async def instances(conn: aiosqlite.Connection) -> list[InstanceInfo]:
    rows = await conn.execute_fetchall(
        "SELECT instance_id, host, pid, started_ts, heartbeat FROM instances ORDER BY instance_id"
    )
    return [InstanceInfo(str(i), str(h), int(p), _time(s), _time(b)) for i, h, p, s, b in rows]


async def expire_instances(conn: aiosqlite.Connection, heartbeat_before: datetime) -> list[str]:
    rows = await conn.execute_fetchall(
        "DELETE FROM instances WHERE heartbeat < ? RETURNING instance_id",
        (epoch(heartbeat_before),),
    )
    return sorted(str(row[0]) for row in rows)


async def live_owners(conn: aiosqlite.Connection) -> set[str]:
    rows = await conn.execute_fetchall(
        f"SELECT DISTINCT instance_id FROM tasks WHERE status IN {LIVE_SQL}"
    )
    return {str(row[0]) for row in rows}


async def claim_live(
    conn: aiosqlite.Connection, codec: RecordCodec, owner: str, new_owner: str, limit: int | None
) -> list[TaskRecord]:
    rows = await conn.execute_fetchall(
        f"UPDATE tasks SET instance_id = ? WHERE task_id IN ("
        f" SELECT task_id FROM tasks WHERE instance_id = ? AND status IN {LIVE_SQL}"
        f" ORDER BY sort_ts LIMIT ?) RETURNING {READ_COLUMNS}",
        (new_owner, owner, -1 if limit is None else limit),
    )
    claimed = [read_row(codec, task_id, data) for task_id, data in rows]
    return [record for record in claimed if record is not None]


async def claim_new(
    conn: aiosqlite.Connection, codec: RecordCodec, record: TaskRecord
) -> TaskRecord | None:
    sql = f"SELECT {READ_COLUMNS} FROM tasks WHERE task_id = ? AND status IN {KEY_HOLDERS_SQL}"
    rows = list(await conn.execute_fetchall(sql, (record.task_id,)))
    if rows:
        existing = read_row(codec, *rows[0])
        if existing is not None:
            return existing
    # A failed or interrupted record under this id is replaced: the key runs again.
    row = task_row(codec, record)
    await conn.execute(f"INSERT OR REPLACE {TASK_INSERT}", row)
    if row[8] is not None:
        await conn.execute(TAGS_OF, (record.task_id,))
    return None


async def request_cancel(conn: aiosqlite.Connection, task_id: str, now: float) -> None:
    await conn.execute(
        "DELETE FROM cancel_requests WHERE requested_ts < ?", (now - CANCEL_REQUEST_TTL,)
    )
    await conn.execute(
        "INSERT INTO cancel_requests (task_id, requested_ts) VALUES (?, ?)", (task_id, now)
    )


async def cancel_requests(conn: aiosqlite.Connection, after: str | None) -> tuple[list[str], str]:
    if after is None:
        sql = "SELECT coalesce(max(seq), 0) FROM cancel_requests"
        rows = list(await conn.execute_fetchall(sql))
        return [], str(int(rows[0][0]))
    rows = list(
        await conn.execute_fetchall(
            "SELECT seq, task_id FROM cancel_requests WHERE seq > ? ORDER BY seq LIMIT ?",
            (int(after), CANCEL_BATCH),
        )
    )
    if not rows:
        return [], after
    return [str(row[1]) for row in rows], str(int(rows[-1][0]))
