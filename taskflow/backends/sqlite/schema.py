"""The SQLite history schema: creation, recognising our own files, and migrations.

A taskflow database is marked twice in its header: ``PRAGMA application_id`` says the file is
ours, ``PRAGMA user_version`` says which schema it has. A file with neither and no tables is new;
anything else that is not marked as ours is refused rather than written into.
"""

from __future__ import annotations

import aiosqlite

from taskflow.backends.base import BackendError
from taskflow.backends.sqlite.sql import LIVE_SQL

#: Schema this code reads and writes; files with a lower version are migrated on open.
SCHEMA_VERSION = 6
#: Stored in the file header (``PRAGMA application_id``): the bytes "TFK1".
APPLICATION_ID = 0x54464B31

#: Columns of the ``tasks`` table, in order; an existing table must have exactly these.
TASK_COLUMNS = (
    "task_id",
    "func_name",
    "status",
    "sort_ts",
    "created_ts",
    "end_ts",
    "instance_id",
    "data",
    "tags",
)

_CREATE_V1 = (
    """
    CREATE TABLE IF NOT EXISTS tasks (
        task_id     TEXT PRIMARY KEY NOT NULL,
        func_name   TEXT NOT NULL,
        status      TEXT NOT NULL,
        sort_ts     REAL NOT NULL,  -- record.sort_time as epoch seconds: the listing order
        created_ts  REAL NOT NULL,
        end_ts      REAL,
        instance_id TEXT NOT NULL,
        data        TEXT NOT NULL   -- JSON of record.to_dict(), the source of truth
    )
    """,
    # One index per filter combination of query(), each ending in the listing order, so every
    # listing is an index range walked in order: no sort step, no scan. status in tasks_by_time
    # lets prune() count the newest finished rows from the index alone.
    "CREATE INDEX IF NOT EXISTS tasks_by_time ON tasks (sort_ts DESC, task_id DESC, status)",
    "CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, sort_ts, task_id)",
    "CREATE INDEX IF NOT EXISTS tasks_by_func ON tasks (func_name, sort_ts, task_id)",
    "CREATE INDEX IF NOT EXISTS tasks_by_status_func"
    " ON tasks (status, func_name, sort_ts, task_id)",
)

# Version 2: the cluster view. Running instances and their heartbeats, and a partial index over
# live records by owner (instance_id) for claiming an expired instance's tasks.
_CREATE_V2 = (
    """
    CREATE TABLE IF NOT EXISTS instances (
        instance_id TEXT PRIMARY KEY NOT NULL,
        host        TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        started_ts  REAL NOT NULL,
        heartbeat   REAL NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS tasks_live_by_owner ON tasks (instance_id)"
    # Built from the live statuses: a change of that set needs a migration of its own.
    f" WHERE status IN {LIVE_SQL}",
)

# Version 3: dashboard sessions ended by a logout, kept until they would have expired, so that
# every instance refuses them (see taskflow.web.auth.revocation).
_CREATE_V3 = (
    """
    CREATE TABLE IF NOT EXISTS revoked_sessions (
        session_id TEXT PRIMARY KEY NOT NULL,
        expires_ts REAL NOT NULL  -- epoch seconds: when the session would have expired anyway
    )
    """,
)

# Version 4: task control. Cancellation requests, an ordered log every instance reads from its
# own position (seq; AUTOINCREMENT so that a seq is never reused once pruned rows are gone).
# Tags: a ``tags`` column (JSON, NULL without tags) and one ``task_tags`` row per tag and task
# with the task's sort time (for listings by tag in order), written by the same transaction as
# the task's row and only for tagged rows. (Not by triggers: the mere presence of a trigger on
# ``tasks`` made every save of untagged records about 20% dearer in CPU.) The ``cancelled`` status
# needs no change: statuses are plain text, and the SQL is built from the status sets.
_CREATE_V4 = (
    """
    CREATE TABLE IF NOT EXISTS cancel_requests (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id      TEXT NOT NULL,
        requested_ts REAL NOT NULL  -- epoch seconds; rows past CANCEL_REQUEST_TTL are pruned
    )
    """,
    "ALTER TABLE tasks ADD COLUMN tags TEXT",
    """
    CREATE TABLE IF NOT EXISTS task_tags (
        tag     TEXT NOT NULL,  -- key:value
        task_id TEXT NOT NULL,
        sort_ts REAL NOT NULL,  -- the task's sort_ts
        PRIMARY KEY (tag, task_id)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS task_tags_by_time ON task_tags (tag, sort_ts, task_id)",
)

# Version 5: the audit trail of admin actions (see taskflow.backends.sqlite.audit), newest by
# entry id (ids begin with the time); at_ts serves the trimming by age.
_CREATE_V5 = (
    """
    CREATE TABLE IF NOT EXISTS audit (
        entry_id TEXT PRIMARY KEY NOT NULL,
        at_ts    REAL NOT NULL,  -- epoch seconds of the action
        data     TEXT NOT NULL   -- JSON of AuditEntry.to_dict()
    )
    """,
    "CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at_ts)",
)

# Version 6: scheduled tasks (see taskflow.backends.sqlite.schedules). One row per periodic
# schedule that was claimed or paused: its newest claimed tick is what a claim compares with, so
# the table holds one row per schedule, not one per tick. Delayed one-off tasks: their records
# live in tasks (status 'scheduled'); this queue says when each is due.
_CREATE_V6 = (
    """
    CREATE TABLE IF NOT EXISTS schedules (
        name         TEXT PRIMARY KEY NOT NULL,
        last_tick    REAL,               -- epoch seconds of the newest claimed tick
        last_task_id TEXT,               -- the run started for it
        paused       INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS delayed_tasks (
        task_id TEXT PRIMARY KEY NOT NULL,
        run_ts  REAL NOT NULL            -- epoch seconds: when it is due
    )
    """,
    "CREATE INDEX IF NOT EXISTS delayed_by_time ON delayed_tasks (run_ts)",
)

#: Statements that take a file from version ``n`` (the key) to ``n + 1``.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    0: _CREATE_V1,
    1: _CREATE_V2,
    2: _CREATE_V3,
    3: _CREATE_V4,
    4: _CREATE_V5,
    5: _CREATE_V6,
}


