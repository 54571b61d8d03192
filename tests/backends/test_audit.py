"""The audit trail part of the history contract, on every backend: entries appended on one
instance are listed on every other, newest first, paged, and kept within the retention."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import aiosqlite
import pytest

from taskflow.backends import base
from taskflow.backends.base import SnapshotBackend
from taskflow.backends.postgres.schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from taskflow.backends.sqlite import SqliteBackend
from taskflow.backends.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from taskflow.models import AuditEntry, new_task_id, utcnow
from tests.backends.conftest import Store, rec


def entry(n: int, *, action: str = "retry", ago: float = 0.0) -> AuditEntry:
    at = utcnow() - timedelta(seconds=ago)
    # Ids begin with the time in ms, as new_task_id() makes them; n orders equal times.
    entry_id = f"{int(at.timestamp() * 1000):012x}{n:020x}"
    return AuditEntry(entry_id, at, action, "token", "10.0.0.1", f"task t{n}", "inst-1")


async def test_entries_are_listed_newest_first_on_every_instance(
    backend: SnapshotBackend, store: Store
) -> None:
    other = store.make()
    await other.open()
    entries = [entry(n, ago=10 - n) for n in range(10)]
    for item in entries:
        await backend.append_audit(item)
    await backend.append_audit(entries[3])  # idempotent
    listed = await other.audit_entries(100)
    assert listed == entries[::-1]
    first = await other.audit_entries(4)
    assert first == entries[::-1][:4]
    second = await other.audit_entries(4, before=first[-1].entry_id)
    assert second == entries[::-1][4:8]
    assert await other.audit_entries(4, before=entries[0].entry_id) == []


async def test_any_text_is_kept_as_it_is(backend: SnapshotBackend) -> None:
    odd = AuditEntry(
        new_task_id(), utcnow(), "purge", "session:ab12", "::1", 'func "\ud800" | ✓ \x00', "i"
    )
    await backend.append_audit(odd)
    assert await backend.audit_entries(1) == [odd]


async def test_old_entries_and_those_beyond_the_count_are_trimmed(
    backend: SnapshotBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = entry(1, ago=base.AUDIT_KEEP_SECONDS + 60)
    await backend.append_audit(old)
    await backend.append_audit(entry(2))
    assert [e.target for e in await backend.audit_entries(10)] == ["task t2"]
    # The count bound, made small: the backends read the constant at each append.
    for module in _modules_of(backend):
        monkeypatch.setattr(module, "AUDIT_KEEP_ENTRIES", 3)
    for n in range(3, 8):
        await backend.append_audit(entry(n, ago=-n))  # newer than t2
    assert [e.target for e in await backend.audit_entries(10)] == ["task t7", "task t6", "task t5"]


def _modules_of(backend: SnapshotBackend) -> list[object]:
    import sys

    name = type(backend).__module__
    package = name.rsplit(".", 1)[0]
    return [
        m
        for n, m in sys.modules.items()
        if n.startswith(package) and hasattr(m, "AUDIT_KEEP_ENTRIES")
    ]


async def test_a_version_3_sqlite_file_gains_the_audit_trail(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    async with aiosqlite.connect(path) as conn:
        for step in range(3):
            for statement in MIGRATIONS[step]:
                await conn.execute(statement)
        await conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        await conn.execute("PRAGMA user_version = 3")
        await conn.commit()
    backend = SqliteBackend(path)
    await backend.open()
    try:
        await backend.save([rec("kept")])
        await backend.append_audit(entry(1))
        assert (await backend.pragmas())["user_version"] == SCHEMA_VERSION
        assert [e.target for e in await backend.audit_entries(5)] == ["task t1"]
    finally:
        await backend.close()


@pytest.mark.postgres
async def test_a_version_1_postgres_schema_gains_the_audit_trail(postgres_url: str) -> None:
    import asyncpg

    from taskflow.backends.postgres import PostgresBackend
    from taskflow.backends.postgres.schema import migrations

    schema = f"tftest_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        for statement in migrations(schema)[0]:
            await conn.execute(statement)
        await conn.execute(f"CREATE TABLE {schema}.schema_version (version integer NOT NULL)")
        await conn.execute(f"INSERT INTO {schema}.schema_version VALUES (1)")
        backend = PostgresBackend(postgres_url, schema=schema)
        await backend.open()
        try:
            await backend.save([rec("kept")])
            await backend.append_audit(entry(1))
            assert [e.target for e in await backend.audit_entries(5)] == ["task t1"]
            assert await backend.get("kept") is not None
        finally:
            await backend.close()
        version = await conn.fetchval(f"SELECT max(version) FROM {schema}.schema_version")
        assert version == PG_SCHEMA_VERSION
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
