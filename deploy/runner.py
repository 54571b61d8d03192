"""The local runner: the Compose topology as plain processes, for people and tests without Docker.

    python -m deploy.runner up --backend sqlite|redis|postgres --instances 3   # make up BACKEND=
    python -m deploy.runner status [--json]                           # make status
    python -m deploy.runner down                                      # make down
    python -m deploy.runner url                                       # make url
    python -m deploy.runner kill app-2    # SIGKILL one instance's processes, as a crash would
    python -m deploy.runner restart       # make restart: a rolling upgrade, one instance at a time
    python -m deploy.runner restart app-1 # just that one

``up`` starts, on loopback ports: a redis-server of its own (``--backend redis``; never one that
already runs), or with ``--backend postgres`` a PostgreSQL cluster of its own unless the
machine's answers at ``--postgres-url`` (``POSTGRES_URL``; in a schema of the runner's
own; ``--postgres own`` always starts one: deploy/postgres_cluster.py), N instances of the
reference app (each a gunicorn master with its UvicornWorkers; with ``--backend sqlite`` all
share one WAL SQLite file) and nginx with the kit's config in front of them, then prints the
load balancer's URL. ``down`` stops them all and verifies that nothing is left. ``restart``
replaces the instances one at a time with the code as it is now, without failing a request: each
one's successor starts on a new port and is ready before nginx switches to it, and only then
does the old one stop (drain, flush). Everything lives in one run folder (default ./run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy import nginx_config, postgres_cluster
from deploy.processes import (
    Proc,
    free_port,
    http_status,
    is_alive,
    kill_group,
    port_is_free,
    redis_answers,
)
from deploy.stack import (
    BACKENDS,
    DEFAULT_APP,
    READY_PATH,
    ROOT,
    STATE_FILE,
    StartError,
    State,
    preflight,
    replace_instance,
    start,
    stop_all,
)
from taskflow.backends.urls import mask_url

#: Where the load balancer listens unless told otherwise (the port of nginx/conf.d/listen.conf).
DEFAULT_LB_PORT = 8080
DEFAULT_INSTANCES = 3
#: The run folder: RUN_DIR (the Makefile's variable) or ./run in the repository.
DEFAULT_RUN_DIR = Path(os.environ.get("RUN_DIR") or ROOT / "run")


def up(
    run_dir: Path,
    backend: str,
    instances: int,
    lb_port: int,
    app: str = DEFAULT_APP,
    postgres_url: str = postgres_cluster.DEFAULT_URL,
    postgres_mode: str = "auto",
) -> int:
    state = State.load(run_dir)
    if state is not None:
        if state.complete and all(is_alive(p) for p in state.procs):
            if (state.backend, state.instances, state.app) != (backend, instances, app):
                print(
                    f"already up with backend={state.backend}, instances={state.instances}, "
                    f"app={state.app} in {run_dir}; run `make down` first to change it",
                    file=sys.stderr,
                )
                return 2
            print(f"already up in {run_dir}")
            return report(run_dir, state)
        print(f"cleaning up an earlier run in {run_dir} that is not fully up")
        if not _down(run_dir, state):
            return 1
    binaries = preflight(backend)
    lb_port = lb_port or free_port()
    if not port_is_free(lb_port):
        print(f"port {lb_port} is in use; choose another: make up LB_PORT=...", file=sys.stderr)
        return 1
    run_dir.mkdir(parents=True, exist_ok=True)
    state = State(backend, instances, lb_port, app=app)
    try:
        start(run_dir, state, binaries, postgres_url, postgres_mode)
    except (StartError, OSError) as exc:
        print(f"up failed: {exc}", file=sys.stderr)
        _down(run_dir, state)
        return 1
    shown = mask_url(state.backend_url)
    print(f"taskflow local stack is up: {instances} instances sharing {shown}")
    return report(run_dir, state)


def down(run_dir: Path) -> int:
    state = State.load(run_dir)
    if state is None:
        print(f"nothing to stop (no {STATE_FILE} in {run_dir})")
        return 0
    return 0 if _down(run_dir, state) else 1


def _down(run_dir: Path, state: State) -> bool:
    left, busy = stop_all(state)
    if left or busy:
        print(f"down: still running: {left}; ports still open: {busy}", file=sys.stderr)
        return False  # the state file stays, so that `down` can be run again
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    postgres_cluster.remove_if_temporary(run_dir)
    print(f"down: nothing left running (logs kept in {run_dir})")
    return True


def probe(proc: Proc, backend_url: str) -> dict[str, Any]:
    """What ``status`` reports for one process: alive, and its health check's answer."""
    alive = is_alive(proc)
    health: int | bool | None = None
    if alive and proc.kind == "redis":
        health = redis_answers(proc.port)
    elif alive and proc.kind == "postgres":
        health = postgres_cluster.answers(backend_url)
    elif alive:
        path = READY_PATH if proc.kind == "instance" else nginx_config.LB_HEALTH_PATH
        health = http_status(proc.url + path)
    ok = alive and health in (True, 200)
    return {**proc.to_dict(), "url": proc.url, "alive": alive, "health": health, "ok": ok}


