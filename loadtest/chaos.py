"""Scenario: nothing accepted is lost when instances stop, gracefully or not.

Producers and followers work as in the visibility scenario, while a chaos controller (on the
master, or the local runner) drives the local runner (deploy/runner.py, --run-dir):

* at RESTART_AT of the load: ``restart app-1``: a rolling replacement, as ``make restart`` does
  it (a successor starts on a new port and is ready before nginx switches to it; then the old
  process gets SIGTERM, finishes its requests, drains its running tasks, flushes, deregisters);
* at KILL_AT of the load, once app-2 has just started a task (whatever the restart is doing
  then): ``kill app-2``: SIGKILL to its master and workers at once, as a crash would. Its
  unfinished tasks stay live in the backend until the survivors' cluster view expires it
  (heartbeat 1 s, expiry 4 s: TaskManager's defaults in the reference app) and claims them,
  marking them ``interrupted``. The controller then lists live tasks through the load balancer
  until none of app-2's is left (``chaos / reclaim app-2``: the time from the kill), and the run
  waits for that: the driver's backend check then finds nothing left pending or running.

Producers pace themselves more slowly than elsewhere: this scenario is about failures, not
throughput.

So every accepted task must still end up finished where every instance can see it: success
(or its endpoint's status) or interrupted. Hence the longer defaults: --drain-time 45s and
--task-timeout 40 (a slow task that the kill interrupts is claimed up to its length plus the
expiry and a heartbeat after it was accepted, and must then be shown by two instances other than
the one that claimed it, see common/follow.py); --max-error-ratio 0.02, since the
requests in flight on the killed instance fail (nginx never resends a POST without an
Idempotency-Key); and --lag-p99 12000: with the killed instance gone and another one being
replaced, nginx may have one instance left to send reads to for a while, and what it runs can be
seen from another instance only once the replacement is in. Each action is reported as
``chaos / restart app-1``, ``chaos / kill app-2`` and ``chaos / reclaim app-2``; one that fails,
or does not happen, fails the run.

Only for the local runner (a Compose or Kubernetes stack has no run folder to drive):

    make up BACKEND=redis INSTANCES=3
    locust -f loadtest/chaos.py --config loadtest/locust.conf --host $(make -s url) --run-dir run
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from locust import between, events, task
from locust.runners import WorkerRunner

from common import measure, options, summary, thresholds
from common.client import body
from common.follow import session
from common.phases import timeline
from common.users import Producer, follow_accepted

options.register(
    "chaos", drain_time="45s", task_timeout=40.0, max_error_ratio=0.02, lag_p99=12_000.0
)
follow_accepted(tolerated=("interrupted",))

ROOT = Path(__file__).resolve().parents[1]
#: When in the load phase (as a share of it) each action happens.
RESTART_AT, KILL_AT = 0.25, 0.5
ACTIONS = (("restart", "app-1", RESTART_AT), ("kill", "app-2", KILL_AT))
VICTIM = "app-2"
#: Seconds after the kill by which the survivors must have claimed the victim's live tasks:
#: the instance expiry (4 s) plus two heartbeat rounds (1 s each) plus a margin for a busy machine.
RECLAIM_TIMEOUT = 15.0
#: How long the slow tasks run (seconds): well beyond what the kill itself takes on a busy machine
#: (it runs the runner as a process), so the task seen starting is still running when it lands.
SLOW_SECONDS = 8
#: Every chaos measurement a complete run reports.
REPORTED = [f"{command} {name}" for command, name, _ in ACTIONS] + [f"reclaim {VICTIM}"]


class ChaosProducer(Producer):
    wait_time = between(0.15, 0.25)

    @task(2)
    def slow(self) -> None:
        # Running for seconds: the killed instance surely has some in flight, for its survivors
        # to claim; the restarted one lets them finish while it drains.
        self.produce("/demo/slow", "slow_task", ["success"], seconds=SLOW_SECONDS)


def act(environment: Any, command: str, name: str) -> None:
    argv = [sys.executable, "-m", "deploy.runner", command, name]
    argv += ["--run-dir", str(Path(environment.parsed_options.run_dir).resolve())]
    began = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    error = None
    if done.returncode != 0:
        error = measure.ChaosFailure(f"{command} {name} failed: {done.stderr.strip()[-300:]}")
    ms = (time.monotonic() - began) * 1000
    measure.fire(environment, measure.CHAOS, f"{command} {name}", ms, error)


def live_tasks_of(client: Any, instance: str) -> list[str] | None:
    """Ids of live tasks owned by ``instance``'s workers (None: the listing failed)."""
    found = []
    for status in ("pending", "running"):
        url = f"/tasks?status={status}&limit=1000"
        with client.get(url, name="/tasks?status=...", catch_response=True) as response:
            page = body(response)
        if page is None:
            return None
        found += [i["task_id"] for i in page["items"] if i["instance_id"].startswith(instance)]
    return found


