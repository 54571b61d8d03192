"""The producer every scenario but flush uses, and the follower that verifies what it enqueues."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task
from locust.runners import MasterRunner

from common.client import auth_headers, enqueue
from common.follow import Follower
from common.phases import timeline


class Node:
    """This load generator's follower (created at test start; none on a master)."""

    follower: Follower | None = None


def follow_accepted(tolerated: Iterable[str] = ()) -> None:
    """Give every load generator a follower at test start (``tolerated``: see Follower)."""

    @events.test_start.add_listener
    def _start(environment: Any, **_kw: Any) -> None:
        if not isinstance(environment.runner, MasterRunner):
            Node.follower = Follower(environment, tolerated)


class Producer(FastHttpUser):
    """Enqueues demo tasks through the load balancer while the load phase lasts; every accepted
    task is followed until another instance shows it finished."""

    abstract = True
    wait_time = between(0.05, 0.15)
    default_headers = auth_headers()

    @task(8)
    def fast(self) -> None:
        self.produce("/demo/fast", "fast_task", ["success"])

    @task(1)
    def flaky(self) -> None:
        # Fails once, then succeeds on retry; concurrent flaky tasks of one process share the
        # failure counter, so under load one may exhaust its retries: failed is legitimate too.
        self.produce("/demo/flaky", "flaky_task", ["success", "failed"], failures=1)

    @task(1)
    def fail(self) -> None:
        self.produce("/demo/fail", "failing_task", ["failed"], reason="load test")

    def produce(self, path: str, func: str, expected: list[str], **params: Any) -> None:
        if not timeline.loading():
            gevent.sleep(0.5)  # the drain: nothing new, the followers finish
            return
        with timeline.producing():
            entries = enqueue(self, path, func=func, expected=expected, params=params)
        for entry in entries:
            if Node.follower is not None:
                Node.follower.follow(entry)
