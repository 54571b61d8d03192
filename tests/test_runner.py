from __future__ import annotations

import asyncio
import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from taskflow.events import EventBus, EventKind
from taskflow.models import TaskRecord, TaskStatus, new_task_id
from taskflow.runner import execute
from taskflow.tasks import RetryPolicy


@pytest.fixture
def threads():
    pool = ThreadPoolExecutor(4)
    yield pool
    pool.shutdown(wait=False)


def make_record() -> TaskRecord:
    return TaskRecord(task_id=new_task_id(), func_name="f")


def test_retry_policy_waits_grow_by_backoff():
    policy = RetryPolicy(retries=3, delay=0.5, backoff=3.0)
    assert [policy.wait_before(n) for n in range(3)] == [0.5, 1.5, 4.5]


@pytest.mark.parametrize("kwargs", [{"retries": -1}, {"delay": -0.1}, {"backoff": 0.5}])
def test_retry_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError, match="retries and delay"):
        RetryPolicy(**kwargs)


async def test_every_attempt_is_counted_and_spaced_by_backoff(threads):
    calls: list[float] = []

    def flaky() -> None:
        calls.append(time.monotonic())
        raise ConnectionError("smtp down")

    record = make_record()
    policy = RetryPolicy(retries=3, delay=0.05, backoff=2.0)
    await execute(record, flaky, (), {}, policy=policy, bus=EventBus(), threads=threads)

    assert record.status is TaskStatus.FAILED
    assert record.attempts == 4 == len(calls)
    assert record.error == "ConnectionError: smtp down"
    assert "smtp down" in (record.traceback or "")
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    for gap, expected in zip(gaps, [0.05, 0.10, 0.20], strict=True):
        assert expected <= gap < expected + 0.15, gaps


async def test_success_after_retries_clears_error(threads):
    attempts = 0

    async def sometimes() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RuntimeError("not yet")

    record = make_record()
    await execute(
        record, sometimes, (), {}, policy=RetryPolicy(retries=5), bus=EventBus(), threads=threads
    )
    assert (record.status, record.attempts, record.error) == (TaskStatus.SUCCESS, 3, None)
    assert record.duration is not None and record.duration >= 0


async def test_events_follow_the_transitions(threads):
    bus = EventBus()
    seen: list[tuple[EventKind, TaskStatus]] = []
    bus.subscribe(lambda kind, record: seen.append((kind, record.status)))

    def boom() -> None:
        raise ValueError("x")

    await execute(
        make_record(), boom, (), {}, policy=RetryPolicy(retries=1), bus=bus, threads=threads
    )
    assert seen == [
        (EventKind.STARTED, TaskStatus.RUNNING),
        (EventKind.RETRYING, TaskStatus.RUNNING),
        (EventKind.FINISHED, TaskStatus.FAILED),
    ]


async def test_a_failing_listener_does_not_hurt_the_task(threads):
    bus = EventBus()

    def bad_listener(kind: EventKind, record: TaskRecord) -> None:
        raise RuntimeError("listener bug")

    bus.subscribe(bad_listener)
    record = make_record()
    await execute(record, lambda: None, (), {}, policy=RetryPolicy(), bus=bus, threads=threads)
    assert record.status is TaskStatus.SUCCESS


async def test_a_task_calling_sys_exit_fails_without_escaping(threads):
    def exits() -> None:
        raise SystemExit(3)

    record = make_record()
    await execute(record, exits, (), {}, policy=RetryPolicy(), bus=EventBus(), threads=threads)
    assert (record.status, record.error) == (TaskStatus.FAILED, "SystemExit: 3")


async def test_cancellation_marks_interrupted(threads):
    record = make_record()
    task = asyncio.create_task(
        execute(
            record, asyncio.sleep, (10,), {}, policy=RetryPolicy(), bus=EventBus(), threads=threads
        )
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert record.status is TaskStatus.INTERRUPTED
    assert record.end_time is not None
    assert "shut down" in (record.error or "")
