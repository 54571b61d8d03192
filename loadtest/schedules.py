"""Scenario: a periodic schedule fires exactly once per tick across every instance, under load.

The reference app runs a demo schedule, ``demo_tick`` (deploy/app.py); the driver starts the
stack with ``TASKFLOW_DEMO_TICK=1``, a tick every second (elsewhere, set it on the instances).
Producers enqueue demo tasks as in the visibility scenario (each followed the same way), so the
instances are busy while their schedulers race for every tick. At the end the schedule is paused
through the API (``POST /tasks/schedules/demo_tick/pause``: every instance stops), its runs are
read through the load balancer (``GET /tasks?func_name=demo_tick``), and it is resumed.

    locust -f loadtest/schedules.py --config loadtest/locust.conf --host http://127.0.0.1:8080

Fails when: a tick ran twice, more than --max-missed-ticks (0) ticks between the first and the
last run are missing, a run did not succeed, the p99 of how late runs started (start_time minus
the tick) exceeds --tick-late-p99 ms (1000), too few ticks ran to tell, or any threshold of the
visibility scenario fails. The driver (loadtest/run.py) then counts the executions in the
instances' logs: exactly as many as stored runs.
"""

from __future__ import annotations

import itertools
import json
import logging
import urllib.request
from collections import Counter
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import gevent

from common import options, thresholds
from common.client import auth_headers
from common.phases import timeline
from common.users import Producer, follow_accepted

options.register("schedules")
follow_accepted()

logger = logging.getLogger("taskflow.loadtest")

#: The reference app's demo schedule.
SCHEDULE = "demo_tick"
#: Seconds to wait after the pause: a run claimed just before it finishes and is stored.
SETTLE = 2.0
#: Share of the load time's ticks that must have run (else the schedule was not under test).
MIN_TICK_SHARE = 0.5


class SchedulesProducer(Producer):
    pass


def _call(host: str, method: str, path: str) -> Any:
    request = urllib.request.Request(
        host.rstrip("/") + path,
        method=method,
        headers={"Accept": "application/json", **auth_headers()},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _runs(host: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    params: dict[str, Any] = {"func_name": SCHEDULE, "limit": 1000}
    while True:
        page = _call(host, "GET", f"/tasks?{urlencode(params)}")
        runs += [item for item in page["items"] if item.get("schedule") == SCHEDULE]
        if page["next_cursor"] is None:
            return runs
        params["cursor"] = page["next_cursor"]


def _epoch(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text).timestamp()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def judge(runs: list[dict[str, Any]], load_seconds: float, parsed: Any) -> tuple[str, list[str]]:
    """(what was seen, problems) for the runs of the schedule."""
    ticks = Counter(_epoch(run["scheduled_for"]) for run in runs)
    distinct = sorted(t for t in ticks if t is not None)
    if len(distinct) < 2:
        return f"{len(distinct)} ticks", [f"only {len(distinct)} ticks of {SCHEDULE} ran"]
    gaps = Counter(round(b - a, 3) for a, b in itertools.pairwise(distinct))
    interval = min(gaps)
    missing = sum(round(gap / interval) - 1 for gap in gaps.elements())
    twice = {t: n for t, n in ticks.items() if n > 1}
    late = [
        (start - tick) * 1000
        for run in runs
        if (start := _epoch(run["start_time"])) is not None
        and (tick := _epoch(run["scheduled_for"])) is not None
    ]
    failed = Counter(run["status"] for run in runs if run["status"] != "success")
    p50, p99 = (_percentile(late, q) if late else None for q in (0.5, 0.99))
    seen = (
        f"{len(distinct)} ticks every {interval:g}s, {len(twice)} twice, {missing} missing, "
        f"lateness p50 {p50:.0f} ms, p99 {p99:.0f} ms"
        if p99 is not None
        else f"{len(distinct)} ticks"
    )
    problems = []
    if twice:
        problems.append(
            f"{len(twice)} ticks of {SCHEDULE} ran more than once: {list(twice.items())[:3]}"
        )
    if missing > parsed.max_missed_ticks:
        problems.append(
            f"{missing} ticks of {SCHEDULE} between its first and last run never ran "
            f"(allowed {parsed.max_missed_ticks})"
        )
    if failed:
        problems.append(f"runs of {SCHEDULE} did not succeed: {dict(failed)}")
    if p99 is not None and p99 > parsed.tick_late_p99:
        problems.append(
            f"runs of {SCHEDULE} started {p99:.0f} ms late at p99, over the bound of "
            f"{parsed.tick_late_p99:.0f} ms"
        )
    wanted = MIN_TICK_SHARE * load_seconds / interval
    if len(distinct) < wanted:
        problems.append(
            f"only {len(distinct)} ticks of {SCHEDULE} ran during {load_seconds:.0f} s of load "
            f"(every {interval:g}s): is TASKFLOW_DEMO_TICK set on the instances?"
        )
    return seen, problems


def _check(environment: Any, figures: dict[str, Any]) -> list[str]:
    host = environment.host
    path = f"/tasks/schedules/{SCHEDULE}"
    try:
        _call(host, "POST", f"{path}/pause")
        gevent.sleep(SETTLE)
        runs = _runs(host)
    except Exception as exc:  # the verdict says what failed instead of a traceback
        return [f"could not read the runs of {SCHEDULE}: {exc!r}"]
    finally:
        try:
            _call(host, "POST", f"{path}/resume")  # a long-lived stack keeps its demo schedule
        except Exception as exc:
            logger.warning("could not resume %s: %r", SCHEDULE, exc)
    seen, problems = judge(runs, timeline.load_seconds() or 1.0, environment.parsed_options)
    figures["extra"]["ticks"] = seen
    return problems


thresholds.checks.append(_check)
