"""The PostgreSQL schema: tables, indexes, versioned migrations, created by whichever instance
gets there first.

Everything lives in one PostgreSQL schema users choose (default ``taskflow``). Its version is
kept in ``schema_version``; migrations run in one transaction under an advisory lock keyed by
the schema's name, so instances starting at the same moment never run them twice and never see
half a schema.
"""

from __future__ import annotations

import hashlib
import re

from taskflow.backends.base import BackendError
from taskflow.backends.codec import LIVE_VALUES

#: Schema this code reads and writes; a store with a lower version is migrated on open.
SCHEMA_VERSION = 4
#: A schema name users may give: a plain SQL identifier (it is written into the statements).
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _live_sql() -> str:
    return "(" + ", ".join(f"'{value}'" for value in LIVE_VALUES) + ")"


def migrations(schema: str) -> dict[int, tuple[str, ...]]:
    """Statements that take a store from version ``n`` (the key) to ``n + 1``."""
    return {
        0: (
            f"""
            CREATE TABLE {schema}.tasks (
                task_id     text PRIMARY KEY,
                func_name   text NOT NULL,
                status      text NOT NULL,
                sort_ts     double precision NOT NULL,  -- record.sort_time: the listing order
                instance_id text NOT NULL,              -- the owner (claims move it)
                data        text NOT NULL               -- the record's JSON, the source of truth
            )
            """,
            # Every listing is index ranges read in order, no sort: all records, one status, one
            # status and function; one function is the merge of its status ranges (no index of
            # its own: each index costs every write).
            f"CREATE INDEX tasks_by_time ON {schema}.tasks (sort_ts DESC, task_id DESC)",
            f"CREATE INDEX tasks_by_status ON {schema}.tasks (status, sort_ts DESC, task_id DESC)",
            f"CREATE INDEX tasks_by_status_func ON {schema}.tasks"
            " (status, func_name, sort_ts DESC, task_id DESC)",
            # Built from the live statuses: a change of that set needs a migration of its own.
            f"CREATE INDEX tasks_live_by_owner ON {schema}.tasks (instance_id, sort_ts)"
            f" WHERE status IN {_live_sql()}",
            f"""
            CREATE TABLE {schema}.instances (
                instance_id text PRIMARY KEY,
                host        text NOT NULL,
                pid         integer NOT NULL,
                started_ts  double precision NOT NULL,
                heartbeat   double precision NOT NULL
            )
            """,
            f"""
            CREATE TABLE {schema}.revoked_sessions (
                session_id text PRIMARY KEY,
                expires_ts double precision NOT NULL
            )
            """,
        ),
        # Version 2: task control. Cancellation requests, an ordered log every instance reads
        # from its own position (seq); tags as jsonb (NULL without tags) with a GIN index that
        # serves ``tags @> '{"tenant": "acme"}'``. The ``cancelled`` status needs nothing:
        # statuses are plain text and the SQL is built from the status sets.
        1: (
            f"ALTER TABLE {schema}.tasks ADD COLUMN tags jsonb",
            f"CREATE INDEX tasks_by_tags ON {schema}.tasks USING gin (tags jsonb_path_ops)",
            f"""
            CREATE TABLE {schema}.cancel_requests (
                seq          bigserial PRIMARY KEY,
                task_id      text NOT NULL,
                requested_ts double precision NOT NULL  -- pruned past CANCEL_REQUEST_TTL
            )
            """,
        ),
        # Version 3: the audit trail of admin actions, newest by entry id (ids begin with the
        # time); at_ts serves the trimming by age.
        2: (
            f"""
            CREATE TABLE {schema}.audit (
                entry_id text PRIMARY KEY,
                at_ts    double precision NOT NULL,
                data     text NOT NULL
            )
            """,
            f"CREATE INDEX audit_by_time ON {schema}.audit (at_ts)",
        ),
        # Version 4: scheduled tasks. One row per periodic schedule claimed or paused (its
        # newest claimed tick is what a claim compares with), and the queue of delayed one-off
        # tasks (their records are rows of tasks with status 'scheduled').
        3: (
            f"""
            CREATE TABLE {schema}.schedules (
                name         text PRIMARY KEY,
                last_tick    double precision,   -- epoch seconds of the newest claimed tick
                last_task_id text,
                paused       boolean NOT NULL DEFAULT false
            )
            """,
            f"""
            CREATE TABLE {schema}.delayed_tasks (
                task_id text PRIMARY KEY,
                run_ts  double precision NOT NULL  -- epoch seconds: when it is due
            )
            """,
            f"CREATE INDEX delayed_by_time ON {schema}.delayed_tasks (run_ts)",
        ),
    }


def lock_key(schema: str) -> int:
    """The advisory lock that serialises migrations of one schema (a signed 64-bit key)."""
    digest = hashlib.sha256(f"taskflow-schema:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def check_name(schema: str) -> str:
    if not NAME.match(schema):
        raise ValueError(
            f"PostgreSQL schema name {schema!r} must be a lower-case SQL identifier "
            "(letters, digits, underscores; at most 63 characters)"
        )
    return schema


def too_new(schema: str, version: int) -> BackendError:
    return BackendError(
        f"PostgreSQL schema {schema} has taskflow schema version {version}, newer than this "
        f"version of taskflow understands ({SCHEMA_VERSION}); upgrade taskflow"
    )
