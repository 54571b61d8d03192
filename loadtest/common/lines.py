"""The summary as a few lines of text. Plain Python, no Locust: the driver imports it too."""

from __future__ import annotations

from typing import Any


def lines(summary: dict[str, Any]) -> list[str]:
    """The summary as a few human lines (printed by Locust and again by the driver)."""
    lag = summary["lag_ms"]
    rates = summary["throughput"]
    out = [
        f"accepted {summary['accepted']}  finished {summary['finished']}  "
        f"lost {summary['lost']}  interrupted {summary['interrupted']}",
        f"history_lag ms  p50 {lag['p50']}  p95 {lag['p95']}  p99 {lag['p99']}  max {lag['max']}",
        f"throughput  {rates['accepted_per_s']} tasks/s accepted over {summary['load_seconds']}s "
        f"of load, {rates['requests_per_s']} HTTP requests/s "
        f"({summary['http']['failures']} of {summary['http']['requests']} failed)",
    ]
    out += [f"{key}  {value}" for key, value in summary["extra"].items()]
    return out
