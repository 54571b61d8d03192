"""The run's timeline on each load generator: load, then drain, then the run ends by itself.

    |<-- load_time: producers enqueue -->|<-- drain: followers finish verifying -->| quit
                                                 (at most drain_time; ends when all is verified)

Verification happens on the node that accepted the tasks (the local runner, or each worker), so
no task ids travel between Locust nodes. In headless runs the test ends as soon as every node has
verified everything: a local runner quits at once; a worker tells the master, which quits when
all its workers are done and their last statistics have arrived. ``--run-time`` stays a hard cap
(by default load + drain + a margin); a run cut short by it reports what it could not verify as
lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gevent
from locust import events
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner

from common.options import seconds

logger = logging.getLogger("taskflow.loadtest")

#: Custom message a worker sends the master once it has verified everything.
DRAINED = "taskflow_drained"
#: Seconds the run-time cap adds beyond load + drain (spawning, last statistics reports).
CAP_MARGIN = 10


class Timeline:
    """One node's phases, and the verification work that has to finish before the run ends."""

    def __init__(self) -> None:
        self.load = 60.0
        self.drain = 15.0
        self.started: float | None = None  # monotonic, at test_start on this node
        self.finished = False
        self._busy: list[Callable[[], bool]] = []
        self._finish: list[Callable[[], None]] = []
        self._producing = 0

    def begin(self, options: Any) -> None:
        """A new test starts (the web UI can start several): phases from ``options``, and no
        work tracked yet."""
        self.load = seconds(options.load_time)
        self.drain = seconds(options.drain_time)
        self.started = time.monotonic()
        self.finished = False
        self._busy.clear()
        self._finish.clear()
        self._producing = 0

    def track(self, busy: Callable[[], bool], finish: Callable[[], None]) -> None:
        """``busy()`` is true while work remains; ``finish()`` ends it (reports what is left)."""
        self._busy.append(busy)
        self._finish.append(finish)

    @contextmanager
    def producing(self) -> Iterator[None]:
        """Around one producer's requests: the run does not end while they are in flight, or
        a task the instances accepted just before the end would be stored but not in the
        ledger (the backend check counts both)."""
        self._producing += 1
        try:
            yield
        finally:
            self._producing -= 1

    def loading(self) -> bool:
        return self.started is not None and time.monotonic() < self.started + self.load

    @property
    def deadline(self) -> float:
        """Monotonic time by which verification must be over."""
        return (self.started or time.monotonic()) + self.load + self.drain

    def load_seconds(self) -> float:
        """How long the load phase lasted (so far)."""
        if self.started is None:
            return 0.0
        return min(self.load, time.monotonic() - self.started)

    def run_finishers(self) -> None:
        if self.finished:
            return
        self.finished = True
        for finish in self._finish:
            finish()

    def watch(self, environment: Any) -> None:
        """After the load: wait until nothing is busy or the deadline passed, then finish."""
        gevent.sleep(max(0.0, self.deadline - self.drain - time.monotonic()))
        while (self._producing or any(busy() for busy in self._busy)) and (
            time.monotonic() < self.deadline
        ):
            gevent.sleep(0.2)
        self.run_finishers()
        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            runner.send_message(DRAINED, {"node": runner.client_id})
        elif environment.parsed_options.headless:
            logger.info("every accepted task is verified: ending the run")
            runner.quit()
        else:
            logger.info("every accepted task is verified: stop the test in the web UI")


timeline = Timeline()


@events.init.add_listener
def _configure(environment: Any, **_kw: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    if isinstance(environment.runner, WorkerRunner):
        return  # the master ends the run
    planned = seconds(options.load_time) + seconds(options.drain_time)
    if not options.run_time:
        options.run_time = int(planned + CAP_MARGIN)
    elif options.run_time < planned:
        logger.warning(
            "--run-time %ss is shorter than load + drain (%ss): what is not verified by then "
            "counts as lost",
            options.run_time,
            int(planned),
        )
    if isinstance(environment.runner, MasterRunner):
        _wait_for_workers(environment)


def _wait_for_workers(environment: Any) -> None:
    done: set[str] = set()

    def on_drained(msg: Any, **_kw: Any) -> None:
        if "all" in done:
            return
        done.add(msg.data["node"])
        workers = {client.id for client in environment.runner.clients.values()}
        if workers <= done and environment.parsed_options.headless:
            done.add("all")
            # Each worker reports statistics every WORKER_REPORT_INTERVAL seconds: wait for the
            # report that carries its last measurements before ending the run.
            logger.info("every worker verified its tasks: ending the run")
            gevent.spawn_later(WORKER_REPORT_INTERVAL + 1, environment.runner.quit)

    environment.runner.register_message(DRAINED, on_drained)


# Registered before any scenario's own test_start listener (they import this module first), so
# the timeline is reset before they track new work. The options are read here, not at init: a
# worker gets the master's only with its first spawn message.
@events.test_start.add_listener
def _start(environment: Any, **_kw: Any) -> None:
    timeline.begin(environment.parsed_options)
    if not isinstance(environment.runner, MasterRunner):
        gevent.spawn(timeline.watch, environment)


@events.test_stop.add_listener
def _stop(environment: Any, **_kw: Any) -> None:
    if not isinstance(environment.runner, MasterRunner) and not timeline.finished:
        logger.warning("the run ended before every accepted task was verified")
        timeline.run_finishers()
