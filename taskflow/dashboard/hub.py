"""StreamHub: what every open dashboard stream of one instance is sent, gathered once.

Three sources, fanned out to a bounded queue per connected client:

* this instance's lifecycle events, from the manager's :class:`~taskflow.events.EventBus` (a
  synchronous listener that only serialises and enqueues, so the task path never waits);
* other instances' records, which reach this instance only through the shared backend: polled
  every :data:`POLL_SECONDS` and de-duplicated by task id and status;
* metrics deltas every :data:`METRICS_SECONDS`: only the figures that changed.

A client that reads too slowly has its queue replaced by one ``resync`` message (it reloads its
view) instead of holding memory or slowing anyone down. The hub polls only while a client is
connected, and tells every client to go when the manager stops or the server begins to shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from taskflow.events import EventKind
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.query import TaskQuery
from taskflow.web import metrics
from taskflow.web.api import present
from taskflow.web.server import server_is_exiting

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

logger = logging.getLogger("taskflow.dashboard.stream")

#: Seconds between reads of the shared backend for records written by other instances.
POLL_SECONDS = 0.5
#: Each poll reads records whose sort time lies within this many seconds of now: covers the
#: flush latency of other instances (milliseconds) and modest clock differences between hosts.
LOOKBACK_SECONDS = 10.0
#: Newest records read per poll: more than any dashboard page shows (the page size is <= 100).
POLL_LIMIT = 200
#: Every this many polls, the running records are read too, whatever their age (progress and
#: log lines of other instances' long tasks): one more indexed read a second.
RUNNING_EVERY = 2
#: Seconds between metrics computations while a client is connected.
METRICS_SECONDS = 2.0
#: Messages buffered per client; past that its backlog collapses into one ``resync``.
CLIENT_QUEUE_SIZE = 1000
#: Task ids remembered (with the last status sent) to drop records already sent.
SEEN_IDS = 20_000


@dataclass(frozen=True, slots=True)
class Message:
    """One server-sent event: its type and its JSON data."""

    event: str
    data: str

    def encode(self) -> str:
        return f"event: {self.event}\ndata: {self.data}\n\n"


RESYNC = Message("resync", "{}")
BYE = Message("bye", '{"reason": "shutdown"}')


class Subscription:
    """One client's bounded queue."""

    def __init__(self, size: int = CLIENT_QUEUE_SIZE) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=size)
        self.resyncs = 0

    def offer(self, message: Message) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # Too slow to keep up: drop the backlog, keep one "reload your view" in its place.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)
            self.resyncs += 1


