"""Redis snapshot backend: any number of instances on any number of hosts share one history.

Records are hashes, listings are sorted sets scored by sort time (see :mod:`.keys`), and
every multi-key change is one Lua script call (see :mod:`.scripts`), so the indexes always
agree with the records. Every Redis or network error surfaces as :class:`BackendError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, RedisError, TimeoutError

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
from taskflow.backends.codec import RecordCodec, decode_audit, encode_audit
from taskflow.backends.redis import scripts
from taskflow.backends.redis.keys import CANCEL_STREAM_MAXLEN, DEFAULT_PREFIX, RedisKeys
from taskflow.backends.redis.pack import with_hiredis_packing
from taskflow.backends.redis.stream import call_streamed
from taskflow.backends.urls import mask_url
from taskflow.models import AuditEntry, TaskRecord, TaskStatus, epoch
from taskflow.query import Page, Selection, TaskQuery, make_page, sort_ts

#: Most records one save script call carries (see :meth:`RedisBackend.save`). A larger batch
#: goes as several calls streamed on one connection: while Redis runs one, this process encodes
#: the next, so a 10,000-record flush costs about Redis's own time, and no one call blocks Redis
#: for more than a few milliseconds.
SAVE_CHUNK = 500

logger = logging.getLogger(__name__)

#: Most finished records one prune script call removes; each call blocks Redis only briefly.
PRUNE_CHUNK = 1000
_SCHEMES = ("redis", "rediss", "unix")


class RedisBackend(SnapshotBackend):
    """Task history in Redis under one key prefix.

    The URL is validated at construction; no connection is made before :meth:`open`, and
    :meth:`open` itself only builds the pool, so an unreachable server shows up in
    :meth:`ping` and in the calls that need it, never as a failed start.
    """

    kind = "redis"

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        max_connections: int = 20,
        socket_timeout: float = 5.0,
        socket_connect_timeout: float = 5.0,
        health_check_interval: float = 15.0,
        pool_timeout: float = 5.0,
        retries: int = 3,
    ) -> None:
        check_url(url)
        if max_connections < 1 or retries < 0:
            raise ValueError("max_connections must be >= 1 and retries >= 0")
        self.url = url
        self.keys = RedisKeys(prefix)
        self.max_connections = max_connections
        self.socket_timeout = socket_timeout
        self.socket_connect_timeout = socket_connect_timeout
        self.health_check_interval = health_check_interval
        self.pool_timeout = pool_timeout
        self.retries = retries
        self.codec = RecordCodec()
        self._client: Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._layout_checked = False
        self._save_loaded = False  # a save script call has succeeded (so Redis has the script)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """``redis://[user:password@]host[:port][/db]``, ``rediss://...`` or ``unix:///path``."""
        return cls(url, **options)

    def describe(self) -> str:
        return f"{mask_url(self.url)} prefix={self.keys.prefix}"

    def clone(self) -> RedisBackend:
        clone = RedisBackend(
            self.url,
            prefix=self.keys.prefix,
            max_connections=self.max_connections,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_connect_timeout,
            health_check_interval=self.health_check_interval,
            pool_timeout=self.pool_timeout,
            retries=self.retries,
        )
        clone.codec = RecordCodec(self.codec.cipher)
        return clone

    async def open(self) -> None:
        """Build the connection pool and register the scripts (no round trip yet)."""
        if self._client is not None:
            return
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=self.pool_timeout,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_connect_timeout,
            health_check_interval=self.health_check_interval,
            retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), self.retries),
            retry_on_error=[ConnectionError, TimeoutError],
            decode_responses=True,
            # A value that is not UTF-8 (written by another program) must not make every read
            # that meets it fail, startup included: it is read with U+FFFD in its place.
            encoding_errors="replace",
        )
        pool.connection_class = with_hiredis_packing(pool.connection_class)
        client = Redis(connection_pool=pool)
        self._scripts = {
            name: client.register_script(getattr(scripts, name))
            for name in (
                "SAVE",
                "PAGE",
                "PRUNE",
                "PURGE",
                "CLAIM_LIVE",
                "EXPIRE_INSTANCES",
                "CLAIM_TICK",
                "CLAIM_DUE",
            )
        }
        self._client = client
        logger.info("Redis history at %s", self.describe())

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await client.aclose()
            await client.connection_pool.aclose()
        except (RedisError, OSError) as exc:  # a dead server must not fail a shutdown
            logger.debug("closing Redis connections to %s: %s", self.describe(), exc)

    async def ping(self) -> None:
        with self._errors("ping"):
            await self._require().ping()
        await self._check_layout()

    async def _check_layout(self) -> None:
        """Drop layout 1's extra indexes (see :mod:`.keys`) once, on the first answer.

        Layout 2 keeps a subset of layout 1's indexes, so history written by an older version
        reads the same; what goes is what nothing maintains any more. UNLINK frees them in the
        background, so a large history does not block Redis.
        """
        if self._layout_checked:
            return
        client = self._require()
        with self._errors("layout check"):
            old = self.keys.layout1_keys([])
            if await client.exists(*old):
                funcs = sorted(str(name) for name in await client.smembers(self.keys.funcs))
                await client.unlink(*self.keys.layout1_keys(funcs))
                logger.info("removed the layout-1 indexes of %s", self.describe())
        self._layout_checked = True

    async def save(self, records: Sequence[TaskRecord]) -> list[str]:
        """Upsert ``records``, each with all its index entries atomically.

        Up to :data:`SAVE_CHUNK` records go in one script call (all of them or none); a larger
        batch goes as several calls streamed on one connection (see :mod:`.stream`),
        applied in order. If one fails, the others may still be stored, and saving the batch
        again is harmless.
        """
        if len(records) <= SAVE_CHUNK:
            return [str(i) for i in await self._save_chunk(records)]
        chunks = [
            records[start : start + SAVE_CHUNK] for start in range(0, len(records), SAVE_CHUNK)
        ]
        refused: list[str] = []
        if not self._save_loaded:
            # The server may not have the script yet, and a stream of calls it does not know
            # would all be sent again. One plain call loads it if need be.
            refused += await self._save_chunk(chunks.pop(0))
        script, keys = self._scripts["SAVE"], self.keys.script_keys
        with self._errors("save"):
            replies = await call_streamed(self._require(), script, keys, chunks, self._save_args)
        return [str(i) for i in refused + [i for reply in replies for i in reply]]

    async def _save_chunk(self, records: Sequence[TaskRecord], mode: str = "") -> Any:
        args = self._save_args(records, mode)
        reply = await self._script("save", "SAVE", self.keys.script_keys, args)
        self._save_loaded = True
        return reply

    def _save_args(self, records: Sequence[TaskRecord], mode: str = "") -> list[Any]:
        args: list[Any] = [*self.keys.script_prefixes, mode, self.keys.tag_prefix]
        encode = self.codec.encode
        for record in records:
            r, data = encode(record)  # values orjson refuses are made safe: hiredis's too
            tags = "\n".join(f"{k}:{v}" for k, v in sorted(r.tags.items())) if r.tags else ""
            args += (r.task_id, r.status.value, r.func_name, sort_ts(r), r.instance_id, data, tags)
        return args

    # -- the cluster (see SnapshotBackend) --------------------------------------------------

    async def heartbeat(self, info: InstanceInfo) -> None:
        data = {"host": info.host, "pid": info.pid, "started_at": info.started_at.isoformat()}
        with self._errors("heartbeat"):
            async with self._require().pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.instances, info.instance_id, json.dumps(data))
                pipe.zadd(self.keys.heartbeats, {info.instance_id: epoch(info.last_heartbeat)})
                await pipe.execute()

    async def deregister(self, instance_id: str) -> None:
        with self._errors("deregister"):
            async with self._require().pipeline(transaction=True) as pipe:
                pipe.hdel(self.keys.instances, instance_id)
                pipe.zrem(self.keys.heartbeats, instance_id)
                await pipe.execute()

    async def instances(self) -> list[InstanceInfo]:
        with self._errors("instances"):
            client = self._require()
            infos = await client.hgetall(self.keys.instances)
            scored = await client.zrange(self.keys.heartbeats, 0, -1, withscores=True)
        beats = {str(pair[0]): float(pair[1]) for pair in scored}
        return [
            instance_info(str(i), str(data), beats.get(str(i))) for i, data in sorted(infos.items())
        ]

    async def expire_instances(self, heartbeat_before: datetime) -> list[str]:
        keys = [self.keys.heartbeats, self.keys.instances]
        ids = await self._script("expire", "EXPIRE_INSTANCES", keys, [epoch(heartbeat_before)])
        return sorted(str(i) for i in ids)

    async def live_owners(self) -> set[str]:
        with self._errors("live owners"):
            return {str(owner) for owner in await self._require().smembers(self.keys.owners)}

    async def claim_live(
        self, owner: str, new_owner: str, limit: int | None = None
    ) -> list[TaskRecord]:
        keys = [self.keys.live(owner), self.keys.live(new_owner), self.keys.owners]
        args = [self.keys.task(""), owner, new_owner, "" if limit is None else limit]
        flat = await self._script("claim", "CLAIM_LIVE", keys, args)
        decode = self.codec.decode
        claimed = (decode(d, i) for i, d in zip(flat[0::2], flat[1::2], strict=True))
        return [record for record in claimed if record is not None]

    async def claim_new(self, record: TaskRecord) -> TaskRecord | None:
        result = await self._save_chunk([record], mode="claim")
        if isinstance(result, list) and result and result[0] == "exists":
            return self.codec.decode(result[1], record.task_id)
        return None

    async def request_cancel(self, task_id: str) -> None:
        # Trimmed by length (approximately, which is cheap) and by age (MINID): whichever
        # removes more. Entry ids are the server's milliseconds, so age needs no clock here.
        with self._errors("request cancel"):
            client = self._require()
            await client.xadd(
                self.keys.cancels, {"task": task_id}, maxlen=CANCEL_STREAM_MAXLEN, approximate=True
            )
            last = await client.xrevrange(self.keys.cancels, count=1)
            if last:
                newest_ms = int(str(last[0][0]).split("-")[0])
                oldest_kept = newest_ms - int(CANCEL_REQUEST_TTL * 1000)
                await client.xtrim(self.keys.cancels, minid=oldest_kept, approximate=True)

    async def cancel_requests(self, after: str | None) -> tuple[list[str], str]:
        with self._errors("cancel requests"):
            client = self._require()
            if after is None:
                last = await client.xrevrange(self.keys.cancels, count=1)
                return [], str(last[0][0]) if last else "0-0"
            entries = await client.xrange(self.keys.cancels, min=f"({after}", count=CANCEL_BATCH)
        if not entries:
            return [], after
        ids = [str((fields or {}).get("task", "")) for _, fields in entries]
        return [i for i in ids if i], str(entries[-1][0])

    async def get(self, task_id: str) -> TaskRecord | None:
        with self._errors("get"):
            data = await self._require().hget(self.keys.task(task_id), "data")
        return None if data is None else self.codec.decode_or_raise(data, task_id)

    async def query(self, query: TaskQuery) -> Page:
        if query.tags:
            return make_page(await self._tagged(query), query.limit)
        indexes = self.keys.indexes(query.status, query.func_name)
        return make_page(await self._collect(indexes, query, query.limit + 1), query.limit)

    async def _tagged(self, query: TaskQuery) -> list[TaskRecord]:
        # The smallest of the tags' sorted sets, walked in order; the other filters (status,
        # function, the other tags) are checked on each record read.
        keys = [self.keys.tag(key, value) for key, value in query.tags]
        with self._errors("query"):
            async with self._require().pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zcard(key)
                sizes = await pipe.execute()
        if not all(sizes):
            return []
        smallest = min(zip(sizes, keys, strict=True))[1]
        return await self._collect([smallest], query, query.limit + 1, keep=query.matches)

    async def load_recent(self, limit: int) -> list[TaskRecord]:
        await self._check_layout()  # startup reads this first
        return await self._collect(self.keys.indexes(), TaskQuery(), limit)

    async def prune(self, *, older_than: datetime | None, keep: int | None) -> int:
        """Remove finished records and all their index entries, oldest first, in atomic chunks."""
        if keep is not None and keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        if older_than is None and keep is None:
            return 0
        below = "" if older_than is None else repr(epoch(older_than))
        args = [
            *self.keys.script_prefixes,
            below,
            "" if keep is None else keep,
            PRUNE_CHUNK,
            self.keys.tag_prefix,
        ]
        keys = [*self.keys.finished_indexes(), *self.keys.script_keys]
        removed = 0
        while True:
            n = int(await self._script("prune", "PRUNE", keys, args))
            removed += n
            if n < PRUNE_CHUNK:
                break
        if removed:
            logger.info("pruned %d finished tasks from %s", removed, self.describe())
        return removed

    async def counts(self) -> HistoryCounts:
        client = self._require()
        statuses = [s.value for s in TaskStatus]
        with self._errors("counts"):
            async with client.pipeline(transaction=False) as pipe:
                for status in statuses:
                    pipe.zcard(self.keys.index(TaskStatus(status)))
                pipe.smembers(self.keys.funcs)
                *by_status, funcs = await pipe.execute()
                names = sorted(funcs)
                for name in names:
                    for index in self.keys.indexes(func_name=name):
                        pipe.zcard(index)
                sizes = await pipe.execute()
        width = len(statuses)
        by_func = {
            name: sum(int(n) for n in sizes[i * width : (i + 1) * width])
            for i, name in enumerate(names)
        }
        return HistoryCounts(
            {s: int(n) for s, n in zip(statuses, by_status, strict=True) if n},
            {f: n for f, n in by_func.items() if n},
        )

    async def count_selected(self, selection: Selection) -> int:
        low, high = _score_range(selection)
        with self._errors("count"):
            async with self._require().pipeline(transaction=False) as pipe:
                for index in self._selected_indexes(selection):
                    pipe.zcount(index, low, high)
                return sum(int(n) for n in await pipe.execute())

    async def purge(self, selection: Selection, limit: int) -> int:
        """Remove the ``limit`` oldest matching finished records with all their index entries,
        in atomic script calls of at most :data:`PRUNE_CHUNK` records."""
        low, high = _score_range(selection)
        keys = [*self._selected_indexes(selection), self.keys.funcs]
        removed = 0
        while removed < limit:
            chunk = min(PRUNE_CHUNK, limit - removed)
            args = [*self.keys.script_prefixes, low, high, chunk, self.keys.tag_prefix]
            n, examined = await self._script("purge", "PURGE", keys, args)
            removed += int(n)
            if int(examined) < chunk or not int(n):
                break
        if removed:
            logger.info("purged %d finished tasks from %s", removed, self.describe())
        return removed

    def _selected_indexes(self, selection: Selection) -> list[str]:
        func = selection.func_name
        return [self.keys.index(TaskStatus(s), func) for s in selection.status_values]

    async def _collect(
        self,
        indexes: list[str],
        query: TaskQuery,
        want: int,
        keep: Callable[[TaskRecord], bool] | None = None,
    ) -> list[TaskRecord]:
        # Malformed or missing records are skipped; when that leaves a batch short, continue
        # after the last member read so a page still holds `want` records when that many exist.
        high = "+inf" if query.until is None else repr(query.until.timestamp())
        low = "-inf" if query.since is None else repr(query.since.timestamp())
        after = (query.cursor.sort_ts, query.cursor.task_id) if query.cursor else None
        if after is not None and query.until is not None and after[0] > query.until.timestamp():
            after = None  # everything up to `until` is already past the cursor
        if after is not None and query.since is not None and after[0] < query.since.timestamp():
            return []
        records: list[TaskRecord] = []
        while len(records) < want:
            batch = want - len(records)
            cursor = ("", "") if after is None else (repr(after[0]), after[1])
            args = [self.keys.script_prefixes[0], high, low, batch, *cursor]
            flat = await self._script("query", "PAGE", indexes, args)
            for task_id, data in zip(flat[0::3], flat[2::3], strict=True):
                if data is None:
                    logger.warning("skipping task %s: indexed but not stored", task_id)
                    continue
                record = self.codec.decode(data, task_id)
                if record is not None and (keep is None or keep(record)):
                    records.append(record)
            if len(flat) < 3 * batch:
                break
            after = (float(flat[-2]), flat[-3])
        return records

    # -- scheduled tasks (see SnapshotBackend) ------------------------------------------------

    async def claim_tick(self, name: str, tick: datetime, run: TaskRecord) -> bool:
        keys = [self.keys.schedule(name), self.keys.schedules]
        args = [repr(epoch(tick)), run.task_id, name]
        if not await self._script("claim tick", "CLAIM_TICK", keys, args):
            return False
        # One round trip after the claim (a script cannot call the save script): the window a
        # kill could leave a claimed tick without its record is that round trip.
        await self.save([run])
        return True

    async def schedule_states(self) -> dict[str, ScheduleState]:
        client = self._require()
        with self._errors("schedules"):
            names = sorted(str(name) for name in await client.smembers(self.keys.schedules))
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self.keys.schedule(name))
                hashes = await pipe.execute()
        states = {}
        for name, fields in zip(names, hashes, strict=True):
            tick = fields.get("last_tick")
            states[name] = ScheduleState(
                name,
                None if tick is None else datetime.fromtimestamp(float(tick), timezone.utc),
                fields.get("last_task_id"),
                fields.get("paused") == "1",
            )
        return states

    async def set_paused(self, name: str, paused: bool) -> None:
        with self._errors("pause"):
            async with self._require().pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.schedule(name), "paused", "1" if paused else "0")
                pipe.sadd(self.keys.schedules, name)
                await pipe.execute()

    async def add_delayed(self, record: TaskRecord) -> None:
        """Save the record, then queue it: a crash between the two leaves a ``scheduled``
        record that nothing runs, never a queued id without its record."""
        if record.status is not TaskStatus.SCHEDULED or record.scheduled_for is None:
            raise ValueError("a delayed task is stored with status scheduled and its time")
        if record.task_id in await self.save([record]):
            return  # another instance owns this id now (it claimed it): nothing to queue
        with self._errors("add delayed"):
            await self._require().zadd(
                self.keys.delayed, {record.task_id: epoch(record.scheduled_for)}
            )

    async def next_due(self) -> datetime | None:
        with self._errors("next due"):
            first = await self._require().zrange(self.keys.delayed, 0, 0, withscores=True)
        return datetime.fromtimestamp(float(first[0][1]), timezone.utc) if first else None

    async def claim_due(self, now: datetime, new_owner: str, limit: int) -> list[TaskRecord]:
        args = [repr(epoch(now)), limit, self.keys.task(""), new_owner, self.keys.live("")]
        keys = [self.keys.delayed, self.keys.owners]
        flat = await self._script("claim due", "CLAIM_DUE", keys, args)
        decode = self.codec.decode
        claimed = (decode(d, i) for i, d in zip(flat[0::2], flat[1::2], strict=True))
        return [record for record in claimed if record is not None]

    async def _script(self, action: str, name: str, keys: list[str], args: list[Any]) -> Any:
        client = self._require()
        with self._errors(action):
            return await self._scripts[name](keys=keys, args=args, client=client)

    def _require(self) -> Redis:
        if self._client is None:
            raise BackendError(f"{self.describe()} is not open")
        return self._client

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            raise BackendError(f"Redis {action} failed on {self.describe()}: {exc}") from exc

    # -- the audit trail (see keys.AUDIT) ----------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> None:
        """Add the entry and trim by age and count in one MULTI/EXEC."""
        cutoff_ms = int((entry.at.timestamp() - AUDIT_KEEP_SECONDS) * 1000)
        key = self.keys.audit
        with self._errors("audit"):
            async with self._require().pipeline(transaction=True) as pipe:
                pipe.zadd(key, {f"{entry.entry_id}|{encode_audit(entry)}": 0})
                # Ids begin with 12 hex digits of milliseconds: older entries sort below.
                pipe.zremrangebylex(key, "-", f"({max(cutoff_ms, 0):012x}")
                pipe.zremrangebyrank(key, 0, -AUDIT_KEEP_ENTRIES - 1)
                await pipe.execute()

    async def audit_entries(self, limit: int, before: str | None = None) -> list[AuditEntry]:
        high = "+" if before is None else f"({before}"
        with self._errors("audit read"):
            members = await self._require().zrange(
                self.keys.audit, high, "-", desc=True, bylex=True, offset=0, num=limit
            )
        decoded = (decode_audit(str(member).partition("|")[2]) for member in members)
        return [entry for entry in decoded if entry is not None]

    # -- revoked dashboard sessions (see SnapshotBackend) -----------------------------------

    async def revoke_session(self, session_id: str, expires_at: datetime) -> None:
        # A relative TTL from this host's clock, the clock that judges a session's age here.
        ttl_ms = int((epoch(expires_at) - time.time()) * 1000)
        if ttl_ms <= 0:
            return
        with self._errors("revoke session"):
            await self._require().set(self.keys.revoked(session_id), "1", px=ttl_ms)

    async def session_revoked(self, session_id: str) -> bool:
        with self._errors("session check"):
            return bool(await self._require().exists(self.keys.revoked(session_id)))


