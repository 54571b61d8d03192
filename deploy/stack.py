"""The local stack's processes: what runs, where its state is kept, how it starts and stops.

One run folder holds everything: state.json (which lets a later ``status`` or ``down`` find the
processes), one log per process, the SQLite file, Redis's data or the PostgreSQL cluster of the
runner's own (deploy/postgres_cluster.py), and nginx's prefix.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from deploy import nginx_config, postgres_cluster
from deploy.processes import (
    Proc,
    accepts_connections,
    adopt,
    free_port,
    group_members,
    http_status,
    is_alive,
    log_tail,
    redis_answers,
    spawn,
    stop,
)
from taskflow.backends.urls import mask_url
from taskflow.settings import DEFAULTS, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]
STATE_FILE = "state.json"
BACKENDS = ("sqlite", "redis", "postgres")
#: What "an instance is up" means: the app's readiness endpoint answers 200.
READY_PATH = "/readyz"
#: The ASGI app every instance serves unless ``up --app`` names another (the load tests' own
#: tests use that to run an app with a deliberate fault).
DEFAULT_APP = "deploy.app:app"
#: Seconds each component gets to come up before ``up`` gives up (and cleans up).
START_TIMEOUT = 60.0
#: Seconds beyond gunicorn's graceful_timeout (TASKFLOW_SHUTDOWN_TIMEOUT + 10, see
#: deploy/gunicorn.conf.py) before what is left of a stopping instance gets SIGKILL.
STOP_MARGIN = 15
#: Seconds nginx, redis-server and PostgreSQL get to stop.
AUX_STOP_TIMEOUT = 10.0
#: Seconds nginx gets to start workers with a new instance list and let go of the old list.
RELOAD_TIMEOUT = 10.0


class StartError(RuntimeError):
    """A component did not come up; the message says which and shows its log's tail."""


