"""The SQLite backend's schedule operations: tick claims, paused schedules, delayed tasks.
Each function is one step run inside a ``BEGIN IMMEDIATE`` transaction (or a read), so every
check and the change it guards happen under the write lock."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import aiosqlite

from taskflow.backends.base import ScheduleState
from taskflow.backends.codec import RecordCodec
from taskflow.backends.sqlite.sql import READ_COLUMNS, UPSERT, read_row, task_row
from taskflow.models import TaskRecord, TaskStatus, epoch

# Inserts the schedule's first claim, or moves its newest tick forward; a tick at or before the
# newest one, and any tick of a paused schedule, changes nothing (no row counted).
CLAIM_TICK = """
    INSERT INTO schedules (name, last_tick, last_task_id, paused) VALUES (?, ?, ?, 0)
    ON CONFLICT (name) DO UPDATE SET
        last_tick = excluded.last_tick, last_task_id = excluded.last_task_id
    WHERE schedules.paused = 0
        AND (schedules.last_tick IS NULL OR schedules.last_tick < excluded.last_tick)
"""

SET_PAUSED = """
    INSERT INTO schedules (name, paused) VALUES (?, ?)
    ON CONFLICT (name) DO UPDATE SET paused = excluded.paused
"""

SCHEDULED = TaskStatus.SCHEDULED.value


def _time(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)


def claim_tick(
    conn: sqlite3.Connection, name: str, tick_ts: float, row: tuple[object, ...]
) -> bool:
    """Claim the tick and, when claimed, store its run's row (as :func:`task_row` makes it)."""
    if conn.execute(CLAIM_TICK, (name, tick_ts, row[0])).rowcount != 1:
        return False
    conn.execute(UPSERT, row)
    return True


async def schedule_states(conn: aiosqlite.Connection) -> dict[str, ScheduleState]:
    rows = await conn.execute_fetchall(
        "SELECT name, last_tick, last_task_id, paused FROM schedules"
    )
    return {
        str(name): ScheduleState(str(name), _time(tick), task_id, bool(paused))
        for name, tick, task_id, paused in rows
    }


async def set_paused(conn: aiosqlite.Connection, name: str, paused: bool) -> None:
    await conn.execute(SET_PAUSED, (name, int(paused)))


def add_delayed(conn: sqlite3.Connection, row: tuple[object, ...], run_ts: float) -> None:
    """Upsert the record's row (by the save rules) and, when it was written, queue it."""
    before = conn.total_changes
    conn.execute(UPSERT, row)
    if conn.total_changes != before:
        conn.execute(
            "INSERT OR REPLACE INTO delayed_tasks (task_id, run_ts) VALUES (?, ?)", (row[0], run_ts)
        )


async def next_due(conn: aiosqlite.Connection) -> datetime | None:
    rows = list(await conn.execute_fetchall("SELECT MIN(run_ts) FROM delayed_tasks"))
    return _time(rows[0][0]) if rows else None


async def claim_due(
    conn: aiosqlite.Connection, codec: RecordCodec, now: datetime, new_owner: str, limit: int
) -> list[TaskRecord]:
    due = await conn.execute_fetchall(
        "DELETE FROM delayed_tasks WHERE task_id IN ("
        " SELECT task_id FROM delayed_tasks WHERE run_ts <= ? ORDER BY run_ts LIMIT ?)"
        " RETURNING task_id",
        (epoch(now), limit),
    )
    ids = [str(row[0]) for row in due]
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    # A record that is no longer 'scheduled' (it ran already) is dropped from the queue only.
    rows = await conn.execute_fetchall(
        f"UPDATE tasks SET instance_id = ? WHERE task_id IN ({marks}) AND status = ?"
        f" RETURNING {READ_COLUMNS}",
        (new_owner, *ids, SCHEDULED),
    )
    claimed = [read_row(codec, task_id, data) for task_id, data in rows]
    return [record for record in claimed if record is not None]


def delayed_row(codec: RecordCodec, record: TaskRecord) -> tuple[tuple[object, ...], float]:
    """The task row and due time :func:`add_delayed` writes."""
    if record.status is not TaskStatus.SCHEDULED or record.scheduled_for is None:
        raise ValueError("a delayed task is stored with status scheduled and its time")
    return task_row(codec, record), epoch(record.scheduled_for)
