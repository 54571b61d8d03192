"""Followers: read each accepted task through the load balancer until another instance shows it
finished, and report how long after its end that was (``history_lag``).

"Another instance" is the point: the instance that ran a task has it in memory, every other
instance only through the shared backend. So a read counts only when the ``X-Taskflow-Instance``
header names an instance other than the record's ``instance_id``; reads that land on the owner
are ignored. With the round robin of nginx most reads land elsewhere anyway. One exception: a
task whose instance was lost is marked interrupted by the survivor that claimed it, which then
holds it in memory while the record still names the lost owner; so an interrupted task counts
only once a second other instance has shown it (see :func:`proves_stored`).

The lag is measured from the record's end_time (the owner's wall clock) to the moment of the read
(this generator's wall clock): an upper bound of the flush latency that includes the wait between
two reads, and that assumes clocks in sync (one host, or NTP). Reads start FIRST_READ seconds
after the task was accepted and the wait doubles up to --poll-interval, so fast tasks are read
often (a tight bound) and slow or stuck ones cheaply. Each wait is jittered: followers in lockstep
would otherwise alias with nginx's round robin and keep reading from the same instance.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from typing import Any

import gevent
import gevent.pool
from locust.contrib.fasthttp import FastHttpSession

from common import measure
from common.client import auth_headers, body, end_time, served_by
from common.ledger import TERMINAL, Accepted
from common.phases import timeline

logger = logging.getLogger("taskflow.loadtest")

#: Examples of lost tasks written to the log (the ledger file has all of them).
LOG_EXAMPLES = 5
#: Seconds before the first read of a task; the wait then doubles up to --poll-interval.
FIRST_READ = 0.02


def session(environment: Any, concurrency: int = 100) -> FastHttpSession:
    """An HTTP client of this generator's own (not a User's), counted in the statistics."""
    return FastHttpSession(
        environment.host,
        environment.events.request,
        user=None,
        concurrency=concurrency,
        network_timeout=10.0,
        connection_timeout=5.0,
        headers=auth_headers(),
    )


class Follower:
    """Follows every task given to :meth:`follow`, each in its own greenlet."""

    def __init__(self, environment: Any, tolerated: Iterable[str] = ()) -> None:
        options = environment.parsed_options
        self.environment = environment
        self.timeout = float(options.task_timeout)
        self.poll = float(options.poll_interval)
        self.tolerated = frozenset(tolerated)  # statuses accepted for any task (chaos: interrupted)
        self.client = session(environment)
        self.pool = gevent.pool.Pool(int(options.max_followed))
        self.followed: dict[str, Accepted] = {}
        self.lost = 0
        self.header_missing = False
        timeline.track(self.busy, self.finish)

    def follow(self, entry: Accepted) -> None:
        """Start following; blocks while max_followed tasks are followed (back pressure)."""
        self.followed[entry.task_id] = entry
        self.pool.spawn(self._follow, entry)

    def busy(self) -> bool:
        return len(self.pool) > 0

    def finish(self) -> None:
        self.pool.kill(timeout=5)
        for entry in list(self.followed.values()):
            self._lost(entry, "unknown (the run ended first)")

    def _follow(self, entry: Accepted) -> None:
        deadline = min(entry.accepted_mono + self.timeout, timeline.deadline)
        last = "never read"
        wait = min(FIRST_READ, self.poll)
        while True:
            gevent.sleep(wait * random.uniform(0.5, 1.5))
            wait = min(wait * 2, self.poll)
            item, by = self._read(entry.task_id)
            if item is not None:
                last = item["status"]
                if proves_stored(entry, item, by):
                    self._judge(entry, item, by or "")
                    return
            if time.monotonic() > deadline:
                self._lost(entry, last)
                return

    def _read(self, task_id: str) -> tuple[dict[str, Any] | None, str | None]:
        url = f"/tasks/{task_id}"
        with self.client.get(url, name="/tasks/[id]", catch_response=True) as response:
            if response.status_code == 404:  # not stored yet: a valid answer, keep reading
                response.success()
                return None, served_by(response)
            item = body(response)
            if item is None:
                return None, None
            by = served_by(response)
            if by is None and not self.header_missing:
                self.header_missing = True
                response.failure(measure.MissingHeader("no X-Taskflow-Instance header"))
            return item, by

    def _judge(self, entry: Accepted, item: dict[str, Any], by: str) -> None:
        self.followed.pop(entry.task_id, None)
        judge(self.environment, entry, item, by, self.tolerated)

    def _lost(self, entry: Accepted, last: str) -> None:
        if self.followed.pop(entry.task_id, None) is None:
            return
        self.lost += 1
        report_lost(self.environment, entry, last, self.timeout, log=self.lost <= LOG_EXAMPLES)


def proves_stored(entry: Accepted, item: dict[str, Any], by: str | None) -> bool:
    """Whether this read of a finished task came from an instance that can only know it from the
    shared backend: not the one that ran it (``instance_id``) and, for an interrupted task, not
    the first other instance that showed it (possibly the survivor that claimed it, which holds
    it in memory)."""
    if item["status"] not in TERMINAL or by is None or by == item["instance_id"]:
        return False
    if item["status"] != "interrupted":
        return True
    if entry.witness is None:
        entry.witness = by
    return by != entry.witness


def judge(
    environment: Any,
    entry: Accepted,
    item: dict[str, Any],
    by: str,
    tolerated: frozenset[str] = frozenset(),
    bound: float | None = None,
) -> None:
    """Record that ``by`` (not the owner) showed ``item`` finished now, and report the lag:
    a failure when its status is unexpected or the lag exceeds ``bound`` seconds."""
    now = time.time()
    entry.status, entry.seen_at, entry.seen_by = item["status"], now, by
    entry.end_time = end_time(item)
    lag = now - (entry.end_time or now)
    if entry.status == "interrupted":
        measure.fire(environment, measure.TASK, "interrupted")
    error: Exception | None = None
    if entry.status not in entry.expected and entry.status not in tolerated:
        error = measure.UnexpectedStatus(f"{entry.func} finished {entry.status}")
    elif bound is not None and lag > bound:
        error = measure.PersistedLate(
            f"{entry.func}: shown by another instance more than {bound:g}s after it finished"
        )
    entry.verdict = "ok" if error is None else "unexpected"
    measure.fire(environment, measure.LAG, entry.func, lag * 1000, error)


def report_lost(
    environment: Any, entry: Accepted, last: str, timeout: float, *, log: bool = True
) -> None:
    entry.verdict = "lost"
    if log:
        logger.error(
            "lost: task %s (%s, accepted by %s) not seen finished by another instance "
            "within %.0fs; last status read: %s",
            entry.task_id,
            entry.func,
            entry.via,
            timeout,
            last,
        )
    error = measure.TaskLost(
        f"{entry.func}: not seen finished by another instance within {timeout:.0f}s"
    )
    waited = (time.monotonic() - entry.accepted_mono) * 1000
    measure.fire(environment, measure.LAG, entry.func, waited, error)
