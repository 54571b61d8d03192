"""The run's figures, from Locust's statistics (aggregated over workers on a master).

Printed with :func:`common.lines.lines`, which the driver (loadtest/run.py) uses too.
"""

from __future__ import annotations

import time
from typing import Any

from locust.stats import StatsEntry, StatsError

from common import measure
from common.phases import timeline

#: Started when the module is imported (the process starts): elapsed time for request rates.
_PROCESS_START = time.monotonic()


def entry(environment: Any, request_type: str, name: str) -> StatsEntry | None:
    found: StatsEntry | None = environment.stats.entries.get((name, request_type))
    return found


def combined(environment: Any, request_type: str) -> StatsEntry:
    """One statistics entry over every name of ``request_type``."""
    total = StatsEntry(environment.stats, request_type, request_type)
    for (_, method), found in list(environment.stats.entries.items()):
        if method == request_type:
            total.extend(found)
    return total


def error_text(error: StatsError) -> str:
    return StatsError.parse_error(error.error)


def errors(environment: Any, *kinds: type[Exception]) -> list[StatsError]:
    """Errors whose exception is one of ``kinds`` (matched by name: workers send strings)."""
    names = tuple(f"{kind.__name__}(" for kind in kinds)
    return [e for e in environment.stats.errors.values() if error_text(e).startswith(names)]


def collect(environment: Any, scenario: str) -> dict[str, Any]:
    accepted = entry(environment, measure.TASK, "accepted")
    interrupted = entry(environment, measure.TASK, "interrupted")
    lag = combined(environment, measure.LAG)
    lost = sum(e.occurrences for e in errors(environment, measure.TaskLost))
    http = [e for (_, m), e in environment.stats.entries.items() if m not in measure.CUSTOM_TYPES]
    requests = sum(e.num_requests for e in http)
    load = timeline.load_seconds() or 1.0
    n_accepted = accepted.num_requests if accepted else 0
    return {
        "scenario": scenario,
        "host": environment.host,
        "load_seconds": round(load, 1),
        "accepted": n_accepted,
        "finished": lag.num_requests - lag.num_failures,
        "lost": lost,
        "interrupted": interrupted.num_requests if interrupted else 0,
        "lag_ms": {
            "p50": lag.get_response_time_percentile(0.50) if lag.num_requests else None,
            "p95": lag.get_response_time_percentile(0.95) if lag.num_requests else None,
            "p99": lag.get_response_time_percentile(0.99) if lag.num_requests else None,
            "max": round(lag.max_response_time) if lag.num_requests else None,
        },
        "throughput": {
            "accepted_per_s": round(n_accepted / load, 1),
            "requests_per_s": round(requests / max(1.0, time.monotonic() - _PROCESS_START), 1),
        },
        "http": {"requests": requests, "failures": sum(e.num_failures for e in http)},
        "extra": {},
    }