class StreamHub:
    """Gathers updates once per instance and hands them to every connected client."""

    def __init__(
        self,
        manager: TaskManager,
        *,
        poll_seconds: float = POLL_SECONDS,
        metrics_seconds: float = METRICS_SECONDS,
        queue_size: int = CLIENT_QUEUE_SIZE,
    ) -> None:
        self.manager = manager
        self.poll_seconds = poll_seconds
        self.metrics_seconds = metrics_seconds
        self.queue_size = queue_size
        self._clients: set[Subscription] = set()
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._metrics: dict[str, Any] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None
        self._failing = False
        self._polls = 0

    @property
    def closing(self) -> bool:
        """The manager is stopping or the server is shutting down: streams should end now."""
        return self.manager.stopping.is_set() or server_is_exiting()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def subscribe(self) -> Subscription:
        subscription = Subscription(self.queue_size)
        if not self._clients:
            self._start()
        self._clients.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._clients.discard(subscription)
        if not self._clients:
            self._stop()

    def _start(self) -> None:
        self._unsubscribe = self.manager.subscribe(self._on_event)
        self._pump = asyncio.get_running_loop().create_task(self._run(), name="taskflow-stream")

    def _stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        self._seen.clear()
        self._metrics = None

    def _broadcast(self, message: Message) -> None:
        for client in tuple(self._clients):
            client.offer(message)

    def _show(self, record: TaskRecord) -> dict[str, Any]:
        return present(self.manager, record)

    def _remember(self, record: TaskRecord) -> bool:
        """Note the status sent for this id; False when exactly that was already sent."""
        # Status, progress and log count: another instance's task that reports progress or
        # logs is sent again when its record changes, not only when its status does.
        progress = record.progress
        status = record.status.value
        if progress is not None or record.logs:
            fraction = progress.get("fraction") if progress else None
            status = f"{status}|{fraction}|{len(record.logs or ())}|{record.logs_dropped}"
        if self._seen.get(record.task_id) == status:
            return False
        self._seen[record.task_id] = status
        self._seen.move_to_end(record.task_id)
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return True

    def _task_message(self, kind: str, record: TaskRecord, source: str) -> Message:
        body = {"kind": kind, "source": source, "task": self._show(record)}
        return Message("task", json.dumps(body, default=str))

    # Runs synchronously inside the task path: serialise, enqueue, never wait.
    def _on_event(self, kind: EventKind, record: TaskRecord) -> None:
        self._remember(record)
        self._broadcast(self._task_message(kind.value, record, "local"))

    async def _run(self) -> None:
        started = utcnow()
        first = True
        next_metrics = 0.0
        while True:
            if self.closing:
                self._broadcast(BYE)
                return
            try:
                await self._poll(quiet_before=started if first else None)
                if time.monotonic() >= next_metrics:
                    next_metrics = time.monotonic() + self.metrics_seconds
                    await self._send_metrics()
            except Exception:  # a failing read must not end every stream; try again next tick
                if not self._failing:  # once per outage, not every tick
                    logger.exception("taskflow stream update failed; retrying")
                self._failing = True
            else:
                self._failing = False
            first = False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.manager.stopping.wait(), self.poll_seconds)

    async def _poll(self, *, quiet_before: datetime | None) -> None:
        """Send records the backend has that were not sent yet; the first poll after the hub
        starts only notes those older than ``quiet_before`` (clients load them themselves)."""
        if not self.manager.persistent:
            return  # memory only: no other instance can add records, the event bus has them all
        since = utcnow() - timedelta(seconds=LOOKBACK_SECONDS)
        page = await self.manager.apage(TaskQuery(limit=POLL_LIMIT, since=since))
        records = page.records
        self._polls += 1
        if self._polls % RUNNING_EVERY == 1:  # the first poll too, which only takes note
            # Running tasks older than the lookback still report progress and log lines from
            # their instances: their records are read again (sent only when they changed).
            running = await self.manager.apage(TaskQuery(TaskStatus.RUNNING, limit=POLL_LIMIT))
            seen = {record.task_id for record in records}
            records = records + [r for r in running.records if r.task_id not in seen]
            records.sort(key=lambda record: record.sort_time, reverse=True)
        # Oldest first, so clients see a record's statuses in the order they happened.
        for record in reversed(records):
            quiet = quiet_before is not None and record.sort_time < quiet_before
            if self._remember(record) and not quiet:
                kind = "finished" if record.status.finished else "updated"
                self._broadcast(self._task_message(kind, record, "history"))

    async def _send_metrics(self) -> None:
        current = await metrics.collect(self.manager)
        previous, self._metrics = self._metrics, current
        if previous is None:
            return  # clients fetch the full figures themselves when they connect
        delta = diff(previous, current)
        if delta:
            self._broadcast(Message("metrics", json.dumps(delta, default=str)))


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What changed from ``old`` to ``new``, one level deep: changed entries of nested dicts
    with their whole new value, removed entries as ``None``; changed scalars as they are now."""
    delta: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if value == before:
            continue
        if isinstance(value, dict) and isinstance(before, dict):
            delta[key] = {k: v for k, v in value.items() if before.get(k) != v}
            delta[key].update({k: None for k in before.keys() - value.keys()})
        else:
            delta[key] = value
    return delta
