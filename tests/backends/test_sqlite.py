"""SQLite-only behaviour: pragmas, foreign files, query plans, busy handling, many processes."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from taskflow.backends.base import BackendError
from taskflow.backends.sqlite import SqliteBackend
from taskflow.backends.sqlite import backend as sqlite_backend
from taskflow.backends.sqlite.schema import APPLICATION_ID, SCHEMA_VERSION
from taskflow.backends.sqlite.sql import PRUNE_BEYOND, PRUNE_OLDER, select_sql
from taskflow.models import TaskRecord, TaskStatus
from taskflow.query import Cursor, TaskQuery

ROOT = Path(__file__).resolve().parents[2]


def finished(
    task_id: str, func: str = "job", status: TaskStatus = TaskStatus.SUCCESS
) -> TaskRecord:
    now = datetime.now(timezone.utc)
    return TaskRecord(task_id, func, status, created_at=now, start_time=now, end_time=now)


MakeBackend = Callable[..., Awaitable[SqliteBackend]]


@pytest.fixture
async def make_sqlite(tmp_path: Path) -> AsyncIterator[MakeBackend]:
    """Factory: an opened backend on ``tmp_path/tasks.db`` (or ``path=``), closed at teardown."""
    made: list[SqliteBackend] = []

    async def make(path: Path | None = None, **options: Any) -> SqliteBackend:
        backend = SqliteBackend(path or tmp_path / "tasks.db", **options)
        made.append(backend)
        await backend.open()
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture
async def opened(make_sqlite: MakeBackend) -> SqliteBackend:
    return await make_sqlite()


async def test_open_sets_wal_busy_timeout_and_schema(opened: SqliteBackend, tmp_path: Path) -> None:
    pragmas = await opened.pragmas()
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["busy_timeout"] >= 5000
    assert pragmas["synchronous"] == 1  # NORMAL
    assert pragmas["journal_size_limit"] == 64 * 1024 * 1024
    assert pragmas["user_version"] == SCHEMA_VERSION
    with sqlite3.connect(tmp_path / "tasks.db") as conn:  # what other processes see
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
    conn.close()


async def test_a_new_file_gets_the_larger_page_and_an_existing_file_keeps_its_own(
    make_sqlite: MakeBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_sqlite()
    with sqlite3.connect(tmp_path / "tasks.db") as conn:
        assert conn.execute("PRAGMA page_size").fetchone() == (sqlite_backend.PAGE_SIZE,)
    conn.close()
    assert sqlite_backend.PAGE_SIZE == 8192

    older = tmp_path / "older.db"  # as made before the page size was set: SQLite's 4 KiB
    monkeypatch.setattr(sqlite_backend, "PAGE_SIZE", 4096)
    writer = await make_sqlite(older)
    await writer.save([finished("before")])
    await writer.close()
    monkeypatch.undo()
    reopened = await make_sqlite(older)
    await reopened.save([finished("after")])
    assert {r.task_id for r in await reopened.load_recent(10)} == {"before", "after"}
    with sqlite3.connect(older) as conn:
        assert conn.execute("PRAGMA page_size").fetchone() == (4096,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


async def test_open_creates_the_directory_and_logs_path_and_version(
    make_sqlite: MakeBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a" / "b" / "tasks.db"
    with caplog.at_level(logging.INFO, logger="taskflow.backends.sqlite"):
        await make_sqlite(path)
    assert path.exists()
    assert str(path) in caplog.text
    assert sqlite3.sqlite_version in caplog.text


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:////srv/data/tasks.db", "/srv/data/tasks.db"),
        ("sqlite:///./tasks.db", os.path.abspath("tasks.db")),
        ("sqlite:///data/my%20tasks.db", os.path.abspath("data/my tasks.db")),
    ],
)
def test_from_url(url: str, path: str) -> None:
    backend = SqliteBackend.from_url(url, busy_timeout=7.0)
    assert backend.path == path
    assert backend.describe() == f"sqlite:{path}"
    clone = backend.clone()
    assert (clone.path, clone.busy_timeout) == (path, 7.0)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqlite://", "no file path"),
        ("sqlite:///", "no file path"),
        ("sqlite://server/tasks.db", "names a host"),
        ("sqlite:tasks.db", "must look like"),
        ("sqlite:///tasks.db?mode=ro", "query"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SqliteBackend.from_url(url)


def test_an_in_memory_database_is_refused() -> None:
    with pytest.raises(ValueError, match="not a file path"):
        SqliteBackend(":memory:")


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _other_app(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()


def _tasks_with_other_columns(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, payload BLOB)")
    conn.close()


def _other_user_version(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 7")
    conn.close()


@pytest.mark.parametrize(
    "make_foreign", [_random_bytes, _other_app, _tasks_with_other_columns, _other_user_version]
)
async def test_a_foreign_file_is_refused_and_left_untouched(
    tmp_path: Path, make_foreign: object
) -> None:
    path = tmp_path / "foreign.db"
    make_foreign(path)  # type: ignore[operator]
    before = path.read_bytes()
    with pytest.raises(BackendError, match="not a taskflow database") as caught:
        await SqliteBackend(path).open()
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before


async def test_a_newer_schema_is_refused(make_sqlite: MakeBackend, tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    await (await make_sqlite()).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(BackendError, match="newer"):
        await SqliteBackend(path).open()


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (TaskQuery(status=TaskStatus.FAILED, func_name="send_email"), "tasks_by_status_func"),
        (
            TaskQuery(
                status=TaskStatus.FAILED,
                func_name="send_email",
                since=datetime(2024, 1, 1, tzinfo=timezone.utc),
                cursor=Cursor(1.7e9, "abc"),
            ),
            "tasks_by_status_func",
        ),
        (TaskQuery(status=TaskStatus.SUCCESS), "tasks_by_status"),
        (TaskQuery(func_name="send_email", cursor=Cursor(1.7e9, "abc")), "tasks_by_func"),
        (TaskQuery(), "tasks_by_time"),
        (TaskQuery(until=datetime(2030, 1, 1, tzinfo=timezone.utc)), "tasks_by_time"),
    ],
)
async def test_listings_walk_an_index_without_sorting(
    opened: SqliteBackend, tmp_path: Path, query: TaskQuery, index: str
) -> None:
    sql, params = select_sql(query)
    async with aiosqlite.connect(tmp_path / "tasks.db") as conn:
        plan = " | ".join(
            row[3]
            for row in await conn.execute_fetchall(f"EXPLAIN QUERY PLAN {sql}", [*params, 50])
        )
    assert f"INDEX {index}" in plan
    assert "TEMP B-TREE" not in plan
    assert "SCAN tasks " not in plan or index == "tasks_by_time"


async def test_prune_statements_use_indexes(opened: SqliteBackend, tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "tasks.db") as conn:
        for sql in (PRUNE_OLDER, PRUNE_BEYOND):
            plan = " | ".join(
                row[3] for row in await conn.execute_fetchall(f"EXPLAIN QUERY PLAN {sql}", [1])
            )
            assert "TEMP B-TREE" not in plan, plan
            assert "INDEX" in plan, plan


async def test_a_briefly_held_write_lock_is_waited_out(
    make_sqlite: MakeBackend, tmp_path: Path
) -> None:
    path = tmp_path / "tasks.db"
    backend = await make_sqlite(busy_timeout=0.05)
    async with aiosqlite.connect(path, isolation_level=None) as other:
        await other.execute("BEGIN IMMEDIATE")
        release = asyncio.get_running_loop().call_later(
            0.3, lambda: asyncio.ensure_future(other.execute("COMMIT"))
        )
        await backend.save([finished("after-lock")])  # far longer than busy_timeout: retried
        release.cancel()
    assert (await backend.get("after-lock")) is not None


async def test_a_lock_that_is_never_released_fails_with_backend_error(
    make_sqlite: MakeBackend, tmp_path: Path
) -> None:
    path = tmp_path / "tasks.db"
    backend = await make_sqlite(busy_timeout=0.02)
    async with aiosqlite.connect(path, isolation_level=None) as other:
        await other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(BackendError, match=str(path)):
            await backend.save([finished("never")])
        assert time.monotonic() - started < 5
        await other.execute("ROLLBACK")
    await backend.save([finished("later")])  # the connection is usable again


async def test_close_truncates_the_wal(make_sqlite: MakeBackend, tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    backend = await make_sqlite()
    async with aiosqlite.connect(path) as reader:  # keeps the WAL from being deleted at close
        await reader.execute_fetchall("SELECT 1 FROM tasks LIMIT 1")
        for batch in range(5):
            await backend.save([finished(f"w-{batch}-{i}") for i in range(200)])
        await backend.close()
        assert wal_size(path) == 0


async def test_background_checkpoints_keep_the_wal_short(
    make_sqlite: MakeBackend, tmp_path: Path
) -> None:
    path = tmp_path / "tasks.db"
    backend = await make_sqlite(checkpoint_size=256 * 1024)
    for batch in range(40):  # some 20 MB of pages in all
        await backend.save([finished(f"b{batch}-{i}", func=f"f{i % 7}") for i in range(500)])
    # The WAL file keeps its high-water mark, so this is the longest it ever got.
    assert wal_size(path) < 6 * 1024 * 1024


async def test_small_writes_after_a_checkpoint_start_no_new_one(make_sqlite: MakeBackend) -> None:
    backend = await make_sqlite(checkpoint_size=256 * 1024)
    checkpointer = backend._checkpointer
    assert checkpointer is not None
    for batch in range(4):  # past the size: the WAL file keeps that length from now on
        await backend.save([finished(f"big{batch}-{i}") for i in range(500)])
    await checkpointer.wait()
    before = checkpointer.started
    assert before >= 1
    for n in range(50):
        await backend.save([finished(f"small-{n}")])
    # The WAL file keeps its length, so judged by its size each write would start one (50).
    assert checkpointer.started - before <= 10


def wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


WRITER = """
import asyncio, sys, time
from datetime import datetime, timedelta, timezone
from taskflow.backends.sqlite import backend as sqlite_backend
from taskflow.backends.sqlite import SqliteBackend
from taskflow.models import TaskRecord, TaskStatus

