"""Arguments stored to run a task again are encrypted at rest when keys are set, and keys rotate.

Each test runs against each real backend; what is stored is read back raw, bypassing the codec.
"""

from __future__ import annotations

from typing import Any

import aiosqlite
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from taskflow import RetryRefused, TaskManager, TaskStatus
from taskflow.backends.base import SnapshotBackend
from taskflow.backends.cipher import ArgumentCipher
from taskflow.backends.postgres import PostgresBackend
from taskflow.backends.redis import RedisBackend
from taskflow.backends.sqlite import SqliteBackend
from tests.backends.conftest import Store
from tests.helpers import wait_finished

SECRET = "4111 1111 1111 1111"
ran: list[tuple[str, dict[str, Any]]] = []


async def raw_data(backend: SnapshotBackend, task_id: str) -> str:
    """The stored JSON of a record, as the backend holds it."""
    if isinstance(backend, SqliteBackend):
        async with aiosqlite.connect(backend.path) as conn:
            rows = list(
                await conn.execute_fetchall("SELECT data FROM tasks WHERE task_id = ?", (task_id,))
            )
        return str(rows[0][0])
    if isinstance(backend, PostgresBackend):
        import asyncpg

        conn = await asyncpg.connect(backend.dsn)
        try:
            sql = f"SELECT data FROM {backend.schema}.tasks WHERE task_id = $1"
            return str(await conn.fetchval(sql, task_id))
        finally:
            await conn.close()
    assert isinstance(backend, RedisBackend)
    client = Redis.from_url(backend.url, decode_responses=True)
    try:
        return str(await client.hget(backend.keys.task(task_id), "data"))
    finally:
        await client.aclose()


def manager_on(store: Store, keys: list[bytes] | None) -> TaskManager:
    manager = TaskManager(snapshot_backend=store.make(), args_keys=keys)

    @manager.task(name="charge")
    def charge(card: str, amount: int) -> None:
        ran.append((card, {"amount": amount}))
        raise RuntimeError("declined")

    return manager


async def test_stored_arguments_are_encrypted_and_run_again_elsewhere(store: Store) -> None:
    key = Fernet.generate_key()
    first = manager_on(store, [key])
    await first.start()
    try:
        task_id = first.submit(_charge(first), SECRET, amount=10)
        record = await wait_finished(first, task_id)
        assert record.rerunnable
        assert await first.flush()
    finally:
        await first.stop()
    stored = await raw_data(first.backend, task_id)  # type: ignore[arg-type]
    assert SECRET not in stored and '"sealed_args":"gAAAA' in stored
    assert '"func_name":"charge"' in stored and '"status":"failed"' in stored  # still listable

    ran.clear()
    other = manager_on(store, [key])  # another instance, the same key
    await other.start()
    try:
        retry = await other.retry(task_id)
        await wait_finished(other, retry.task_id)
    finally:
        await other.stop()
    assert ran == [(SECRET, {"amount": 10})]


async def test_keys_rotate_and_a_missing_key_refuses_the_retry(store: Store) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    first = manager_on(store, [old])
    await first.start()
    try:
        old_id = first.submit(_charge(first), SECRET, amount=1)
        await wait_finished(first, old_id)
        assert await first.flush()
    finally:
        await first.stop()

    rotated = manager_on(store, [new, old])  # the first key encrypts, every key decrypts
    await rotated.start()
    try:
        new_id = rotated.submit(_charge(rotated), SECRET, amount=2)
        await wait_finished(rotated, new_id)
        assert await rotated.flush()
        reopened = await rotated.aget(old_id)
        assert reopened is not None
        assert (reopened.args, reopened.kwargs) == ([SECRET], {"amount": 1})
    finally:
        await rotated.stop()
    new_token = _token(await raw_data(rotated.backend, new_id))  # type: ignore[arg-type]
    assert ArgumentCipher([new]).open(new_token) is not None
    assert ArgumentCipher([old]).open(new_token) is None

    stranger = manager_on(store, [Fernet.generate_key()])
    await stranger.start()
    try:
        record = await stranger.aget(old_id)
        assert record is not None and record.status is TaskStatus.FAILED
        assert record.args is None and record.sealed_args is not None
        with pytest.raises(RetryRefused, match="encrypted with a key"):
            await stranger.retry(old_id)
    finally:
        await stranger.stop()


def test_a_key_that_is_not_a_fernet_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="argument key 2 is not a Fernet key") as caught:
        ArgumentCipher([Fernet.generate_key(), "hunter2-not-a-key"])
    assert "hunter2" not in str(caught.value)


def _charge(manager: TaskManager) -> Any:
    definition = manager.definition("charge")
    assert definition is not None
    return definition.func


def _token(data: str) -> str:
    import json

    return str(json.loads(data)["sealed_args"])
