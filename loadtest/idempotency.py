"""Scenario: one idempotency key sent to several instances at once yields one task, run once.

Each round sends --duplicates requests with one new key at the same moment through the load
balancer (POST /demo/once?key=..., which enqueues with ``idempotency_key=key``), so they land on
several instances. Every answer must carry the same task id, and that task is followed until
another instance shows it finished (``history_lag``, as in the visibility scenario). Now and then
a key whose task has finished is sent again: it must answer the same id and not run it again
(the record's end_time must not move).

Reported as ``idempotency / round`` and ``idempotency / late duplicate``; a failure is a
``DuplicateTask``. The run also fails when too few rounds reached more than one instance (nothing
would have been tested). The driver (loadtest/run.py) then counts the executions of each key in
the instances' logs: exactly one each.

    locust -f loadtest/idempotency.py --config loadtest/locust.conf --host http://127.0.0.1:8080
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import gevent
import gevent.pool
from locust import FastHttpUser, between, task

from common import measure, options, summary, thresholds
from common.client import auth_headers, body, end_time, served_by
from common.ledger import Accepted, ledger
from common.phases import timeline
from common.users import Node, follow_accepted

options.register("idempotency")
follow_accepted()

#: Share of rounds that must have reached at least two instances.
MIN_SPREAD = 0.5
#: Name of the rounds answered by one instance only.
ONE_INSTANCE = "round on one instance"
#: Seconds to wait after a late duplicate before checking that the task did not run again.
RERUN_WAIT = 0.5


class OnceUser(FastHttpUser):
    wait_time = between(0.05, 0.15)
    concurrency = 20  # the duplicates of a round go out at once, on separate connections
    default_headers = auth_headers()

    @task(4)
    def round(self) -> None:
        if not timeline.loading():
            gevent.sleep(0.5)
            return
        key = f"lt-{uuid.uuid4().hex}"
        n = int(self.environment.parsed_options.duplicates)
        began = time.monotonic()
        with timeline.producing():
            answers = [a for a in gevent.pool.Group().map(lambda _: self.send(key), range(n)) if a]
            if not answers:
                return
            ids = {task_id for task_id, _ in answers}
            # Rounds whose answers all came from one instance are counted apart: they test nothing.
            name = "round" if len({instance for _, instance in answers}) > 1 else ONE_INSTANCE
            error = None
            if len(ids) > 1:
                error = measure.DuplicateTask(f"{n} requests with one key answered {len(ids)} ids")
            ms = (time.monotonic() - began) * 1000
            measure.fire(self.environment, measure.IDEMPOTENCY, name, ms, error)
            entry = Accepted(min(ids), "once_task", ("success",), answers[0][1], key)
            if ledger.add(entry):
                measure.fire(self.environment, measure.TASK, "accepted", ms)
                if Node.follower is not None:
                    Node.follower.follow(entry)

    @task(1)
    def late_duplicate(self) -> None:
        done = [e for e in list(ledger.entries.values())[-200:] if e.verdict == "ok"]
        if not timeline.loading() or not done:
            gevent.sleep(0.2)
            return
        entry = random.choice(done)
        answer = self.send(entry.key or "")
        if answer is None:
            return
        gevent.sleep(RERUN_WAIT)
        error = None
        if answer[0] != entry.task_id:
            error = measure.DuplicateTask("a key sent again after its task finished got a new id")
        elif self.end_time(entry.task_id) not in (None, entry.end_time):
            error = measure.DuplicateTask("a key sent again after its task finished ran it again")
        measure.fire(self.environment, measure.IDEMPOTENCY, "late duplicate", 0, error)

    def send(self, key: str) -> tuple[str, str] | None:
        with self.client.post(
            f"/demo/once?key={key}", name="/demo/once", catch_response=True
        ) as response:
            answer = body(response)
            if answer is None:
                return None
            return str(answer["task_id"]), str(answer.get("instance_id") or served_by(response))

    def end_time(self, task_id: str) -> float | None:
        with self.client.get(f"/tasks/{task_id}", name="/tasks/[id]", catch_response=True) as r:
            item = body(r)
            return None if item is None else end_time(item)


def _spread(environment: Any, figures: dict[str, Any]) -> list[str]:
    several, alone = (
        summary.entry(environment, measure.IDEMPOTENCY, n) for n in ("round", ONE_INSTANCE)
    )
    rounds = (several.num_requests if several else 0) + (alone.num_requests if alone else 0)
    if rounds == 0:
        return ["no round of duplicates was sent: nothing was verified"]
    share = (several.num_requests if several else 0) / rounds
    figures["extra"]["rounds"] = f"{rounds}, {share:.0%} answered by several instances"
    if share < MIN_SPREAD:
        return [
            f"only {share:.0%} of the rounds reached more than one instance (need "
            f"{MIN_SPREAD:.0%}): the duplicates were not really sent to several instances"
        ]
    return []


thresholds.checks.append(_spread)
