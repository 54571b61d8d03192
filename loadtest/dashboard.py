"""Scenario: dashboard streams stay live on every instance while load runs.

Producers and followers work as in the visibility scenario. Meanwhile --streams dashboard streams
(GET /tasks/stream through the load balancer, so spread over the instances) are held open for the
whole load phase. Each one reports, through Locust's request event:

* ``sse / event gap``: per event (heartbeat pings included), the time since the previous one.
  A gap over --stream-gap seconds while load runs fails; so does silence longer than
  --stream-silence heartbeats (the heartbeat is what the stream's hello event announces), which
  the stream's read timeout turns into an error;
* ``sse / stream``: per stream when the load ends, how long it was open. It fails when the stream
  broke, or never showed a finished task of an instance other than the one serving it (those
  reach an instance only through the shared backend).

A stream the server closes with ``bye`` (an instance shutting down) is reopened, as browsers do.
The summary also gives each stream's coverage: the share of the tasks this load generator had
accepted while it was open (and that finished 2 s before it closed) that it showed finished.

    locust -f loadtest/dashboard.py --config loadtest/locust.conf --host http://127.0.0.1:8080
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import requests
from locust import HttpUser, constant, events, task

from common import measure, options, thresholds
from common.client import auth_headers, served_by
from common.ledger import TERMINAL, ledger
from common.phases import timeline
from common.sse import events as sse_events
from common.users import Producer, follow_accepted

options.register("dashboard")
follow_accepted()

#: Seconds a stream waits for the server's hello before that counts as silence.
FIRST_EVENT_TIMEOUT = 30.0
#: A stream must be open this long (during load) to be held to the cross-instance check.
MIN_OPEN = 3.0
#: Tasks finished less than this before a stream closed do not count toward its coverage.
COVERAGE_MARGIN = 2.0

coverage: list[float] = []


class DashboardProducer(Producer):
    pass


class StreamWatcher(HttpUser):
    """Holds one dashboard stream open while the load lasts (reopening it after a ``bye``)."""

    wait_time = constant(0)
    fixed_count = 3  # --streams, set at init

    def on_start(self) -> None:
        self.client.headers.update(auth_headers())

    @task
    def watch(self) -> None:
        if not timeline.loading():
            gevent.sleep(0.5)
            return
        self.hold()

    def hold(self) -> None:
        options = self.environment.parsed_options
        opened = last = time.monotonic()
        seen: set[str] = set()
        by, cross, silence = None, 0, FIRST_EVENT_TIMEOUT
        # Silence is timed here rather than by the socket: the allowed silence is known only once
        # the hello event has announced the heartbeat.
        timer = gevent.Timeout(silence)
        timer.start()
        try:
            with self.client.get(
                "/tasks/stream", stream=True, name="/tasks/stream", catch_response=True
            ) as response:
                if response.status_code != 200:
                    response.failure(f"answered {response.status_code}")
                    return
                response.success()
                by = served_by(response)
                for kind, data in sse_events(response.iter_content(chunk_size=None)):
                    now = time.monotonic()
                    self.gap(now - last, options.stream_gap)
                    last = now
                    if kind == "hello":
                        silence = options.stream_silence * float(data["heartbeat"])
                    elif kind == "task" and data["task"]["status"] in TERMINAL:
                        seen.add(data["task"]["task_id"])
                        cross += data["task"]["instance_id"] != by
                    if kind == "bye" or not timeline.loading():
                        break
                    timer.cancel()
                    timer = gevent.Timeout(silence)
                    timer.start()
        except (gevent.Timeout, requests.RequestException) as exc:
            silent = time.monotonic() - last
            what = f"silent for {silent:.0f}s" if exc is timer else type(exc).__name__
            error = measure.StreamFailure(f"a stream broke: {what}")
            measure.fire(self.environment, measure.SSE, "stream", silent * 1000, error)
            return
        finally:
            timer.cancel()
        self.closed(opened, by, cross, seen)

    def gap(self, seconds: float, bound: float) -> None:
        error = None
        if seconds > bound and timeline.loading():
            error = measure.StreamFailure(f"no event for more than {bound:g}s while load ran")
        measure.fire(self.environment, measure.SSE, "event gap", seconds * 1000, error)

    def closed(self, opened: float, by: str | None, cross: int, seen: set[str]) -> None:
        closed = time.monotonic()
        error = None
        if closed - opened >= MIN_OPEN and cross == 0:
            error = measure.StreamFailure(
                "a stream showed no finished task of another instance (they reach it only "
                "through the shared backend)"
            )
        measure.fire(self.environment, measure.SSE, "stream", (closed - opened) * 1000, error)
        window = [
            e
            for e in ledger
            if opened <= e.accepted_mono <= closed - COVERAGE_MARGIN and e.verdict == "ok"
        ]
        if window:
            coverage.append(sum(e.task_id in seen for e in window) / len(window))


@events.init.add_listener
def _streams(environment: Any, **_kw: Any) -> None:
    if environment.parsed_options is not None:
        StreamWatcher.fixed_count = int(environment.parsed_options.streams)


def _coverage(environment: Any, figures: dict[str, Any]) -> list[str]:
    if coverage:
        shares = ", ".join(f"{c:.0%}" for c in sorted(coverage))
        figures["extra"]["stream coverage"] = f"{shares} (per stream)"
    sse = [e for (_, m), e in environment.stats.entries.items() if m == measure.SSE]
    streams = sum(e.num_requests for e in sse if e.name == "stream")
    if streams == 0:
        return ["no dashboard stream was held open and closed: nothing was verified"]
    return []


thresholds.checks.append(_coverage)