def check_url(url: str) -> None:
    """Raise ``ValueError`` naming what is wrong with a Redis URL, without connecting."""
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"Redis URL {shown!r} cannot be parsed: {exc}") from None
    if "@" in parts.path or "@" in parts.query:
        # An unescaped "/" in the password ends the host early: say so, and show no part of it.
        raise ValueError(
            f"Redis URL {shown!r} has an '@' after its host; escape '/' and '@' in the "
            "password as %2F and %40"
        )
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"Redis URL {shown!r} has scheme {parts.scheme!r}; use one of {_SCHEMES}")
    query = parse_qs(parts.query)
    db = query["db"][0] if "db" in query else parts.path.strip("/")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"Redis URL {shown!r} has no socket path; use unix:///path/to/sock")
        db = query["db"][0] if "db" in query else ""
    elif not parts.hostname:
        raise ValueError(f"Redis URL {shown!r} has no host; use redis://host:6379/0")
    try:
        parts.port  # noqa: B018 - urllib validates the port when it is read
    except ValueError:
        raise ValueError(
            f"Redis URL {shown!r} has a port that is not a number in 0-65535"
        ) from None
    if db and not db.isdigit():
        raise ValueError(f"Redis URL {shown!r}: database {db!r} is not a non-negative integer")
    try:
        parse_url(url)  # the options redis-py reads from the query string
    except ValueError as exc:
        raise ValueError(f"Redis URL {shown!r}: {exc}") from None


def _score_range(selection: Selection) -> tuple[str, str]:
    """The lowest and highest index score of a selection (sort times, inclusive)."""
    low = "-inf" if selection.since is None else repr(selection.since.timestamp())
    high = "+inf" if selection.until is None else repr(selection.until.timestamp())
    return low, high


def instance_info(instance_id: str, data: str, heartbeat: float | None) -> InstanceInfo:
    fields = json.loads(data)
    started = datetime.fromisoformat(fields["started_at"])
    last = datetime.fromtimestamp(heartbeat, timezone.utc) if heartbeat is not None else started
    return InstanceInfo(instance_id, str(fields["host"]), int(fields["pid"]), started, last)