@dataclass
class State:
    backend: str
    instances: int
    lb_port: int
    backend_url: str = ""
    procs: list[Proc] = field(default_factory=list)
    complete: bool = False  # every component was up when ``up`` finished
    app: str = DEFAULT_APP  # module:attribute served by every instance

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def save(self, run_dir: Path) -> None:
        data = {**self.__dict__, "procs": [p.to_dict() for p in self.procs]}
        tmp = run_dir / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(run_dir / STATE_FILE)  # atomic: a crash never leaves half a state file

    @classmethod
    def load(cls, run_dir: Path) -> State | None:
        try:
            data = json.loads((run_dir / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        data["procs"] = [Proc.from_dict(p) for p in data["procs"]]
        return cls(**data)


def instance_stop_timeout() -> float:
    try:
        drain = Settings.from_env().shutdown_timeout
    except SettingsError:  # the instances refused it too; they use nothing longer than this
        drain = float(DEFAULTS["TASKFLOW_SHUTDOWN_TIMEOUT"])
    return math.ceil(drain) + STOP_MARGIN


def preflight(backend: str) -> dict[str, str]:
    """The binaries this backend needs; exits naming what to install when one is missing."""
    try:
        Settings.from_env()  # every instance would refuse a bad TASKFLOW_* value: say so once
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None
    missing = [m for m in ("gunicorn", "uvicorn_worker") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"{', '.join(missing)} missing: pip install 'taskflow-kit[server]'")
    if backend == "postgres" and importlib.util.find_spec("asyncpg") is None:
        raise SystemExit("asyncpg missing: pip install 'taskflow-kit[postgres]'")
    binaries = {"nginx": nginx_config.find_nginx()}
    if backend == "redis":
        binaries["redis-server"] = shutil.which("redis-server")
    absent = " ".join(sorted(k for k, v in binaries.items() if v is None))
    if absent:
        raise SystemExit(f"not installed: {absent} (Debian: apt-get install {absent})")
    return {k: v for k, v in binaries.items() if v is not None}


def start(
    run_dir: Path,
    state: State,
    binaries: dict[str, str],
    postgres_url: str = postgres_cluster.DEFAULT_URL,
    postgres_mode: str = "auto",
) -> None:
    """Start the backend, the instances and nginx, each only once the one before answers.

    With PostgreSQL: the server at ``postgres_url`` when it answers, else a cluster of the
    runner's own, as ``postgres_mode`` says (deploy/postgres_cluster.py).
    """
    taken = {state.lb_port}

    def new_port() -> int:
        port = free_port()
        while port in taken:
            port = free_port()
        taken.add(port)
        return port

    def started(name: str, kind: str, argv: list[str], port: int, **env: str) -> Proc:
        cwd = ROOT if kind == "instance" else run_dir
        log = run_dir / f"{name}.log"
        proc = spawn(name, kind, argv, port=port, log=log, env={**os.environ, **env}, cwd=cwd)
        state.procs.append(proc)
        state.save(run_dir)  # at once, so that `down` finds it even if `up` dies now
        return proc

    if state.backend == "redis":
        port = new_port()
        data = run_dir / "redis"
        data.mkdir(exist_ok=True)
        # Its own server on its own port (never one already running): data in the run folder.
        argv = [binaries["redis-server"], "--port", str(port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(data), "--save", "", "--appendonly", "yes", "--logfile", ""]
        redis = started("redis", "redis", argv, port)
        _wait(lambda: redis_answers(port), redis, "redis-server")
        state.backend_url = f"redis://127.0.0.1:{port}/0"
    elif state.backend == "postgres":
        state.backend_url = _postgres(run_dir, state, postgres_url, postgres_mode, new_port())
    else:
        state.backend_url = f"sqlite:///{run_dir / 'tasks.db'}"  # one WAL file for every worker

    apps = []
    for i in range(1, state.instances + 1):
        name, port = f"app-{i}", new_port()
        apps.append(
            started(name, "instance", _app_argv(state), port, **_env(run_dir, state, name, port))
        )
    for app in apps:
        _wait_http(app.url + READY_PATH, app, app.name)

    prefix = run_dir / "nginx"
    nginx_config.render(prefix, port=state.lb_port, servers=[f"127.0.0.1:{a.port}" for a in apps])
    nginx = started(
        "nginx", "nginx", nginx_config.command(binaries["nginx"], prefix), state.lb_port
    )
    _wait_http(state.lb_url + nginx_config.LB_HEALTH_PATH, nginx, "nginx")
    _wait_http(state.lb_url + READY_PATH, nginx, "nginx -> instances")
    state.complete = True
    state.save(run_dir)


def _postgres(run_dir: Path, state: State, url: str, mode: str, port: int) -> str:
    """The URL the instances use: ``url`` when its server answers (and ``mode`` allows), else
    that of a cluster started here (and recorded in the state, so that ``down`` stops it)."""
    if mode != "own" and postgres_cluster.answers(url):
        return url
    if mode == "machine":
        raise StartError(f"no PostgreSQL answers at {mask_url(url)} (--postgres machine)")
    try:
        pid, log = postgres_cluster.start(run_dir, port)
    except postgres_cluster.ClusterError as exc:
        raise StartError(str(exc)) from None
    state.procs.append(adopt("postgres", "postgres", pid, port, log))
    state.save(run_dir)
    own = postgres_cluster.own_url(url, port)
    if not postgres_cluster.answers(own):
        raise StartError(f"PostgreSQL started but does not answer; end of {log}:\n{log_tail(log)}")
    return own


def replace_instance(run_dir: Path, state: State, name: str) -> Proc:
    """Replace one instance without failing a request, as a rolling upgrade does.

    1. start its successor (the code as it is now) on a new port and wait until it is ready;
    2. point nginx at the successor instead, and wait until nginx no longer sends the old one
       anything (:func:`reload_nginx`);
    3. stop the old one with SIGTERM: it finishes its requests, drains its running tasks and
       flushes, while the others serve.

    So capacity never drops and no request reaches an instance that is closing its connections
    (nginx resends a GET that hits a closing connection, but never a POST). Raises
    :class:`StartError` when the successor does not come up (the old one keeps serving then).
    """
    old = next(p for p in state.procs if p.name == name and p.kind == "instance")
    taken = {p.port for p in state.procs} | {state.lb_port}
    port = free_port()
    while port in taken:
        port = free_port()
    env = {**os.environ, **_env(run_dir, state, name, port)}
    new = spawn(name, "instance", _app_argv(state), port=port, log=Path(old.log), env=env, cwd=ROOT)
    state.procs.insert(state.procs.index(old) + 1, new)
    state.save(run_dir)  # both, for now: a `down` meanwhile stops both
    try:
        _wait_http(new.url + READY_PATH, new, f"{name}'s successor")
    except StartError:
        stop(new, instance_stop_timeout())
        state.procs.remove(new)
        state.save(run_dir)
        raise
    reload_nginx(run_dir, state, [p for p in state.procs if p.kind == "instance" and p is not old])
    if not stop(old, instance_stop_timeout()):
        tail = log_tail(old.log)
        raise StartError(f"{name} (pid {old.pid}) did not stop; end of {old.log}:\n{tail}")
    state.procs.remove(old)
    state.save(run_dir)
    return new


def reload_nginx(run_dir: Path, state: State, instances: list[Proc]) -> None:
    """Make nginx send requests to ``instances`` only, and return once it does.

    Writes the new list, then SIGHUP: nginx starts workers with it, and tells the old workers
    to finish the requests they hold and to close their idle connections to the instances at
    once. Returns when the new workers run and every old one has done that (shutting down, or
    gone): from then on no new request reaches an instance that left the list.
    """
    nginx = next(p for p in state.procs if p.kind == "nginx")
    nginx_config.write_upstreams(run_dir / "nginx", [f"127.0.0.1:{p.port}" for p in instances])
    before = set(group_members(nginx.pid)) - {nginx.pid}
    os.kill(nginx.pid, signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while True:
        workers = set(group_members(nginx.pid)) - {nginx.pid}
        new = [w for w in workers - before if not _shutting_down(w)]
        holding = [w for w in workers & before if not _shutting_down(w)]
        if new and not holding:
            return
        if not is_alive(nginx) or time.monotonic() > deadline:
            raise StartError(
                f"nginx did not reload within {RELOAD_TIMEOUT:.0f}s (a rejected config keeps the "
                f"old one); end of {nginx.log}:\n{log_tail(nginx.log)}"
            )
        time.sleep(0.05)


def _shutting_down(pid: int) -> bool:
    """Whether an nginx worker has begun its graceful exit (its title says so), or is gone."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return not title or b"shutting down" in title


def _app_argv(state: State) -> list[str]:
    conf = str(ROOT / "deploy" / "gunicorn.conf.py")
    return [sys.executable, "-m", "gunicorn", "-c", conf, state.app]


def _env(run_dir: Path, state: State, name: str, port: int) -> dict[str, str]:
    return {
        "TASKFLOW_BACKEND_URL": state.backend_url,
        "TASKFLOW_INSTANCE_ID": name,  # each worker adds its pid (deploy/gunicorn.conf.py)
        "BIND": f"127.0.0.1:{port}",  # loopback: only nginx is in front of the instances
        "PORT": "",  # an inherited PORT must not matter: BIND wins
        # Per process, not per name: an instance and its successor overlap (replace_instance).
        "GUNICORN_PIDFILE": str(run_dir / f"{name}-{port}.pid"),
        "GUNICORN_CONTROL_SOCKET": str(run_dir / f"{name}-{port}.ctl"),
    }


def _wait_http(url: str, proc: Proc, what: str) -> None:
    _wait(lambda: http_status(url) == 200, proc, what)


def _wait(check: Callable[[], bool], proc: Proc, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        if not is_alive(proc):
            raise StartError(f"{what} exited; end of {proc.log}:\n{log_tail(proc.log)}")
        if time.monotonic() > deadline:
            tail = log_tail(proc.log)
            raise StartError(
                f"{what} not up after {START_TIMEOUT:.0f}s; end of {proc.log}:\n{tail}"
            )
        time.sleep(0.1)


def stop_all(state: State) -> tuple[list[str], list[int]]:
    """Stop nginx, then the instances (they drain and flush), then Redis or PostgreSQL.

    Returns what is still left: names of processes that would not die, ports still accepting.
    """
    # PostgreSQL gets SIGINT, its fast shutdown (SIGTERM would wait for every client to leave).
    stages = [
        ([p for p in state.procs if p.kind == "nginx"], AUX_STOP_TIMEOUT, signal.SIGTERM),
        ([p for p in state.procs if p.kind == "instance"], instance_stop_timeout(), signal.SIGTERM),
        ([p for p in state.procs if p.kind == "redis"], AUX_STOP_TIMEOUT, signal.SIGTERM),
        ([p for p in state.procs if p.kind == "postgres"], AUX_STOP_TIMEOUT, signal.SIGINT),
    ]
    left: list[str] = []
    for procs, timeout, first in stages:
        if procs:
            with ThreadPoolExecutor(len(procs)) as pool:
                n = len(procs)
                gone = list(pool.map(stop, procs, [timeout] * n, [first] * n))
            left += [p.name for p, ok in zip(procs, gone, strict=True) if not ok]
    busy = [p.port for p in state.procs if accepts_connections(p.port)]
    return left, busy