async def main(path, worker, start_at):
    await asyncio.sleep(max(0.0, start_at - time.time()))
    backend = SqliteBackend(path)
    await backend.open()
    try:
        for batch in range(10):
            now = datetime.now(timezone.utc)
            await backend.save([
                TaskRecord(f"w{worker}-{batch}-{i}", f"job{worker}", TaskStatus.SUCCESS,
                           created_at=now, start_time=now, end_time=now + timedelta(microseconds=i))
                for i in range(20)
            ])
    finally:
        await backend.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


def test_concurrent_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "tasks.db"  # new: the processes also race to create the schema
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(worker), str(start_at)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(4)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone() == (800,)
        by_func = dict(conn.execute("SELECT func_name, COUNT(*) FROM tasks GROUP BY func_name"))
        assert by_func == {f"job{w}": 200 for w in range(4)}
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


async def test_the_aiosqlite_internals_a_write_relies_on_are_there(tmp_path: Path) -> None:
    # in_thread() runs a whole transaction on aiosqlite's thread through Connection._execute
    # and the sqlite3 connection _conn (one hop instead of one per statement: 125 -> 75 us of
    # CPU per one-record write). An aiosqlite release that renames them must fail here.
    import inspect

    import aiosqlite

    from taskflow.backends.sqlite.txn import in_thread

    assert inspect.iscoroutinefunction(aiosqlite.Connection._execute)
    async with aiosqlite.connect(tmp_path / "internals.db") as conn:
        assert isinstance(conn._conn, sqlite3.Connection)
        assert await in_thread(conn, lambda raw: raw.execute("SELECT 41 + 1").fetchone()) == (42,)