def not_taskflow(path: object, why: str) -> BackendError:
    return BackendError(
        f"{path} is not a taskflow database or is corrupt ({why}); "
        "point the backend at a new file or at an existing taskflow history"
    )


async def check_identity(conn: aiosqlite.Connection, path: object) -> int:
    """The schema version of a file that is ours or empty (0); raise for anything else.

    Only reads, so a foreign file is refused before anything (even its journal mode) is changed.
    """
    app_id = await _pragma_int(conn, "application_id")
    version = await _pragma_int(conn, "user_version")
    if app_id == 0 and version == 0:
        tables = await _user_tables(conn)
        if tables:
            raise not_taskflow(path, f"it already holds other tables: {', '.join(tables)}")
    elif app_id != APPLICATION_ID:
        raise not_taskflow(path, f"application_id {app_id:#x}, user_version {version}")
    elif version > SCHEMA_VERSION:
        raise BackendError(
            f"{path} has taskflow schema version {version}, newer than this version of "
            f"taskflow understands ({SCHEMA_VERSION}); upgrade taskflow"
        )
    return version


async def prepare_schema(conn: aiosqlite.Connection, path: object) -> None:
    """Check the file is ours (or empty), then create or migrate the schema.

    Must run inside ``BEGIN IMMEDIATE``: the check and the creation then happen under the write
    lock, so processes opening a new file at the same moment cannot both create it.
    """
    version = await check_identity(conn, path)
    for step in range(version, SCHEMA_VERSION):
        for statement in MIGRATIONS[step]:
            await conn.execute(statement)
    if version != SCHEMA_VERSION:
        await conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    columns = tuple(row[1] for row in await conn.execute_fetchall("PRAGMA table_info(tasks)"))
    if columns != TASK_COLUMNS:
        raise not_taskflow(path, f"its tasks table has columns {columns}, expected {TASK_COLUMNS}")


async def _pragma_int(conn: aiosqlite.Connection, name: str) -> int:
    rows = list(await conn.execute_fetchall(f"PRAGMA {name}"))
    return int(rows[0][0])


async def _user_tables(conn: aiosqlite.Connection) -> list[str]:
    rows = await conn.execute_fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )
    return [str(row[0]) for row in rows]
