"""Run the load tests against fresh local stacks: ``make loadtest`` (docs/loadtest.md).

    python -m loadtest.run --scenario all --backend sqlite --instances 3 --duration 60

For each scenario, one after another: ``deploy.runner up`` (a run folder of its own, a free
port), Locust headless against the load balancer (CSV and HTML reports), the backend check
(loadtest/backend_check.py), ``deploy.runner down``, and a summary: accepted, finished, lost,
history_lag percentiles, throughput. Everything lands in ``loadtest/reports/<scenario>-<backend>/``
(replaced on each run). Exits 1 when any scenario failed.

With ``--backend postgres`` each scenario gets a schema of its own on the runner's PostgreSQL
(the machine's when it answers, else a cluster of the runner's own: ``--postgres``,
``--postgres-url`` as for ``make up``), so that the backend check counts that run's tasks only;
a schema on the machine's server is dropped afterwards.

Locust runs as a subprocess: this process never imports Locust or gevent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy import postgres_cluster

from loadtest import backend_check
from loadtest.common.lines import lines

ROOT = Path(__file__).resolve().parents[1]
LOADTEST = ROOT / "loadtest"
SCENARIOS = ("visibility", "flush", "dashboard", "idempotency", "schedules", "chaos")
#: Environment of the stack's instances per scenario (besides the runner's own).
SCENARIO_ENV = {"schedules": {"TASKFLOW_DEMO_TICK": "1"}}  # the demo schedule every second
#: Seconds Locust may run beyond the load: the longest drain (chaos) and start/stop.
LOCUST_OVERHEAD = 120


def runner(
    run_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "deploy.runner", *args, "--run-dir", str(run_dir)]
    return subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def locust(scenario: str, lb_url: str, out: Path, args: argparse.Namespace) -> int:
    """Locust headless, its output shown and kept in locust.log; returns its exit code."""
    argv = [sys.executable, "-m", "locust", "-f", str(LOADTEST / f"{scenario}.py")]
    argv += ["--config", str(LOADTEST / "locust.conf"), "--headless", "--only-summary"]
    argv += ["--host", lb_url]
    argv += ["--load-time", f"{args.duration}s", "--run-dir", str(out / "run")]
    argv += ["--csv", str(out / "locust"), "--html", str(out / "report.html")]
    argv += [
        "--summary-file",
        str(out / "summary.json"),
        "--ledger-file",
        str(out / "ledger.jsonl"),
    ]
    if args.users:
        argv += ["--users", str(args.users), "--spawn-rate", str(args.users)]
    argv += args.locust_args
    with (out / "locust.log").open("w") as log:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if not args.quiet:
                sys.stdout.write(line)
        return proc.wait(timeout=args.duration + LOCUST_OVERHEAD)


def run_scenario(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    out = args.reports / f"{scenario}-{args.backend}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run_dir = out / "run"
    began = time.monotonic()
    backend, url = ["--backend", args.backend], ""
    if args.backend == "postgres":
        schema = f"loadtest_{scenario}_{uuid.uuid4().hex[:8]}"
        url = postgres_cluster.with_schema(args.postgres_url, schema)
        backend += ["--postgres", args.postgres, "--postgres-url", url]
    up = runner(
        run_dir,
        "up",
        *backend,
        "--instances",
        str(args.instances),
        "--lb-port",
        "0",
        "--app",
        args.app,
        env=SCENARIO_ENV.get(scenario),
    )
    if up.returncode != 0:
        runner(run_dir, "down")
        _forget_postgres(run_dir, url)
        problem = f"the stack did not come up: {up.stdout}{up.stderr}".strip()
        return {"scenario": scenario, "passed": False, "problems": [problem], "out": out}
    try:
        state = json.loads((run_dir / "state.json").read_text())
        code = locust(scenario, runner(run_dir, "url").stdout.strip(), out, args)
        summary = _summary(out, code)
        ledger = backend_check.read_ledger(out / "ledger.jsonl")
        figures, problems = backend_check.check(state["backend_url"], ledger, scenario, run_dir)
    finally:
        down = runner(run_dir, "down")
        _forget_postgres(run_dir, url)
    summary["backend"] = {**figures, "problems": problems}
    summary["problems"] += [f"backend: {p}" for p in problems]
    if down.returncode != 0:
        summary["problems"].append(f"the stack did not stop cleanly: {down.stderr.strip()}")
    summary["passed"] = not summary["problems"]
    summary["seconds"] = round(time.monotonic() - began, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["out"] = out
    return summary


def _forget_postgres(run_dir: Path, url: str) -> None:
    """After a run on PostgreSQL: drop its schema from the machine's server; of a cluster of
    the runner's own, keep only the log (the reports need no database)."""
    cluster = run_dir / postgres_cluster.FOLDER / "data"
    if cluster.exists():
        shutil.rmtree(cluster, ignore_errors=True)
    elif url and postgres_cluster.answers(url):
        postgres_cluster.drop_schema(url)


def _summary(out: Path, code: int) -> dict[str, Any]:
    path = out / "summary.json"
    if not path.exists():
        return {"passed": False, "problems": [f"Locust exited {code} without a summary"]}
    summary: dict[str, Any] = json.loads(path.read_text())
    if code != 0 and summary.get("passed"):
        summary["problems"].append(f"Locust exited {code}")
    return summary


def report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    verdict = "PASS" if summary["passed"] else "FAIL"
    print(
        f"\n== {summary.get('scenario')} on {args.backend}, {args.instances} instances, "
        f"{args.duration}s of load: {verdict}"
    )
    if "accepted" in summary:
        for line in lines(summary):
            print(f"   {line}")
    backend = summary.get("backend")
    if backend and "checked" in backend:
        print(
            f"   backend: {backend['stored_finished']} of {backend['checked']} accepted tasks "
            f"stored and finished {backend['statuses']}"
        )
        if "keys" in backend:
            print(f"   backend: {backend['keys']} keys, {backend['executions']} executions logged")
    for problem in summary["problems"]:
        print(f"   FAIL: {problem}")
    try:
        shown = summary["out"].relative_to(ROOT)
    except ValueError:
        shown = summary["out"]
    print(f"   reports: {shown}/ (report.html, locust_stats.csv, summary.json, locust.log)")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", default="all", help=f"all, or some of {', '.join(SCENARIOS)}")
    parser.add_argument("--backend", choices=("sqlite", "redis", "postgres"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=postgres_cluster.url_from_env(),
        help="--backend postgres: the server to use when it answers (as for make up)",
    )
    parser.add_argument("--postgres", choices=postgres_cluster.MODES, default="auto")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--duration", type=int, default=60, help="seconds of load per scenario")
    parser.add_argument("--users", type=int, default=0, help="Locust users (0: locust.conf's)")
    parser.add_argument("--reports", type=Path, default=LOADTEST / "reports")
    parser.add_argument("--app", default="deploy.app:app", help="what the instances serve")
    parser.add_argument("--quiet", action="store_true", help="only the summaries")
    parser.add_argument("locust_args", nargs="*", help="after --: passed on to Locust")
    args = parser.parse_args(argv)
    names = SCENARIOS if args.scenario == "all" else tuple(args.scenario.split(","))
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = names
    args.reports = args.reports.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    results = []
    for scenario in args.scenarios:
        results.append(run_scenario(scenario, args))
        report(results[-1], args)
    failed = [r.get("scenario") for r in results if not r["passed"]]
    passed = len(results) - len(failed)
    print(
        f"\nloadtest: {passed} of {len(results)} scenarios passed"
        + (f"; FAILED: {', '.join(map(str, failed))}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