def report(run_dir: Path, state: State | None, as_json: bool = False) -> int:
    """Print each process (pid, URL, health) and the load balancer's URL; 0 when all is well."""
    if state is None:
        print(
            json.dumps({"up": False}) if as_json else f"not running (no {STATE_FILE} in {run_dir})"
        )
        return 1
    rows = [probe(p, state.backend_url) for p in state.procs]
    healthy = state.complete and all(r["ok"] for r in rows)
    if as_json:
        summary = {k: v for k, v in state.__dict__.items() if k != "procs"}
        extra = {"lb_url": state.lb_url, "run_dir": str(run_dir), "processes": rows}
        print(json.dumps({"up": healthy, **summary, **extra}, indent=2))
        return 0 if healthy else 1
    for r in rows:
        condition = "up" if r["ok"] else "DOWN" if not r["alive"] else f"UNHEALTHY ({r['health']})"
        print(f"  {r['name']:<8} pid {r['pid']:<8} {r['url']:<24} {condition}")
    print(f"backend:       {mask_url(state.backend_url)}")
    print(f"load balancer: {state.lb_url}   dashboard: {state.lb_url}/tasks/dashboard")
    print(f"run folder:    {run_dir}")
    return 0 if healthy else 1


def kill(run_dir: Path, name: str) -> int:
    state = State.load(run_dir)
    name = f"app-{name}" if name.isdigit() else name
    found = [p for p in (state.procs if state else []) if p.name == name]
    if not found:
        print(f"no process named {name!r} in {run_dir}", file=sys.stderr)
        return 1
    kill_group(found[0])
    print(f"killed {name} (SIGKILL to its process group {found[0].pid})")
    return 0


def restart(run_dir: Path, names: Sequence[str]) -> int:
    """Replace the named instances (all, when none is named) one after the other."""
    state = State.load(run_dir)
    if state is None or not state.complete:
        print(f"not running (no complete {STATE_FILE} in {run_dir})", file=sys.stderr)
        return 1
    instances = [p.name for p in state.procs if p.kind == "instance"]
    wanted = [f"app-{n}" if n.isdigit() else n for n in names] or instances
    unknown = [n for n in wanted if n not in instances]
    if unknown:
        print(f"no instance named {', '.join(unknown)} in {run_dir}", file=sys.stderr)
        return 1
    for name in wanted:
        started = time.monotonic()
        try:
            proc = replace_instance(run_dir, state, name)
        except (StartError, OSError) as exc:
            print(f"restart of {name} failed: {exc}", file=sys.stderr)
            return 1
        took = time.monotonic() - started
        print(f"restarted {name}: now pid {proc.pid} on {proc.url} (old one drained; {took:.1f}s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.runner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sub = {n: commands.add_parser(n) for n in ("up", "down", "status", "url", "kill", "restart")}
    for command in sub.values():
        command.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    sub["up"].add_argument("--backend", choices=BACKENDS, default="sqlite")
    sub["up"].add_argument(
        "--instances", type=int, choices=range(1, 21), default=DEFAULT_INSTANCES, metavar="1..20"
    )
    sub["up"].add_argument("--lb-port", type=int, default=DEFAULT_LB_PORT, help="0: any free port")
    sub["up"].add_argument(
        "--app", default=DEFAULT_APP, help="module:attribute every instance serves"
    )
    sub["up"].add_argument(
        "--postgres-url",
        default=postgres_cluster.url_from_env(),
        help="--backend postgres: the server to use when it answers (POSTGRES_URL)",
    )
    sub["up"].add_argument(
        "--postgres",
        choices=postgres_cluster.MODES,
        default="auto",
        help="auto: that server when it answers, else a cluster of the runner's own; "
        "machine: that server or fail; own: always a cluster of its own",
    )
    sub["status"].add_argument("--json", action="store_true")
    sub["kill"].add_argument("name", help="app-2, or just 2")
    sub["restart"].add_argument("names", nargs="*", help="app-1, or just 1 (default: every one)")
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir.resolve()
    if args.command == "up":
        return up(
            run_dir,
            args.backend,
            args.instances,
            args.lb_port,
            args.app,
            args.postgres_url,
            args.postgres,
        )
    if args.command == "down":
        return down(run_dir)
    if args.command == "kill":
        return kill(run_dir, args.name)
    if args.command == "restart":
        return restart(run_dir, args.names)
    state = State.load(run_dir)
    if args.command == "url":
        if state is None:
            print(f"not running (no {STATE_FILE} in {run_dir})", file=sys.stderr)
            return 1
        print(state.lb_url)
        return 0
    return report(run_dir, state, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
