"""The scenarios' own command-line options.

Each one can also be set in locust.conf (without the dashes) or as a ``LOCUST_*`` environment
variable, which is how Compose and Kubernetes pass them. A scenario calls :func:`register` once,
with the defaults that differ for it (chaos needs a drain long enough for the heartbeat expiry).
"""

from __future__ import annotations

from typing import Any

from locust import events
from locust.util.timespan import parse_timespan

#: Defaults shared by every scenario; a scenario overrides some through :func:`register`.
DEFAULTS: dict[str, Any] = {
    # How long producers enqueue, then how long the run may go on to verify what was accepted.
    "load_time": "60s",
    "drain_time": "15s",
    # A task not seen finished by another instance this long after it was accepted is lost.
    "task_timeout": 10.0,
    # Thresholds (the quitting hook turns them into the exit code).
    "lag_p99": 1000.0,  # ms, history_lag p99
    "persist_bound": 3.0,  # s, end_time -> seen in another instance's listing (flush)
    "max_error_ratio": 0.0,  # failed HTTP requests / all HTTP requests
    # Verification.
    "poll_interval": 0.1,  # s between two reads of one followed task
    "max_followed": 2000,  # tasks followed at once per load generator (back pressure beyond)
    # Dashboard streams.
    "streams": 3,
    "stream_silence": 2.0,  # heartbeats a stream may stay silent
    "stream_gap": 5.0,  # s, longest gap between events while load runs
    # Idempotency.
    "duplicates": 6,  # requests sent at once with one key
    # Schedules: bound of the lateness p99 of the demo schedule's runs (ms: start_time minus
    # the tick), and the ticks that may go missing (none).
    "tick_late_p99": 1000.0,
    "max_missed_ticks": 0,
    # Chaos: the local runner's run folder (deploy/runner.py).
    "run_dir": "run",
    # Files for the driver (loadtest/run.py); empty: not written.
    "summary_file": "",
    "ledger_file": "",
}

_HELP = {
    "load_time": "how long producers enqueue tasks (20, 20s, 3m, ...)",
    "drain_time": "upper bound of the verification phase after the load (it ends when done)",
    "task_timeout": "seconds an accepted task may take to be seen finished by another instance",
    "lag_p99": "bound of the history_lag p99, in ms",
    "persist_bound": "seconds a finished task may take to show in another instance's listing",
    "max_error_ratio": "failed HTTP requests allowed, as a fraction of all HTTP requests",
    "poll_interval": "seconds between two reads of a followed task",
    "max_followed": "tasks followed at once per load generator",
    "streams": "dashboard streams held open (dashboard scenario)",
    "stream_silence": "heartbeats a stream may stay silent before it fails",
    "stream_gap": "seconds between two events a stream may take while load runs",
    "duplicates": "requests sent at once with one idempotency key",
    "tick_late_p99": "bound of the p99 of how late the demo schedule's runs start, in ms",
    "max_missed_ticks": "ticks of the demo schedule allowed to go missing",
    "run_dir": "run folder of the local runner, to restart and kill instances (chaos)",
    "summary_file": "write the run's summary here as JSON",
    "ledger_file": "write every accepted task (id, function, what was seen) here as JSON lines",
}


#: Name of the scenario whose locustfile registered the options (shown in the summary).
scenario = ""


def register(name: str, **overrides: Any) -> None:
    """Add the options to Locust's parser, with this scenario's defaults."""
    global scenario
    scenario = name
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown options: {sorted(unknown)}")
    defaults = {**DEFAULTS, **overrides}

    @events.init_command_line_parser.add_listener
    def _add(parser: Any, **_kw: Any) -> None:
        group = parser.add_argument_group("taskflow load test")
        for name, default in defaults.items():
            flag = "--" + name.replace("_", "-")
            kind = str if isinstance(default, str) else type(default)
            group.add_argument(
                flag,
                type=kind,
                default=default,
                env_var="LOCUST_" + name.upper(),
                help=f"{_HELP[name]} (default {default})",
            )


def seconds(value: str | float) -> float:
    """A Locust time span ("90", "90s", "1m30s") or a number, in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    return float(parse_timespan(value))
