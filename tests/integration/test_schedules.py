"""Scheduled tasks with real processes and real signals, on every shared backend: three
instances and a 1-second schedule for 30 seconds fire every tick exactly once (counted by the
task itself), also across a SIGKILL of one instance; a one-off scheduled on an instance that
is SIGKILLed at once runs on a survivor within a few seconds of its time."""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.history import wait_for

APP = "tests.integration.apps.scheduled:app"
#: How long the schedule runs under watch (the issue asks for 30 s).
WATCH = 30.0
#: A one-off on the killed instance must start at most this late (seconds): the survivors look
#: for due tasks every 0.5 s.
ONE_OFF_LATENESS = 3.0


def ticks(path: Path) -> dict[int, list[str]]:
    fired: dict[int, list[str]] = collections.defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            tick, instance = line.split(" ", 1)
            fired[int(tick)].append(instance)
    return fired


@pytest.mark.timeout(120)
def test_three_instances_fire_each_tick_once_through_kills(run_server, shared_backend, tmp_path):
    tick_log, done_log = tmp_path / "ticks.log", tmp_path / "done.log"
    env = {**shared_backend.env, "TEST_TICKS": str(tick_log), "TEST_COMPLETIONS": str(done_log)}
    a, b, c = (run_server(APP, env=env) for _ in range(3))
    wait_for(lambda: bool(ticks(tick_log)), 5, "the first tick")
    first = min(ticks(tick_log))
    # Mid-way between two ticks: a kill then loses nothing in flight (see docs/schedules.md).
    wait_for(lambda: time.time() >= first + 8.5, 15, "second 8.5")
    a.signal(signal.SIGKILL)

    # A one-off accepted by b, which is killed as soon as it answered: c must run it.
    wait_for(lambda: time.time() >= first + 12.5, 10, "second 12.5")
    accepted = httpx.post(f"{b.url}/once", params={"token": "orphan", "countdown": 3}, timeout=10)
    due = time.time() + 3
    assert accepted.status_code == 200, accepted.text
    b.signal(signal.SIGKILL)
    survivor = httpx.get(f"{c.url}/readyz").json()["instance_id"]

    def delivered() -> bool:
        return done_log.exists() and "orphan" in done_log.read_text()

    wait_for(delivered, 3 + ONE_OFF_LATENESS + 2, "the one-off to run on the survivor")
    (line,) = done_log.read_text().splitlines()
    token, instance, ran_at = line.split(" ")
    assert (token, instance) == ("orphan", survivor)
    assert due - 0.1 <= float(ran_at) <= due + ONE_OFF_LATENESS, (due, ran_at)
    record = httpx.get(f"{c.url}/tasks/{accepted.json()['task_id']}").json()
    assert record["instance_id"] == survivor and record["scheduled_for"] is not None

    wait_for(lambda: time.time() >= first + WATCH + 0.5, WATCH, "the end of the watch")
    fired = ticks(tick_log)
    last = first + int(WATCH)
    expected = range(first, last + 1)
    missing = [t for t in expected if t not in fired]
    doubled = {t: fired[t] for t in expected if len(fired[t]) > 1}
    assert not missing and not doubled, (missing, doubled)
    assert len({instance for t in expected for instance in fired[t]}) >= 2  # shared, not one
    assert {fired[t][0] for t in range(first + 14, last + 1)} == {survivor}  # after both kills
    # And in the backend: one run record per tick, each linked to its schedule.
    runs = collections.Counter(
        int(r.scheduled_for.timestamp())
        for r in shared_backend.stored().values()
        if r.schedule == "every_second" and r.scheduled_for is not None
    )
    assert all(runs[t] == 1 for t in expected), {t: runs[t] for t in expected if runs[t] != 1}