def reclaimed(environment: Any, killed: float) -> None:
    """Wait until no live task of the victim is left (the survivors claimed them all)."""
    client = session(environment, concurrency=2)
    left: list[str] | None = None
    while time.monotonic() < killed + RECLAIM_TIMEOUT:
        left = live_tasks_of(client, f"{VICTIM}-")
        if Victim.at_kill is None and left is not None:
            Victim.at_kill = len(left)
        if left == []:
            ms = (time.monotonic() - killed) * 1000
            measure.fire(environment, measure.CHAOS, f"reclaim {VICTIM}", ms)
            return
        gevent.sleep(1.0)
    error = measure.ChaosFailure(
        f"live tasks of the killed {VICTIM} were not all claimed within {RECLAIM_TIMEOUT:.0f}s "
        f"({len(left or [])} left)"
    )
    measure.fire(environment, measure.CHAOS, f"reclaim {VICTIM}", RECLAIM_TIMEOUT * 1000, error)


class Victim:
    at_kill: int | None = None  # live tasks of the victim just after the kill
    killed_at: float | None = None  # seconds into the load phase


def victim_busy(environment: Any) -> None:
    """Wait, for as long as the load lasts, until the victim has a task that was not live at
    the previous look: one that started moments ago, so it is still unfinished when the kill
    lands (a crash of an idle instance proves nothing about reclaiming)."""
    client = session(environment, concurrency=2)
    before: set[str] | None = None
    while timeline.loading():
        live = live_tasks_of(client, f"{VICTIM}-")
        if live is not None:
            if before is not None and set(live) - before:
                return
            before = set(live)
        gevent.sleep(0.25)


def at(when: float, action: Callable[..., None], *args: Any) -> None:
    gevent.sleep(max(0.0, when - time.monotonic()))
    action(*args)


def controller(environment: Any) -> None:
    """Each action at its own time: a restart that takes long (a drain, a slow start on a busy
    machine) must not push the kill past the load, when the victim has nothing left to lose."""
    started = time.monotonic()
    restart = gevent.spawn(
        at, started + RESTART_AT * timeline.load, act, environment, "restart", "app-1"
    )
    try:
        at(started + KILL_AT * timeline.load, victim_busy, environment)
        Victim.killed_at = time.monotonic() - started
        act(environment, "kill", VICTIM)
        reclaimed(environment, killed=time.monotonic())
        restart.join()
    finally:
        restart.kill()


@events.test_start.add_listener
def _start(environment: Any, **_kw: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        greenlet = gevent.spawn(controller, environment)
        timeline.track(lambda: not greenlet.dead, greenlet.kill)


def _acted(environment: Any, figures: dict[str, Any]) -> list[str]:
    found = {n: summary.entry(environment, measure.CHAOS, n) for n in REPORTED}
    done = [n for n, entry in found.items() if entry is not None]
    reclaim = found[f"reclaim {VICTIM}"]
    note = ""
    if reclaim is not None and not reclaim.num_failures:
        note = (
            f" ({Victim.at_kill} live tasks of {VICTIM} at the kill, claimed "
            f"{reclaim.max_response_time / 1000:.1f}s after it)"
        )
    figures["extra"]["chaos"] = (", ".join(done) or "none") + note
    if len(done) < len(REPORTED):
        return ["the chaos actions did not all happen: the run proves nothing about failures"]
    if Victim.at_kill == 0:
        return [
            f"{VICTIM} had no unfinished task when it was killed ({Victim.killed_at:.1f}s into "
            f"{timeline.load:.0f}s of load): nothing to reclaim"
        ]
    return []


thresholds.checks.append(_acted)
