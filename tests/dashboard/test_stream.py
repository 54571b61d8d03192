"""The live stream: incremental events, heartbeats, other instances, slow clients, shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.dashboard.hub import RESYNC, Message, Subscription, diff
from taskflow.web.server import server_is_exiting
from tests.helpers import wait_finished
from tests.sse import EventStream, Frame


def task_frames(task_id: str):
    def match(frame: Frame) -> bool:
        return frame.event == "task" and json.loads(frame.data)["task"]["task_id"] == task_id

    return match


class Live:
    """An app with TaskAdmin; ``client`` sends requests, ``stream()`` listens to the stream."""

    def __init__(self, manager: TaskManager, heartbeat: float = 15.0) -> None:
        self.manager = manager
        self.app = FastAPI()
        self.admin = TaskAdmin(self.app, manager, stream_heartbeat=heartbeat)

        @manager.task()
        async def greet(name: str) -> None:
            await asyncio.sleep(0.01)

        @self.app.post("/greet")
        def enqueue(background_tasks: BackgroundTasks, name: str = "ada") -> dict[str, str]:
            return {"task_id": background_tasks.add_task(greet, name)}

        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://test")

    def stream(self) -> EventStream:
        return EventStream(self.app, "/tasks/stream")


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    setup = Live(TaskManager(shutdown_timeout=0.5), heartbeat=15.0)
    async with setup.app.router.lifespan_context(setup.app), setup.client:
        yield setup


async def test_stream_headers_and_hello(live):
    async with live.stream() as stream:
        assert stream.status == 200
        assert stream.response_headers["content-type"].startswith("text/event-stream")
        assert stream.response_headers["x-accel-buffering"] == "no"
        assert stream.response_headers["cache-control"] == "no-store"
        hello = await stream.next()
        assert hello is not None and hello.event == "hello"
        assert hello.fields["retry"] == "2000"
        assert json.loads(hello.data)["instance_id"] == live.manager.instance_id


async def test_a_task_arrives_as_incremental_events_not_as_a_list(live):
    async with live.stream() as stream:
        await stream.until(lambda f: f.event == "hello")
        task_id = (await live.client.post("/greet")).json()["task_id"]
        kinds = []
        while "finished" not in kinds:
            frame = await stream.until(task_frames(task_id))
            body = json.loads(frame.data)
            assert set(body) == {"kind", "source", "task"}  # one task, never the whole list
            assert body["source"] == "local"
            kinds.append(body["kind"])
        assert kinds == ["created", "started", "finished"]
        assert body["task"]["status"] == "success"
        assert "args" not in body["task"]  # display_func_args is off


async def test_heartbeat_comments_keep_the_stream_alive():
    setup = Live(TaskManager(), heartbeat=0.1)
    async with (
        setup.app.router.lifespan_context(setup.app),
        setup.client,
        setup.stream() as stream,
    ):
        await stream.until(lambda f: f.event == "hello")
        started = time.monotonic()
        beats = [await stream.until(lambda f: f.comment == "ping") for _ in range(3)]
        assert len(beats) == 3
        assert time.monotonic() - started < 2.0


async def test_the_stream_ends_promptly_when_the_manager_stops():
    setup = Live(TaskManager(shutdown_timeout=0.5))
    async with setup.client:
        async with setup.app.router.lifespan_context(setup.app):
            stream = await EventStream(setup.app, "/tasks/stream").__aenter__()
            await stream.until(lambda f: f.event == "hello")
            began = time.monotonic()
        # The lifespan has exited: manager.stop() ran while the stream was open.
        assert time.monotonic() - began < 2.0
        bye = await stream.until(lambda f: f.event == "bye", timeout=2.0)
        assert json.loads(bye.data) == {"reason": "shutdown"}
        assert await stream.next(timeout=2.0) is None  # the response is complete
        await stream.close()
        assert setup.admin.stream_hub.clients == 0


class FakeUvicornServer:
    """What uvicorn installs: its bound ``handle_exit`` as the SIGTERM handler."""

    should_exit = False

    def handle_exit(self, sig: int, frame: object) -> None:
        self.should_exit = True


async def test_the_stream_ends_when_the_server_starts_shutting_down(live):
    server = FakeUvicornServer()
    previous = signal.signal(signal.SIGTERM, server.handle_exit)
    try:
        async with live.stream() as stream:
            await stream.until(lambda f: f.event == "hello")
            assert not server_is_exiting()
            server.should_exit = True  # uvicorn got SIGTERM; it now waits for connections to close
            assert server_is_exiting()
            await stream.until(lambda f: f.event == "bye", timeout=2.0)
            assert await stream.next(timeout=2.0) is None
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not server_is_exiting()


async def test_a_disconnected_client_is_let_go(live):
    listeners = len(live.manager._bus._listeners)
    async with live.stream() as stream:
        await stream.until(lambda f: f.event == "hello")
        assert live.admin.stream_hub.clients == 1
        assert len(live.manager._bus._listeners) == listeners + 1
    assert live.admin.stream_hub.clients == 0
    assert len(live.manager._bus._listeners) == listeners  # no client, no listener, no polling
    assert live.admin.stream_hub._pump is None


async def test_metrics_deltas_carry_only_what_changed(live):
    live.admin.stream_hub.metrics_seconds = 0.1
    async with live.stream() as stream:
        await stream.until(lambda f: f.event == "hello")
        await asyncio.sleep(0.3)  # the first figures are the baseline; clients fetch them
        task_id = (await live.client.post("/greet")).json()["task_id"]
        await wait_finished(live.manager, task_id)
        frame = await stream.until(
            lambda f: f.event == "metrics" and "success" in json.loads(f.data).get("by_status", {})
        )
        delta = json.loads(frame.data)
        assert delta["by_status"]["success"] == 1
        assert "instance_id" not in delta  # unchanged figures are not repeated
        assert delta["by_func"]["greet"]["count"] == 1


def test_a_slow_client_gets_one_resync_instead_of_an_unbounded_backlog():
    subscription = Subscription(size=3)
    for i in range(10):
        subscription.offer(Message("task", str(i)))  # never blocks, never raises
    drained = []
    while not subscription.queue.empty():
        drained.append(subscription.queue.get_nowait())
    assert RESYNC in drained
    assert len(drained) <= 3
    assert subscription.resyncs >= 1


def test_diff_keeps_changed_entries_and_marks_removed_ones():
    old = {"a": 1, "by": {"x": 1, "y": 2, "gone": 3}, "same": {"k": 1}}
    new = {"a": 2, "by": {"x": 1, "y": 5, "new": 1}, "same": {"k": 1}}
    assert diff(old, new) == {"a": 2, "by": {"y": 5, "new": 1, "gone": None}}


async def test_records_of_another_instance_arrive_through_the_shared_backend(tmp_path: Path):
    db = tmp_path / "history.db"
    here = Live(TaskManager(snapshot_db=db, instance_id="here"))
    there = TaskManager(snapshot_db=db, instance_id="there")

    @there.task()
    async def remote_job(n: int) -> None:
        await asyncio.sleep(0.01)

    async with here.app.router.lifespan_context(here.app), here.client:
        await there.start()
        try:
            async with here.stream() as stream:
                await stream.until(lambda f: f.event == "hello")
                await asyncio.sleep(0.6)  # the hub's first poll only learns what exists
                task_id = there.submit(remote_job, 1)
                await wait_finished(there, task_id)
                started = time.monotonic()
                frame = await stream.until(task_frames(task_id), timeout=3.0)
                assert time.monotonic() - started < 1.5
                body = json.loads(frame.data)
                assert body["source"] == "history"
                assert body["kind"] == "finished"
                assert body["task"]["instance_id"] == "there"
                # Polled again and again, but sent once (de-duplicated by id and status).
                with pytest.raises(AssertionError, match="no event"):
                    await stream.until(task_frames(task_id), timeout=1.2)
        finally:
            await there.stop()


async def test_progress_of_another_instances_long_task_arrives(tmp_path: Path):
    """A running task created long ago (beyond the poll's lookback) reports progress on another
    instance: the stream sends its record again each time it changes, and only then."""
    from datetime import timedelta

    from taskflow.backends.base import InstanceInfo
    from taskflow.models import TaskRecord, TaskStatus, utcnow

    db = tmp_path / "history.db"
    here = Live(TaskManager(snapshot_db=db, instance_id="here", instance_expiry=60))
    async with here.app.router.lifespan_context(here.app), here.client:
        backend = here.manager.backend
        assert backend is not None
        long_ago = utcnow() - timedelta(minutes=10)
        # Instance "there" runs it (registered, so nobody takes its task over).
        await backend.heartbeat(InstanceInfo("there", "host-b", 1, long_ago, utcnow()))  # type: ignore[attr-defined]
        record = TaskRecord(
            "a" * 32, "export", TaskStatus.RUNNING, created_at=long_ago, instance_id="there"
        )
        record.progress = {"fraction": 0.1, "message": "10%"}
        await backend.save([record])
        async with here.stream() as stream:
            await stream.until(lambda f: f.event == "hello")
            await asyncio.sleep(1.2)  # the hub's first polls only learn what exists
            record.progress = {"fraction": 0.5, "message": "half"}
            await backend.save([record])
            frame = await stream.until(task_frames(record.task_id), timeout=3.0)
            assert json.loads(frame.data)["task"]["progress"]["message"] == "half"
            with pytest.raises(AssertionError, match="no event"):
                await stream.until(task_frames(record.task_id), timeout=1.5)
