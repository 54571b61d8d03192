"""Pass or fail: explicit thresholds, checked in Locust's ``quitting`` hook, which sets the exit
code (on the master in distributed runs, where the statistics of every worker are aggregated).

Any lost task, any task in an unexpected status, any failure of our own measurements (late
persistence, silent streams, duplicate tasks, chaos actions), a history_lag p99 over its bound,
failed HTTP requests beyond ``--max-error-ratio``, or an exception in the test code fails the run.
Each failure is logged with a sentence that says what went wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locust import events
from locust.runners import WorkerRunner

from common import measure, options, summary
from common.ledger import ledger
from common.lines import lines

logger = logging.getLogger("taskflow.loadtest")

Check = Callable[[Any, dict[str, Any]], list[str]]
#: Scenario-specific checks: (environment, summary) -> problems; may add to summary["extra"].
checks: list[Check] = []


def problems(environment: Any, figures: dict[str, Any]) -> list[str]:
    parsed = environment.parsed_options
    found = []
    if figures["accepted"] == 0:
        found.append(
            "no task was accepted: is --host the load balancer in front of the reference app?"
        )
    judged = summary.combined(environment, measure.LAG).num_requests
    if judged != figures["accepted"]:
        found.append(
            f"{figures['accepted']} tasks were accepted but {judged} verified: every accepted "
            "task must be judged exactly once (finished, unexpected or lost)"
        )
    if figures["lost"]:
        found.append(
            f"{figures['lost']} of {figures['accepted']} accepted tasks were lost: never seen "
            "finished by an instance other than the one that ran them within --task-timeout "
            f"({parsed.task_timeout:g}s; not stored, or stuck behind an instance that did not "
            "answer)"
        )
    own = [e for e in environment.stats.errors.values() if e.method in measure.CUSTOM_TYPES]
    for error in own:
        if not summary.error_text(error).startswith("TaskLost("):
            found.append(f"{error.occurrences}x {error.to_name()}")
    p99 = figures["lag_ms"]["p99"]
    if p99 is not None and p99 > parsed.lag_p99:
        found.append(f"history_lag p99 is {p99} ms, over the bound of {parsed.lag_p99:.0f} ms")
    http = figures["http"]
    ratio = http["failures"] / http["requests"] if http["requests"] else 0.0
    if ratio > parsed.max_error_ratio:
        found.append(
            f"{http['failures']} of {http['requests']} HTTP requests failed ({ratio:.3%}, "
            f"allowed {parsed.max_error_ratio:.2%}): "
            + "; ".join(
                e.to_name()
                for e in environment.stats.errors.values()
                if e.method not in measure.CUSTOM_TYPES
            )[:2000]
        )
    exceptions = getattr(environment.runner, "exceptions", {})
    if exceptions:
        first = next(iter(exceptions.values()))
        found.append(f"{len(exceptions)} exceptions in the test code, first: {first['msg']}")
    for check in checks:
        found += check(environment, figures)
    return found


@events.quitting.add_listener
def _verdict(environment: Any, **_kw: Any) -> None:
    parsed = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner):
        if parsed.ledger_file:
            ledger.dump(f"{parsed.ledger_file}.{environment.runner.client_id}")
        return
    if parsed.ledger_file:
        ledger.dump(parsed.ledger_file)
    figures = summary.collect(environment, options.scenario)
    found = problems(environment, figures)
    figures["passed"] = not found
    figures["problems"] = found
    for line in lines(figures):
        logger.info("summary: %s", line)
    for problem in found:
        logger.error("FAIL: %s", problem)
    if not found:
        logger.info("PASS: every threshold held")
    if parsed.summary_file:
        Path(parsed.summary_file).write_text(json.dumps(figures, indent=2) + "\n")
    environment.process_exit_code = 1 if found else 0
