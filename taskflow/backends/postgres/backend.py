"""PostgreSQL backend: any number of instances on any number of hosts share one database.

asyncpg (chosen by measurement over psycopg 3: docs/performance.md) with a pool per process of
at most ``pool_size`` connections, opened in the lifespan (after any fork). Records are rows of
one table with an index per listing; a save is one statement over arrays (``unnest``), and every
check-then-write of the cluster contract is one statement: ``ON CONFLICT ... WHERE`` for saves
and idempotency keys, ``FOR UPDATE SKIP LOCKED`` for claims, ``DELETE ... RETURNING`` for expiry.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson

from taskflow.backends.base import (
    AUDIT_KEEP_ENTRIES,
    AUDIT_KEEP_SECONDS,
    CANCEL_BATCH,
    CANCEL_REQUEST_TTL,
    BackendError,
    HistoryCounts,
    InstanceInfo,
    ScheduleState,
    SnapshotBackend,
)
from taskflow.backends.codec import (
    KEY_HOLDER_VALUES,
    LIVE_VALUES,
    TERMINAL_VALUES,
    RecordCodec,
    decode_audit,
    encode_audit,
)
from taskflow.backends.postgres.schema import (
    SCHEMA_VERSION,
    check_name,
    lock_key,
    migrations,
    too_new,
)
from taskflow.backends.urls import mask_url
from taskflow.models import AuditEntry, TaskRecord, TaskStatus, epoch
from taskflow.query import Page, Selection, TaskQuery, make_page, sort_ts

logger = logging.getLogger(__name__)

#: Connections per process when none is given: enough for a write, a read and a heartbeat at
#: once. Each gunicorn worker is a process: see docs/persistence.md for the arithmetic against
#: the server's max_connections.
DEFAULT_POOL_SIZE = 4
#: Our own options in the URL's query string (the rest go to the server as settings).
OPTIONS = ("schema", "pool_size")
_SCHEMES = ("postgresql", "postgres")
_TERMINAL = frozenset(TERMINAL_VALUES)
#: Every status, as stored (the values are the enum's, never input).
STATUS_VALUES = tuple(status.value for status in TaskStatus)
#: Errors of the driver and the network that make a call fail (turned into BackendError).
_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


class PostgresBackend(SnapshotBackend):
    """Task history in one PostgreSQL schema (default ``taskflow``), created on first open."""

    kind = "postgres"

    def __init__(
        self,
        url: str,
        *,
        schema: str = "taskflow",
        pool_size: int = DEFAULT_POOL_SIZE,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
    ) -> None:
        self.dsn, options = split_url(url)
        self.url = url
        self.schema = check_name(str(options.get("schema", schema)))
        self.pool_size = int(options.get("pool_size", pool_size))
        if self.pool_size < 1:
            raise ValueError(f"PostgreSQL pool_size must be at least 1, got {self.pool_size}")
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.codec = RecordCodec()
        self._pool: asyncpg.Pool | None = None
        self._sql = Statements(self.schema)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresBackend:
        """``postgresql://user:password@host:5432/db?schema=taskflow&pool_size=4``."""
        return cls(url, **options)

    def describe(self) -> str:
        return f"{mask_url(self.url)} schema={self.schema}"

    def clone(self) -> PostgresBackend:
        clone = PostgresBackend(
            self.url,
            schema=self.schema,
            pool_size=self.pool_size,
            connect_timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
        )
        clone.codec = RecordCodec(self.codec.cipher)
        return clone

    async def open(self) -> None:
        """Open the pool and create or migrate the schema (safe when several start at once)."""
        if self._pool is not None:
            return
        with self._errors("open"):
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
            )
        try:
            with self._errors("schema"):
                async with pool.acquire() as conn, conn.transaction():
                    await self._migrate(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        logger.info("PostgreSQL history at %s", self.describe())

    async def _migrate(self, conn: Any) -> None:  # a pooled connection (a proxy of one)
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(self.schema))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.schema}.schema_version (version integer NOT NULL)"
        )
        version = await conn.fetchval(f"SELECT max(version) FROM {self.schema}.schema_version")
        version = int(version or 0)
        if version > SCHEMA_VERSION:
            raise too_new(self.schema, version)
        steps = migrations(self.schema)
        for step in range(version, SCHEMA_VERSION):
            for statement in steps[step]:
                await conn.execute(statement)
        if version != SCHEMA_VERSION:
            await conn.execute(f"DELETE FROM {self.schema}.schema_version")
            await conn.execute(
                f"INSERT INTO {self.schema}.schema_version VALUES ($1)", SCHEMA_VERSION
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except _ERRORS as exc:  # a dead server must not fail a shutdown
                logger.debug("closing PostgreSQL connections to %s: %s", self.describe(), exc)
                pool.terminate()

    async def ping(self) -> None:
        with self._errors("ping"):
            await self._require().fetchval("SELECT 1")

    # -- history ---------------------------------------------------------------------------

    async def save(self, records: Sequence[TaskRecord]) -> list[str]:
        """Upsert ``records`` in one statement (one transaction)."""
        if not records:
            return []
        # One row per id (a statement may touch a row once), folded in order as the upsert rule
        # says: a live copy after a finished one of the same id does not replace it.
        latest: dict[str, tuple[Any, ...]] = {}
        for record in records:
            row = self._row(record)
            known = latest.get(row[0])
            if known is not None and known[2] in _TERMINAL and row[2] not in _TERMINAL:
                continue
            latest.pop(row[0], None)
            latest[row[0]] = row
        columns = list(zip(*latest.values(), strict=True))
        with self._errors("save"):
            async with self._require().acquire() as conn, conn.transaction():
                written = await conn.fetch(self._sql.upsert, *columns)
                if len(written) == len(latest):
                    return []
                missing = list(latest.keys() - {row[0] for row in written})
                owners = await conn.fetch(self._sql.owners, missing)
        return [
            str(task_id)
            for task_id, owner in owners
            if owner != latest[task_id][4] and latest[task_id][4] != ""
        ]

    def _row(self, record: TaskRecord) -> tuple[Any, ...]:
        record, data = self.codec.encode(record)
        return (
            record.task_id,
            record.func_name,
            record.status.value,
            sort_ts(record),
            record.instance_id,
            data.decode(),
            orjson.dumps(record.tags).decode() if record.tags else None,
        )

    async def get(self, task_id: str) -> TaskRecord | None:
        with self._errors("get"):
            data = await self._require().fetchval(self._sql.get, task_id)
        return None if data is None else self.codec.decode_or_raise(data, task_id)

    async def query(self, query: TaskQuery) -> Page:
        return make_page(await self._select(query, query.limit + 1), query.limit)

    async def load_recent(self, limit: int) -> list[TaskRecord]:
        return await self._select(TaskQuery(), limit)

    async def _select(self, query: TaskQuery, want: int) -> list[TaskRecord]:
        # Malformed rows are skipped; when that leaves the batch short, continue after the last
        # row read so a page still holds `want` records when that many exist.
        records: list[TaskRecord] = []
        after: tuple[float, str] | None = None
        while len(records) < want:
            sql, params = self._sql.select(query, after)
            batch = want - len(records)
            with self._errors("query"):
                rows = await self._require().fetch(sql, *params, batch)
            for task_id, data, _ in rows:
                record = self.codec.decode(data, task_id)
                if record is not None:
                    records.append(record)
            if len(rows) < batch:
                break
            after = (rows[-1][2], rows[-1][0])
        return records

    async def prune(self, *, older_than: datetime | None, keep: int | None) -> int:
        """Delete finished rows by age and beyond the newest ``keep``, in one transaction."""
        if keep is not None and keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        if older_than is None and keep is None:
            return 0
        removed = 0
        with self._errors("prune"):
            async with self._require().acquire() as conn, conn.transaction():
                if older_than is not None:
                    removed += _count(await conn.execute(self._sql.prune_older, epoch(older_than)))
                if keep is not None:
                    removed += _count(await conn.execute(self._sql.prune_beyond, keep))
        if removed:
            logger.info("pruned %d finished tasks from %s", removed, self.describe())
        return removed

    async def counts(self) -> HistoryCounts:
        with self._errors("counts"):
            async with self._require().acquire() as conn, conn.transaction(readonly=True):
                by_status = await conn.fetch(self._sql.count_by_status)
                by_func = await conn.fetch(self._sql.count_by_func)
        return HistoryCounts(
            {str(k): int(n) for k, n in by_status}, {str(k): int(n) for k, n in by_func}
        )

    async def count_selected(self, selection: Selection) -> int:
        sql, params = self._sql.selected(selection, "SELECT count(*)")
        with self._errors("count"):
            return int(await self._require().fetchval(sql, *params))

    async def purge(self, selection: Selection, limit: int) -> int:
        """Delete the ``limit`` oldest matching finished rows in one statement."""
        if limit <= 0:
            return 0
        sql, params = self._sql.selected(selection, "SELECT task_id", order_limit=limit)
        with self._errors("purge"):
            status = await self._require().execute(
                f"DELETE FROM {self._sql.tasks} WHERE task_id IN ({sql})", *params
            )
        removed = _count(status)
        if removed:
            logger.info("purged %d finished tasks from %s", removed, self.describe())
        return removed

    # -- the audit trail -------------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> None:
        at = entry.at.timestamp()
        sql = self._sql
        with self._errors("audit"):
            async with self._require().acquire() as conn, conn.transaction():
                await conn.execute(sql.audit_append, entry.entry_id, at, encode_audit(entry))
                await conn.execute(sql.audit_trim_older, at - AUDIT_KEEP_SECONDS)
                await conn.execute(sql.audit_trim_beyond, AUDIT_KEEP_ENTRIES)

    async def audit_entries(self, limit: int, before: str | None = None) -> list[AuditEntry]:
        with self._errors("audit read"):
            if before is None:
                rows = await self._require().fetch(self._sql.audit_newest, limit)
            else:
                rows = await self._require().fetch(self._sql.audit_before, before, limit)
        decoded = (decode_audit(str(row[0])) for row in rows)
        return [entry for entry in decoded if entry is not None]

    # -- the cluster -----------------------------------------------------------------------

    async def heartbeat(self, info: InstanceInfo) -> None:
        with self._errors("heartbeat"):
            await self._require().execute(
                self._sql.heartbeat,
                info.instance_id,
                info.host,
                info.pid,
                epoch(info.started_at),
                epoch(info.last_heartbeat),
            )

    async def deregister(self, instance_id: str) -> None:
        with self._errors("deregister"):
            await self._require().execute(self._sql.deregister, instance_id)

    async def instances(self) -> list[InstanceInfo]:
        with self._errors("instances"):
            rows = await self._require().fetch(self._sql.instances)
        return [InstanceInfo(str(i), str(h), int(p), _time(s), _time(b)) for i, h, p, s, b in rows]

    async def expire_instances(self, heartbeat_before: datetime) -> list[str]:
        with self._errors("expire"):
            rows = await self._require().fetch(self._sql.expire, epoch(heartbeat_before))
        return sorted(str(row[0]) for row in rows)

    async def live_owners(self) -> set[str]:
        with self._errors("live owners"):
            rows = await self._require().fetch(self._sql.live_owners)
        return {str(row[0]) for row in rows}

    async def claim_live(
        self, owner: str, new_owner: str, limit: int | None = None
    ) -> list[TaskRecord]:
        with self._errors("claim"):
            rows = await self._require().fetch(self._sql.claim_live, new_owner, owner, limit)
        claimed = (self.codec.decode(data, task_id) for task_id, data in rows)
        return [record for record in claimed if record is not None]

    async def claim_new(self, record: TaskRecord) -> TaskRecord | None:
        row = self._row(record)
        with self._errors("claim new"):
            async with self._require().acquire() as conn, conn.transaction():
                if await conn.fetchval(self._sql.claim_new, *row) is not None:
                    return None  # stored: the key is this record's
                data = await conn.fetchval(self._sql.get, record.task_id)
        return None if data is None else self.codec.decode(data, record.task_id)

    async def request_cancel(self, task_id: str) -> None:
        now = time.time()
        with self._errors("request cancel"):
            async with self._require().acquire() as conn, conn.transaction():
                await conn.execute(self._sql.lock_cancels)
                await conn.execute(self._sql.prune_cancels, now - CANCEL_REQUEST_TTL)
                await conn.execute(self._sql.request_cancel, task_id, now)

    async def cancel_requests(self, after: str | None) -> tuple[list[str], str]:
        if after is not None and not after.isdigit():
            raise ValueError(f"not a PostgreSQL cancellation position: {after!r}")
        with self._errors("cancel requests"):
            pool = self._require()
            if after is None:
                return [], str(int(await pool.fetchval(self._sql.cancel_position)))
            rows = await pool.fetch(self._sql.cancel_requests, int(after), CANCEL_BATCH)
        if not rows:
            return [], after
        return [str(row[1]) for row in rows], str(int(rows[-1][0]))

    async def revoke_session(self, session_id: str, expires_at: datetime) -> None:
        expires, now = epoch(expires_at), time.time()
        if expires <= now:
            return
        with self._errors("revoke session"):
            async with self._require().acquire() as conn, conn.transaction():
                await conn.execute(self._sql.prune_sessions, now)
                await conn.execute(self._sql.revoke, session_id, expires)

    async def session_revoked(self, session_id: str) -> bool:
        with self._errors("session check"):
            found = await self._require().fetchval(self._sql.revoked, session_id, time.time())
        return found is not None

    # -- scheduled tasks (see SnapshotBackend) ------------------------------------------------

    async def claim_tick(self, name: str, tick: datetime, run: TaskRecord) -> bool:
        columns = [[value] for value in self._row(run)]
        with self._errors("claim tick"):
            async with self._require().acquire() as conn, conn.transaction():
                won = await conn.fetchval(self._sql.claim_tick, name, epoch(tick), run.task_id)
                if won is not None:
                    await conn.fetch(self._sql.upsert, *columns)
        return won is not None

    async def schedule_states(self) -> dict[str, ScheduleState]:
        with self._errors("schedules"):
            rows = await self._require().fetch(self._sql.schedule_states)
        return {
            str(name): ScheduleState(
                str(name), None if tick is None else _time(tick), task_id, bool(paused)
            )
            for name, tick, task_id, paused in rows
        }

    async def set_paused(self, name: str, paused: bool) -> None:
        with self._errors("pause"):
            await self._require().execute(self._sql.set_paused, name, paused)

    async def add_delayed(self, record: TaskRecord) -> None:
        if record.status is not TaskStatus.SCHEDULED or record.scheduled_for is None:
            raise ValueError("a delayed task is stored with status scheduled and its time")
        columns = [[value] for value in self._row(record)]
        with self._errors("add delayed"):
            async with self._require().acquire() as conn, conn.transaction():
                if await conn.fetch(self._sql.upsert, *columns):
                    await conn.execute(
                        self._sql.add_delayed, record.task_id, epoch(record.scheduled_for)
                    )

    async def next_due(self) -> datetime | None:
        with self._errors("next due"):
            first = await self._require().fetchval(self._sql.next_due)
        return None if first is None else _time(first)

    async def claim_due(self, now: datetime, new_owner: str, limit: int) -> list[TaskRecord]:
        with self._errors("claim due"):
            rows = await self._require().fetch(self._sql.claim_due, epoch(now), limit, new_owner)
        claimed = (self.codec.decode(data, task_id) for task_id, data in rows)
        return [record for record in claimed if record is not None]

    # -- plumbing --------------------------------------------------------------------------

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise BackendError(f"{self.describe()} is not open")
        return self._pool

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except BackendError:
            raise
        except _ERRORS as exc:
            raise BackendError(f"PostgreSQL {action} failed on {self.describe()}: {exc}") from exc


class Statements:
    """The SQL of one schema (its name is checked to be a plain identifier)."""

    def __init__(self, schema: str) -> None:
        tasks = f"{schema}.tasks"
        terminal, live = _sql_list(TERMINAL_VALUES), _sql_list(LIVE_VALUES)
        holders = _sql_list(KEY_HOLDER_VALUES)
        insert = (
            f"INSERT INTO {tasks} (task_id, func_name, status, sort_ts, instance_id, data, tags)"
        )
        assign = """func_name = excluded.func_name, status = excluded.status,
            sort_ts = excluded.sort_ts, instance_id = excluded.instance_id, data = excluded.data,
            tags = excluded.tags"""
        # A stale live copy never replaces a finished row, and a row another instance took
        # over (claim_live made it the owner) is not replaced by its former owner's copy (a late
        # result); the owner '' parks a task for requeue. RETURNING lists what was written.
        self.upsert = f"""{insert}
            SELECT i, f, s, t, o, d, g::jsonb FROM unnest($1::text[], $2::text[], $3::text[],
                $4::float8[], $5::text[], $6::text[], $7::text[]) AS u(i, f, s, t, o, d, g)
            ON CONFLICT (task_id) DO UPDATE SET {assign}
            WHERE ({tasks}.status NOT IN {terminal} OR excluded.status IN {terminal})
              AND ({tasks}.instance_id = excluded.instance_id OR excluded.instance_id = '')
            RETURNING task_id"""
        self.owners = f"SELECT task_id, instance_id FROM {tasks} WHERE task_id = ANY($1::text[])"
        self.get = f"SELECT data FROM {tasks} WHERE task_id = $1"
        self.prune_older = f"DELETE FROM {tasks} WHERE status IN {terminal} AND sort_ts < $1"
        self.prune_beyond = f"""DELETE FROM {tasks} WHERE status IN {terminal}
            AND (sort_ts, task_id) <= (
                SELECT sort_ts, task_id FROM {tasks} WHERE status IN {terminal}
                ORDER BY sort_ts DESC, task_id DESC LIMIT 1 OFFSET $1)"""
        self.count_by_status = f"SELECT status, count(*) FROM {tasks} GROUP BY status"
        self.count_by_func = f"SELECT func_name, count(*) FROM {tasks} GROUP BY func_name"
        instances = f"{schema}.instances"
        self.heartbeat = f"""INSERT INTO {instances}
            (instance_id, host, pid, started_ts, heartbeat) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (instance_id) DO UPDATE SET heartbeat = excluded.heartbeat"""
        self.deregister = f"DELETE FROM {instances} WHERE instance_id = $1"
        self.instances = f"""SELECT instance_id, host, pid, started_ts, heartbeat
            FROM {instances} ORDER BY instance_id"""
        self.expire = f"DELETE FROM {instances} WHERE heartbeat < $1 RETURNING instance_id"
        self.live_owners = f"SELECT DISTINCT instance_id FROM {tasks} WHERE status IN {live}"
        # Each live row goes to exactly one caller: rows another claimer holds are skipped.
        self.claim_live = f"""UPDATE {tasks} SET instance_id = $1 WHERE task_id IN (
                SELECT task_id FROM {tasks} WHERE instance_id = $2 AND status IN {live}
                ORDER BY sort_ts LIMIT $3 FOR UPDATE SKIP LOCKED)
            RETURNING task_id, data"""
        # Stored unless the id's row is pending, running or succeeded: one statement, so of
        # several callers with the same id exactly one writes (the others wait on its row lock
        # and then see it). A failed or interrupted row is replaced: the key runs again.
        self.claim_new = f"""{insert} VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
            ON CONFLICT (task_id) DO UPDATE SET {assign}
            WHERE {tasks}.status NOT IN {holders}
            RETURNING task_id"""
        sessions = f"{schema}.revoked_sessions"
        self.prune_sessions = f"DELETE FROM {sessions} WHERE expires_ts <= $1"
        self.revoke = f"""INSERT INTO {sessions} (session_id, expires_ts) VALUES ($1, $2)
            ON CONFLICT (session_id) DO UPDATE
            SET expires_ts = greatest({sessions}.expires_ts, excluded.expires_ts)"""
        self.revoked = f"SELECT 1 FROM {sessions} WHERE session_id = $1 AND expires_ts > $2"
        cancels = f"{schema}.cancel_requests"
        # Writers take the table's lock in turn, so sequence numbers become visible in order and
        # a reader past seq n never misses a smaller one committed later (requests are rare).
        self.lock_cancels = f"LOCK TABLE {cancels} IN EXCLUSIVE MODE"
        self.prune_cancels = f"DELETE FROM {cancels} WHERE requested_ts < $1"
        self.request_cancel = f"INSERT INTO {cancels} (task_id, requested_ts) VALUES ($1, $2)"
        self.cancel_position = f"SELECT coalesce(max(seq), 0) FROM {cancels}"
        self.cancel_requests = f"""SELECT seq, task_id FROM {cancels} WHERE seq > $1
            ORDER BY seq LIMIT $2"""
        audit = f"{schema}.audit"
        self.audit_append = f"""INSERT INTO {audit} (entry_id, at_ts, data) VALUES ($1, $2, $3)
            ON CONFLICT (entry_id) DO NOTHING"""
        self.audit_trim_older = f"DELETE FROM {audit} WHERE at_ts < $1"
        self.audit_trim_beyond = f"""DELETE FROM {audit} WHERE entry_id <= (
            SELECT entry_id FROM {audit} ORDER BY entry_id DESC LIMIT 1 OFFSET $1)"""
        self.audit_newest = f"SELECT data FROM {audit} ORDER BY entry_id DESC LIMIT $1"
        self.audit_before = f"""SELECT data FROM {audit} WHERE entry_id < $1
            ORDER BY entry_id DESC LIMIT $2"""
        schedules, delayed = f"{schema}.schedules", f"{schema}.delayed_tasks"
        # One statement: of several callers with the same tick, the first takes the row lock and
        # moves last_tick; the others then re-check the WHERE against it and return no row.
        self.claim_tick = f"""INSERT INTO {schedules} (name, last_tick, last_task_id)
            VALUES ($1, $2, $3)
            ON CONFLICT (name) DO UPDATE
            SET last_tick = excluded.last_tick, last_task_id = excluded.last_task_id
            WHERE NOT {schedules}.paused
              AND ({schedules}.last_tick IS NULL OR {schedules}.last_tick < excluded.last_tick)
            RETURNING name"""
        self.schedule_states = f"SELECT name, last_tick, last_task_id, paused FROM {schedules}"
        self.set_paused = f"""INSERT INTO {schedules} (name, paused) VALUES ($1, $2)
            ON CONFLICT (name) DO UPDATE SET paused = excluded.paused"""
        self.add_delayed = f"""INSERT INTO {delayed} (task_id, run_ts) VALUES ($1, $2)
            ON CONFLICT (task_id) DO UPDATE SET run_ts = excluded.run_ts"""
        self.next_due = f"SELECT min(run_ts) FROM {delayed}"
        # Each due task goes to exactly one caller (rows another claimer holds are skipped);
        # one whose record is no longer 'scheduled' (it ran) just leaves the queue.
        scheduled = TaskStatus.SCHEDULED.value
        self.claim_due = f"""WITH due AS (
                DELETE FROM {delayed} WHERE task_id IN (
                    SELECT task_id FROM {delayed} WHERE run_ts <= $1
                    ORDER BY run_ts LIMIT $2 FOR UPDATE SKIP LOCKED)
                RETURNING task_id)
            UPDATE {tasks} SET instance_id = $3 FROM due
            WHERE {tasks}.task_id = due.task_id AND {tasks}.status = '{scheduled}'
            RETURNING {tasks}.task_id, {tasks}.data"""
        self._tasks = tasks
        self._terminal = terminal

    @property
    def tasks(self) -> str:
        """The qualified name of the records' table."""
        return self._tasks

    def selected(
        self, selection: Selection, head: str, *, order_limit: int | None = None
    ) -> tuple[str, list[Any]]:
        """``head`` (a SELECT list) over the finished rows ``selection`` matches; with
        ``order_limit``, only that many, oldest first."""
        params: list[Any] = [list(selection.status_values)]
        where = [f"status IN {self._terminal}", "status = ANY($1::text[])"]

        def bind(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if selection.func_name is not None:
            where.append(f"func_name = {bind(selection.func_name)}")
        if selection.since is not None:
            where.append(f"sort_ts >= {bind(selection.since.timestamp())}")
        if selection.until is not None:
            where.append(f"sort_ts <= {bind(selection.until.timestamp())}")
        sql = f"{head} FROM {self._tasks} WHERE {' AND '.join(where)}"
        if order_limit is not None:
            sql += f" ORDER BY sort_ts, task_id LIMIT {bind(order_limit)}"
        return sql, params

    def select(self, query: TaskQuery, after: tuple[float, str] | None) -> tuple[str, list[Any]]:
        """The SELECT serving ``query``, newest first; its LIMIT is the last parameter."""
        where: list[str] = []
        params: list[Any] = []

        def bind(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if query.status is not None:
            where.append(f"status = {bind(query.status.value)}")
        if query.func_name is not None:
            where.append(f"func_name = {bind(query.func_name)}")
        if query.tags:  # the GIN index on tags serves containment
            where.append(f"tags @> {bind(orjson.dumps(dict(query.tags)).decode())}::jsonb")
        if query.since is not None:
            where.append(f"sort_ts >= {bind(query.since.timestamp())}")
        if query.until is not None:
            where.append(f"sort_ts <= {bind(query.until.timestamp())}")
        cursor = (query.cursor.sort_ts, query.cursor.task_id) if query.cursor else None
        for position in (cursor, after):
            if position is not None:
                where.append(f"(sort_ts, task_id) < ({bind(position[0])}, {bind(position[1])})")
        limit = f"${len(params) + 1}"
        order = f"ORDER BY sort_ts DESC, task_id DESC LIMIT {limit}"
        columns = "task_id, data, sort_ts"
        if query.func_name is not None and query.status is None:
            # One function: the merge of its (status, function) ranges, each read in order.
            parts = [
                f"(SELECT {columns} FROM {self._tasks} WHERE status = '{status}' AND "
                f"{' AND '.join(where)} {order})"
                for status in STATUS_VALUES
            ]
            return f"SELECT * FROM ({' UNION ALL '.join(parts)}) AS merged {order}", params
        filters = f" WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT {columns} FROM {self._tasks}{filters} {order}", params


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """The DSN for asyncpg and our own options, from ``postgresql://...?schema=...``.

    Raises ``ValueError`` naming what is wrong (the password masked).
    """
    shown = mask_url(url) if isinstance(url, str) else repr(url)
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"PostgreSQL URL {shown!r} must start with postgresql:// or postgres://")
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"PostgreSQL URL {shown!r} has no host; use postgresql://host:5432/db")
    try:
        parts.port  # noqa: B018 - urllib validates the port when it is read
    except ValueError:
        raise ValueError(
            f"PostgreSQL URL {shown!r} has a port that is not a number in 0-65535"
        ) from None
    ours: dict[str, str] = {}
    rest = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in OPTIONS:
            ours[key] = value
        else:
            rest.append((key, value))
    if "pool_size" in ours and not ours["pool_size"].isdigit():
        raise ValueError(f"PostgreSQL URL {shown!r}: pool_size must be a whole number")
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), ""))
    return dsn, ours


def _sql_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


def _count(status: str) -> int:
    """Rows a command touched, from its status tag (``DELETE 12``)."""
    return int(status.rsplit(" ", 1)[-1])


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)
