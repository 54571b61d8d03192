"""A backend that implements only the history contract is enough: the manager persists, lists
and restores through it, and turns the cluster features off with one log line.

The backend here is a minimal one written against :class:`HistoryBackend` alone, as a third
party would (records in a dict shared by the backends made on it), to show the contract's size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager, TaskRecord, TaskStatus
from taskflow.backends.base import HistoryBackend, HistoryCounts
from taskflow.models import AuditEntry
from taskflow.query import Page, Selection, TaskQuery, page_of, sort_key
from tests.helpers import wait_finished


class DictHistory(HistoryBackend):
    """History in a dict (shared by clones): the whole history contract, nothing more."""

    kind = "dict"

    def __init__(self, records: dict[str, TaskRecord] | None = None) -> None:
        from taskflow.backends.codec import RecordCodec

        self.codec = RecordCodec()
        self.records = {} if records is None else records
        self.audit: list[AuditEntry] = []

    def describe(self) -> str:
        return "dict"

    def clone(self) -> DictHistory:
        return DictHistory(self.records)

    async def ping(self) -> None:
        return None

    async def save(self, records: Sequence[TaskRecord]) -> list[str]:
        for record in records:
            known = self.records.get(record.task_id)
            if known is None or not known.status.finished or record.status.finished:
                stored, data = self.codec.encode(record)
                self.records[record.task_id] = self.codec.decode_or_raise(data, stored.task_id)
        return []

    async def get(self, task_id: str) -> TaskRecord | None:
        return self.records.get(task_id)

    async def query(self, query: TaskQuery) -> Page:
        return page_of(self.records.values(), query)

    async def load_recent(self, limit: int) -> list[TaskRecord]:
        return page_of(self.records.values(), TaskQuery(limit=limit)).records

    async def prune(self, *, older_than: datetime | None, keep: int | None) -> int:
        return 0

    async def counts(self) -> HistoryCounts:
        counts = HistoryCounts()
        for record in self.records.values():
            counts.by_status[record.status.value] = counts.by_status.get(record.status.value, 0) + 1
            counts.by_func[record.func_name] = counts.by_func.get(record.func_name, 0) + 1
        return counts

    async def count_selected(self, selection: Selection) -> int:
        return sum(1 for record in self.records.values() if selection.matches(record))

    async def append_audit(self, entry: AuditEntry) -> None:
        self.audit.append(entry)

    async def audit_entries(self, limit: int, before: str | None = None) -> list[AuditEntry]:
        newest = sorted(self.audit, key=lambda e: e.entry_id, reverse=True)
        return [e for e in newest if before is None or e.entry_id < before][:limit]

    async def purge(self, selection: Selection, limit: int) -> int:
        chosen = sorted((r for r in self.records.values() if selection.matches(r)), key=sort_key)[
            :limit
        ]
        for record in chosen:
            del self.records[record.task_id]
        return len(chosen)


async def report(n: int) -> int:
    return n


async def test_a_history_only_backend_persists_lists_and_restores(
    make_client, caplog: pytest.LogCaptureFixture
) -> None:
    backend = DictHistory()
    manager = TaskManager(snapshot_backend=backend)
    manager.task(report)
    app = FastAPI()
    TaskAdmin(app, manager)

    @app.post("/report")
    async def enqueue(background_tasks: BackgroundTasks, key: str | None = None) -> dict:
        kwargs = {} if key is None else {"idempotency_key": key}
        return {"task_id": background_tasks.add_task(report, 1, **kwargs)}

    with caplog.at_level(logging.WARNING):
        async for client in make_client(app):
            ids = [(await client.post("/report")).json()["task_id"] for _ in range(3)]
            keyed = {(await client.post("/report", params={"key": "k"})).json()["task_id"]}
            keyed.add((await client.post("/report", params={"key": "k"})).json()["task_id"])
            for task_id in ids:
                await wait_finished(manager, task_id)
            assert (await client.get("/readyz")).status_code == 200
            listed = (await client.get("/tasks")).json()["items"]
            assert {item["task_id"] for item in listed} >= set(ids)
    assert len(keyed) == 1  # idempotency keys still hold, within this instance
    assert "implements the history contract only" in caplog.text
    assert caplog.text.count("implements the history contract only") == 1
    for task_id in ids:
        assert backend.records[task_id].status is TaskStatus.SUCCESS
    # Only finished records reached it: no live records without a cluster to claim them.
    assert all(record.status.finished for record in backend.records.values())

    again = TaskManager(snapshot_backend=backend.clone())
    await again.start()
    try:
        assert {r.task_id for r in await again.aquery(limit=100)} >= set(ids)
    finally:
        await again.stop()


async def test_schedules_run_once_per_process_on_a_history_only_backend() -> None:
    import asyncio

    manager = TaskManager(snapshot_backend=DictHistory())
    ran: list[str] = []
    manager.schedule(every=0.2, name="tick")(lambda: ran.append("tick"))
    manager.task(report)
    async with manager.lifespan():
        task_id = await manager.schedule_once(report, 7, countdown=0.1)
        done = await wait_finished(manager, task_id)
        await asyncio.sleep(0.5)
        (view,) = await manager.schedules()
    assert done.status is TaskStatus.SUCCESS
    assert len(ran) >= 2 and view.last_run is not None
