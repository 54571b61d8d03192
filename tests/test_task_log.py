"""task_log(), captured logging, progress and their bounds; the API's view of them."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskflow import TaskAdmin, TaskManager, TaskRecord, TaskStatus, task_context, task_log
from taskflow.backends.codec import RecordCodec
from taskflow.context import (
    MAX_LOG_BYTES,
    MAX_LOG_LINES,
    MAX_LOG_MESSAGE,
    UPDATE_INTERVAL,
    TaskContext,
)
from taskflow.events import EventKind
from tests.helpers import wait_finished


@pytest.fixture
async def manager() -> AsyncIterator[TaskManager]:
    manager = TaskManager(instance_id="web-1", shutdown_timeout=1.0)
    await manager.start()
    try:
        yield manager
    finally:
        await manager.stop()


async def test_log_lines_are_kept_with_the_record(manager: TaskManager) -> None:
    @manager.task
    async def charge(amount: int) -> None:
        task_log("charging", amount=amount, currency="EUR")
        task_log("card declined once", level="warning")

    @manager.task
    def ship() -> None:
        task_log("label printed", level="debug", carrier="post")

    record = await wait_finished(manager, manager.submit(charge, 12))
    assert [(line["level"], line["message"]) for line in record.logs or []] == [
        ("info", "charging"),
        ("warning", "card declined once"),
    ]
    assert record.logs and record.logs[0]["fields"] == {"amount": 12, "currency": "EUR"}
    assert abs(record.logs[0]["at"] - time.time()) < 5
    shipped = await wait_finished(manager, manager.submit(ship))
    assert shipped.logs and shipped.logs[0]["fields"] == {"carrier": "post"}


async def test_a_bad_level_is_a_value_error_and_outside_a_task_a_runtime_error(
    manager: TaskManager,
) -> None:
    errors: list[str] = []

    @manager.task
    async def shout() -> None:
        try:
            task_log("hi", level="loud")
        except ValueError as exc:
            errors.append(str(exc))

    await wait_finished(manager, manager.submit(shout))
    assert errors and "log level must be one of" in errors[0]
    with pytest.raises(RuntimeError):
        task_log("nowhere")


def test_lines_and_bytes_stay_bounded_and_the_overflow_is_counted() -> None:
    record = TaskRecord("t", "f", TaskStatus.RUNNING)
    context = TaskContext(record)
    for n in range(MAX_LOG_LINES + 50):
        context.log(f"line {n}")
    assert record.logs is not None and len(record.logs) == MAX_LOG_LINES
    assert record.logs[-1]["message"] == f"line {MAX_LOG_LINES + 49}"  # the newest are kept
    assert record.logs_dropped == 50
    big = TaskContext(record := TaskRecord("u", "f", TaskStatus.RUNNING))
    for _ in range(100):
        big.log("x" * 5000)
    assert len(orjson.dumps(record.logs)) <= MAX_LOG_BYTES
    assert all(len(line["message"]) <= MAX_LOG_MESSAGE for line in record.logs or [])
    assert record.logs_dropped + len(record.logs or []) == 100


log_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(
        st.tuples(
            st.text(max_size=3000),
            st.sampled_from(["debug", "info", "WARNING", "error", "critical"]),
            st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), log_values, max_size=3),
        ),
        max_size=30,
    )
)
def test_any_log_input_stays_bounded_and_storable(lines: list) -> None:
    record = TaskRecord("t" * 32, "f", TaskStatus.RUNNING)
    context = TaskContext(record)
    for message, level, fields in lines:
        if "message" in fields or "level" in fields:
            fields = {}  # those names are task_log's own parameters
        context.log(message, level, **fields)
    kept = record.logs or []
    assert len(kept) <= MAX_LOG_LINES and len(orjson.dumps(kept)) <= MAX_LOG_BYTES
    assert len(kept) + record.logs_dropped == len(lines)
    _, data = RecordCodec().encode(record)  # every backend stores it
    back = TaskRecord.from_dict(orjson.loads(data))
    assert len(back.logs or []) == len(kept)


async def test_progress_is_on_the_record_and_throttled(manager: TaskManager) -> None:
    updates: list[float] = []
    manager.subscribe(
        lambda kind, record: updates.append(time.monotonic()) if kind is EventKind.UPDATED else None
    )

    @manager.task
    async def crunch() -> None:
        for n in range(1000):
            task_context().progress((n + 1) / 1000, f"step {n + 1} of 1000")
            if n % 100 == 0:
                await asyncio.sleep(0.05)

    record = await wait_finished(manager, manager.submit(crunch))
    assert record.progress == {"fraction": 1.0, "message": "step 1000 of 1000"}
    # 1,000 calls over ~0.5 s: a handful of announcements, never two within the interval.
    assert 1 <= len(updates) <= 0.5 / UPDATE_INTERVAL + 4
    gaps = [b - a for a, b in itertools.pairwise(updates)]
    assert all(gap >= UPDATE_INTERVAL * 0.9 for gap in gaps), gaps


async def test_the_last_progress_of_a_burst_is_announced(manager: TaskManager) -> None:
    seen: list[dict | None] = []
    manager.subscribe(
        lambda kind, record: (
            seen.append(dict(record.progress or {})) if kind is EventKind.UPDATED else None
        )
    )

    @manager.task
    def crunch() -> None:
        for n in range(50):
            task_context().progress(n / 50, f"{n}")
        time.sleep(UPDATE_INTERVAL * 2)

    await wait_finished(manager, manager.submit(crunch))
    # From a thread: the first call announces (carrying whatever the record holds by then),
    # the rest of the burst waits for the interval, and its last value is announced too.
    assert 1 <= len(seen) <= 2
    assert seen[-1]["message"] == "49"


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, "half", True])
async def test_a_bad_fraction_is_a_value_error(manager: TaskManager, bad: object) -> None:
    errors: list[str] = []

    @manager.task
    async def report() -> None:
        try:
            task_context().progress(bad, "?")  # type: ignore[arg-type]
        except ValueError as exc:
            errors.append(str(exc))
        task_context().progress(None, "unknown")

    record = await wait_finished(manager, manager.submit(report))
    assert errors
    assert record.progress == {"fraction": None, "message": "unknown"}


async def test_captured_logging_is_opt_in() -> None:
    logger = logging.getLogger("tests.captured")
    logger.setLevel(logging.INFO)
    for capture in (False, True):
        manager = TaskManager(capture_logging=capture, shutdown_timeout=1.0)

        @manager.task
        async def chatty() -> None:
            logger.info("hello %s", "world")
            logger.debug("below the level")

        await manager.start()
        try:
            record = await wait_finished(manager, manager.submit(chatty))
        finally:
            await manager.stop()
        if capture:
            assert record.logs == [
                {
                    "at": record.logs[0]["at"],  # type: ignore[index]
                    "level": "info",
                    "message": "hello world",
                    "fields": {"logger": "tests.captured"},
                }
            ]
        else:
            assert record.logs is None
    logger.info("outside any task: the handler is gone and would ignore it anyway")


async def test_the_api_shows_logs_in_the_detail_not_the_listing(manager: TaskManager) -> None:
    app = FastAPI()
    TaskAdmin(app, manager)

    @manager.task
    async def noisy() -> None:
        task_log("<b>not html</b>", level="error", step=1)
        task_context().progress(0.5, "half")

    task_id = manager.submit(noisy)
    await wait_finished(manager, task_id)
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        detail = (await client.get(f"/tasks/{task_id}")).json()
        assert detail["logs"][0]["message"] == "<b>not html</b>"
        assert detail["log_count"] == 1 and detail["progress"]["fraction"] == 0.5
        listed = (await client.get("/tasks")).json()["items"][0]
        assert "logs" not in listed and listed["log_count"] == 1
        logs = (await client.get(f"/tasks/{task_id}/logs")).json()
        assert logs["logs"] == detail["logs"] and logs["logs_dropped"] == 0
        assert (await client.get(f"/tasks/{'0' * 32}/logs")).status_code == 404


async def test_logs_and_progress_are_stored_by_the_backend(tmp_path: Path) -> None:
    manager = TaskManager(snapshot_db=tmp_path / "tasks.db", shutdown_timeout=1.0)

    @manager.task
    async def noisy() -> None:
        task_log("stored", level="info", n=1)
        task_context().progress(0.25)

    await manager.start()
    try:
        task_id = manager.submit(noisy)
        await wait_finished(manager, task_id)
        await manager.flush()
        stored = await manager.backend.get(task_id)  # type: ignore[union-attr]
    finally:
        await manager.stop()
    assert stored is not None
    assert stored.logs and stored.logs[0]["message"] == "stored"
    assert stored.progress == {"fraction": 0.25, "message": ""}


async def test_two_capturing_managers_keep_a_line_once() -> None:
    logger = logging.getLogger("tests.captured.twice")
    logger.setLevel(logging.INFO)
    first = TaskManager(capture_logging=True, shutdown_timeout=1.0)
    second = TaskManager(capture_logging=True, shutdown_timeout=1.0)

    @first.task
    async def chatty() -> None:
        logger.info("once")

    await first.start()
    await second.start()
    try:
        record = await wait_finished(first, first.submit(chatty))
        assert [line["message"] for line in record.logs or []] == ["once"]
        await second.stop()  # the other one still captures
        record = await wait_finished(first, first.submit(chatty))
        assert [line["message"] for line in record.logs or []] == ["once"]
    finally:
        await second.stop()
        await first.stop()
    assert not any(type(h).__name__ == "TaskLogHandler" for h in logging.getLogger().handlers)
