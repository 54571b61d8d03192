"""Scenario: flushing loses nothing, and writes each finished task promptly.

Producers enqueue in batches through the load balancer (POST /demo/fast?count=10, plus retried
and failing tasks), about 60 tasks/s per user: the group commit is what is under load. (Without
the pauses, a 2-core machine accepts some 3,000 tasks/s, but then the watcher below, which lists
every task, can no longer keep up: measure capacity with more users and more load generators.)
Tasks are not read one by one; a watcher on each load generator lists recent history the way the
dashboard does (GET /tasks?since=...), and notes when each accepted task first appears finished in
a page served by an instance other than the one that ran it, that is: out of the shared backend.

* persisted promptly: that moment minus the task's end_time is its ``history_lag``; over
  --persist-bound seconds (default 3, far below the 30 s safety-net flush) is a failure;
* nothing lost: every accepted task must appear so. After the load, what the listings have not
  shown yet is read by id; not finished by the end of the drain is lost;
* counts match: every accepted task is judged exactly once (the quitting hook checks it), and the
  driver (loadtest/run.py) reads every id back from the backend itself and compares the stored
  counts by function with the accepted ones.

    locust -f loadtest/flush.py --config loadtest/locust.conf --host http://127.0.0.1:8080
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import gevent
import gevent.pool
from locust import FastHttpUser, between, events, task
from locust.runners import MasterRunner

from common import options, thresholds  # noqa: F401 - registers the quitting hook
from common.client import auth_headers, body, enqueue, served_by
from common.follow import judge, proves_stored, report_lost, session
from common.ledger import TERMINAL, Accepted
from common.phases import timeline

# The listing is read every WATCH_INTERVAL seconds (jittered), and a page from the instance that ran
# a task does not count: the lag measured here is coarser than the visibility scenario's.
options.register("flush", lag_p99=2000.0)

#: Seconds between two listings.
WATCH_INTERVAL = 0.5
#: Most pages one listing follows (1000 records each).
MAX_PAGES = 20
#: Reads by id of a task the listings never showed, after the load.
SWEEP_READS = 8
#: Listings repeated at once when awaited tasks were shown only by their own instance.
OWNER_RETRIES = 2


class Watcher:
    """Lists recent history through the load balancer and judges the tasks it finds."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.bound = float(environment.parsed_options.persist_bound)
        self.timeout = float(environment.parsed_options.task_timeout)
        self.client = session(environment, concurrency=20)
        self.waiting: dict[str, Accepted] = {}
        self.greenlet = gevent.spawn(self._run)
        timeline.track(lambda: bool(self.waiting), self.finish)

    def _run(self) -> None:
        while not timeline.finished:
            began = time.time()
            # Far enough back to include every task that finished within the bound: one that is
            # persisted later than that is still found by the sweep, and judged late.
            since = began - WATCH_INTERVAL - self.bound
            # Tasks shown only by their own instance prove nothing yet: ask again at once, which
            # nginx's round robin sends elsewhere. Jittered waits keep the watcher from aliasing
            # with the round robin (always landing on the same instance).
            for _ in range(OWNER_RETRIES + 1):
                if not self._list(since):
                    break
            gevent.sleep(
                max(0.0, WATCH_INTERVAL * random.uniform(0.5, 1.5) - (time.time() - began))
            )

    def _list(self, since: float) -> int:
        """One listing, every page; returns how many awaited tasks only their owner showed."""
        owned = 0
        params = {"since": datetime.fromtimestamp(since, timezone.utc).isoformat(), "limit": 1000}
        for _ in range(MAX_PAGES):
            with self.client.get(
                f"/tasks?{urlencode(params)}", name="/tasks?since=...", catch_response=True
            ) as response:
                page = body(response)
                if page is None:
                    return owned
                by = served_by(response)
            owned += sum(not self._seen(item, by) for item in page["items"])
            if not page.get("next_cursor"):
                return owned
            params["cursor"] = page["next_cursor"]
        return owned

    def _seen(self, item: dict[str, Any], by: str | None) -> bool:
        """Judge an awaited task shown finished by another instance; False when only an instance
        that may hold it in memory showed it finished (that proves nothing yet)."""
        entry = self.waiting.get(item["task_id"])
        if entry is None or item["status"] not in TERMINAL:
            return True
        if not proves_stored(entry, item, by):
            return False
        del self.waiting[entry.task_id]
        judge(self.environment, entry, item, by or "", bound=self.bound)
        return True

    def finish(self) -> None:
        self.greenlet.kill()
        pool = gevent.pool.Pool(50)
        for entry in list(self.waiting.values()):
            pool.spawn(self._sweep, entry)
        pool.join(timeout=30)
        for n, entry in enumerate(list(self.waiting.values())):
            report_lost(self.environment, entry, "not finished", self.timeout, log=n < 5)
        self.waiting.clear()

    def _sweep(self, entry: Accepted) -> None:
        for _ in range(SWEEP_READS):
            with self.client.get(
                f"/tasks/{entry.task_id}", name="/tasks/[id]", catch_response=True
            ) as response:
                if response.status_code == 404:
                    response.success()
                item = body(response) if response.status_code != 404 else None
                by = served_by(response)
            if item is not None:
                self._seen(item, by)
            if entry.task_id not in self.waiting:
                return
            gevent.sleep(0.1)


class Node:
    watcher: Watcher | None = None


@events.test_start.add_listener
def _start(environment: Any, **_kw: Any) -> None:
    if not isinstance(environment.runner, MasterRunner):
        Node.watcher = Watcher(environment)


class FlushProducer(FastHttpUser):
    wait_time = between(0.05, 0.15)
    default_headers = auth_headers()

    @task(6)
    def batch(self) -> None:
        self.produce("/demo/fast", "fast_task", ["success"], count=10)

    @task(2)
    def flaky(self) -> None:
        self.produce("/demo/flaky", "flaky_task", ["success", "failed"], failures=1)

    @task(2)
    def fail(self) -> None:
        self.produce("/demo/fail", "failing_task", ["failed"], reason="load test")

    def produce(self, path: str, func: str, expected: list[str], **params: Any) -> None:
        if not timeline.loading():
            gevent.sleep(0.5)
            return
        with timeline.producing():
            entries = enqueue(self, path, func=func, expected=expected, params=params)
        for entry in entries:
            if Node.watcher is not None:
                Node.watcher.waiting[entry.task_id] = entry
