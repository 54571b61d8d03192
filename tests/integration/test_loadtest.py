"""The load tests, run as `make loadtest` runs them (python -m loadtest.run), but short.

Each scenario passes against a fresh local stack (3 instances behind nginx) and leaves nothing
running. To spare CI's time, not every scenario on every backend (all of them pass on each in
`make loadtest` runs: docs/loadtest.md): the two that prove what a backend must (every task seen
finished by another instance; a flush that loses nothing) and the kill (chaos) on each backend
they fit (PostgreSQL: one on the tests' server, one on the runner's own cluster), and the others
on one backend each; the same run against an app whose
backend acknowledges finished tasks without storing them (tests/integration/apps/lossy.py)
fails, and says why. Locust runs in a subprocess of the driver, so gevent never patches this
process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy import nginx_config

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("visibility", "flush", "dashboard", "idempotency", "schedules", "chaos")
#: Seconds of load: enough for thousands of tasks; chaos needs room for its restart and kill.
DURATION = {"chaos": 10}
#: Chaos runs at a low rate: two cores also carry the restart, the kill and Locust itself.
USERS = {"chaos": 5}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.loadtest,
    pytest.mark.skipif(nginx_config.find_nginx() is None, reason="nginx not installed"),
]


def loadtest(reports: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run the driver; returns its result and the summary of its (one) scenario."""
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.run", "--reports", str(reports), "--quiet", *args],
        cwd=ROOT,
        env={**os.environ, "WEB_CONCURRENCY": "2"},
        capture_output=True,
        text=True,
        timeout=200,
    )
    found = list(reports.glob("*/summary.json"))
    assert len(found) == 1, result.stdout + result.stderr
    return result, json.loads(found[0].read_text())


#: (scenario, how the runner gets its PostgreSQL) run on PostgreSQL: every scenario passes there
#: too (`make loadtest BACKEND=postgres`, docs/loadtest.md), 11-24 s each on two cores.
POSTGRES_RUNS = [("visibility", "machine"), ("flush", "own")]


#: Scenarios CI runs on one backend only (the backend's part of them is proved elsewhere: the
#: schedules' exactly-once on every backend by tests/integration/test_schedules.py, idempotency
#: keys across instances by test_cluster.py, the dashboard's stream by tests/browser).
ONE_BACKEND = {"dashboard": "redis", "idempotency": "sqlite", "schedules": "sqlite"}


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("scenario", "backend"),
    [
        *((s, b) for b in ("sqlite", "redis") for s in SCENARIOS if ONE_BACKEND.get(s, b) == b),
        *((s, f"postgres-{how}") for s, how in POSTGRES_RUNS),
    ],
)
def test_scenario_passes(request, tmp_path, scenario, backend):
    if backend == "redis" and shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing (.ci/run installs it)")
    backend, _, how = backend.partition("-")
    args = ["--scenario", scenario, "--backend", backend, "--instances", "3"]
    if how == "machine":  # the tests' server (a schema of the run's own, dropped afterwards)
        args += ["--postgres", how, "--postgres-url", request.getfixturevalue("postgres_url")]
    elif how:
        args += ["--postgres", how]
    args += ["--duration", str(DURATION.get(scenario, 6))]
    if scenario in USERS:
        args += ["--users", str(USERS[scenario])]
    result, summary = loadtest(tmp_path, *args)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f"== {scenario} on {backend}, 3 instances" in out and ": PASS" in out
    assert summary["passed"] is True and summary["problems"] == []
    assert summary["accepted"] > 100 and summary["lost"] == 0
    assert summary["finished"] == summary["accepted"]
    assert summary["backend"]["checked"] == summary["accepted"]
    assert summary["backend"]["stored_finished"] == summary["accepted"]
    assert summary["lag_ms"]["p99"] is not None
    if scenario == "schedules":  # every tick once, each run executed once
        assert " 0 twice, 0 missing" in summary["extra"]["ticks"], summary["extra"]
        assert summary["backend"]["tick_runs"] == summary["backend"]["tick_executions"] > 5
    folder = tmp_path / f"{scenario}-{backend}"
    for report in ("report.html", "locust_stats.csv", "locust_failures.csv", "locust.log"):
        assert (folder / report).stat().st_size > 0, report
    assert not (folder / "run" / "state.json").exists(), "the stack was not torn down"
    if how == "own":
        # In the run folder, or (when the postgres user cannot enter it) a temporary one.
        logs = [folder / "run" / "postgres" / "postgres.log", folder / "run" / "postgres.log"]
        assert any(log.exists() for log in logs), "the cluster's log is kept"
        assert not (folder / "run" / "postgres" / "data").exists(), "the reports need no database"
    elif how == "machine":
        assert not schemas_like(request.getfixturevalue("postgres_url"), f"loadtest_{scenario}_")


def schemas_like(url: str, prefix: str) -> list[str]:
    """The schemas whose name starts with ``prefix`` on ``url``'s server."""
    import asyncio

    import asyncpg

    async def names() -> list[str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", prefix
            )
        finally:
            await conn.close()
        return [row["nspname"] for row in rows]

    return asyncio.run(names())


@pytest.mark.timeout(120)
def test_a_backend_that_drops_finished_tasks_fails_the_run(tmp_path):
    app = "tests.integration.apps.lossy:app"
    result, summary = loadtest(
        tmp_path, "--scenario", "visibility", "--duration", "4", "--app", app
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "visibility on sqlite, 3 instances, 4s of load: FAIL" in out
    # Locust's own verdict (over HTTP), then the driver's (the backend read directly).
    assert "accepted tasks were lost: never seen finished by an instance other than" in out
    assert "backend: " in out and "accepted tasks are stored but not finished" in out
    assert summary["passed"] is False and summary["lost"] > 0
    assert not (tmp_path / "visibility-sqlite" / "run" / "state.json").exists()
