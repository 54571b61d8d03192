"""Signals to a real gunicorn master, started as `make run` starts it, with tasks running.

What each signal does under gunicorn is documented in docs/operations.md ("Graceful shutdown");
deploy/gunicorn.conf.py makes it so (its ``when_ready`` and ``post_worker_init`` hooks).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
#: What `make run` starts (Makefile), after the interpreter.
MAKE_RUN = ("-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "deploy.app:app")
WORKERS = 2
INSTANCE_HEADER = "X-Taskflow-Instance"
#: Lines that must never appear at a clean stop: a worker killed by gunicorn, uvloop closing the
#: listening socket before gunicorn does, or any warning or error at all.
NOISE = (
    "was sent SIGKILL",
    "Perhaps out of memory",
    "Bad file descriptor",
    "Error while closing socket",
    "WARNING",
    "ERROR",
    "Traceback",
)

pytestmark = pytest.mark.integration


@dataclass
class Master:
    """One gunicorn master with its UvicornWorkers, in a process group of its own."""

    proc: subprocess.Popen[bytes]
    url: str
    db: Path
    log_path: Path
    shutdown_timeout: float

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float) -> float:
        """Seconds until the master exits; fails with its log after ``timeout``."""
        started = time.monotonic()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the master still runs after {timeout}s:\n{self.log()}")
        return time.monotonic() - started

    def send(self, signum: int, *, group: bool = False) -> None:
        """``signum`` to the master alone, or to its whole process group as a terminal's Ctrl-C
        sends it."""
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def start_slow_tasks(self, seconds: float) -> dict[str, list[str]]:
        """At least one running ``slow_task`` in every worker: {instance id: [task ids]}."""
        tasks: dict[str, list[str]] = {}
        deadline = time.monotonic() + 20
        while len(tasks) < WORKERS:
            assert time.monotonic() < deadline, f"not every worker took a task:\n{self.log()}"
            # A new connection each time, so that either worker may answer.
            body = httpx.post(f"{self.url}/demo/slow", params={"seconds": seconds}).json()
            tasks.setdefault(body["instance_id"], []).append(body["task_id"])
        time.sleep(0.2)  # the tasks start after their responses
        assert len(self.rows("instances", "instance_id")) == WORKERS, "every worker registered"
        return tasks

    def wait_draining(self) -> None:
        """Until every worker has begun its application shutdown (taskflow's drain)."""
        deadline = time.monotonic() + 10
        while self.log().count("Waiting for application shutdown.") < WORKERS:
            assert time.monotonic() < deadline, self.log()
            assert self.proc.poll() is None, self.log()
            time.sleep(0.05)
        time.sleep(0.5)  # from the lifespan shutdown's first step to the drain's

    def summaries(self) -> list[str]:
        return [line for line in self.log().splitlines() if "taskflow shutdown" in line]

    def rows(self, table: str, *columns: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is left (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[[float], Master]]:
    """Factory: ``gunicorn(shutdown_timeout)`` -> a Master whose workers all answer.

    The command and environment are those of `make run` (Makefile), on a free loopback port,
    with the history in a SQLite file of the test's own. Whatever is left at the end of the test
    is killed.
    """
    masters: list[Master] = []

    def start(shutdown_timeout: float) -> Master:
        port, db, log_path = free_port(), tmp_path / "tasks.db", tmp_path / "gunicorn.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFLOW_", "GUNICORN"))}
        env |= {
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(WORKERS),
            "TASKFLOW_BACKEND_URL": f"sqlite:///{db}",
            "TASKFLOW_SHUTDOWN_TIMEOUT": str(shutdown_timeout),
            "TASKFLOW_ADMIN_TOKEN": "signals-test-token",  # no warning about an open API
        }
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, *MAKE_RUN],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a group of its own, as a terminal gives `make run`
            )
        master = Master(proc, f"http://127.0.0.1:{port}", db, log_path, shutdown_timeout)
        masters.append(master)
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while len(seen) < WORKERS:
            assert proc.poll() is None, master.log()
            assert time.monotonic() < deadline, f"workers answering: {seen}\n{master.log()}"
            try:
                seen.add(httpx.get(f"{master.url}/healthz").headers[INSTANCE_HEADER])
            except httpx.HTTPError:
                time.sleep(0.05)
        return master

    yield start
    for master in masters:
        if group_alive(master.proc.pid):
            os.killpg(master.proc.pid, signal.SIGKILL)
        master.proc.wait(5)


def assert_clean_stop(master: Master, *, forced: bool) -> None:
    """Every worker drained (forced or not) and logged its summary; nothing was killed or
    complained; every instance deregistered."""
    log = master.log()
    assert master.proc.returncode == 0, f"master exit code {master.proc.returncode}:\n{log}"
    assert not group_alive(master.proc.pid), "a worker outlived its master"
    summaries = master.summaries()
    assert len(summaries) == WORKERS, log
    marker = "taskflow shutdown (forced by a second signal):" if forced else "taskflow shutdown:"
    assert all(marker in line for line in summaries), log
    assert all(" 0 unflushed" in line for line in summaries), log
    assert [n for n in NOISE if n in log] == [], log
    assert master.rows("instances", "instance_id") == [], "stale instance rows"


# Ctrl-C in the terminal that runs `make run` sends SIGINT to the whole foreground group: the
# workers get it directly, and then SIGQUIT from the master.
FIRST_SIGNALS = [
    pytest.param(signal.SIGINT, False, id="SIGINT"),
    pytest.param(signal.SIGTERM, False, id="SIGTERM"),
    pytest.param(signal.SIGQUIT, False, id="SIGQUIT"),
    pytest.param(signal.SIGINT, True, id="Ctrl-C"),
]


@pytest.mark.parametrize(("signum", "group"), FIRST_SIGNALS)
def test_one_signal_drains_every_worker_then_the_master_exits(gunicorn, signum, group):
    master = gunicorn(shutdown_timeout=3)
    tasks = master.start_slow_tasks(seconds=1.0)
    master.send(signum, group=group)
    # Past graceful_timeout (shutdown_timeout + 10), where gunicorn SIGKILLs the workers.
    elapsed = master.wait_exit(master.shutdown_timeout + 15)
    print(f"{signal.Signals(signum).name} (group={group}): master exited after {elapsed:.2f}s")
    assert_clean_stop(master, forced=False)
    # The running tasks were let finish: the drain waited for them, not for the whole timeout.
    assert elapsed < master.shutdown_timeout, f"took {elapsed:.2f}s:\n{master.log()}"
    ids = {task_id for ids in tasks.values() for task_id in ids}
    statuses = dict(master.rows("tasks", "task_id", "status"))
    assert {statuses.get(task_id) for task_id in ids} == {"success"}, statuses


# (first signal, second signal, to the whole group?)
SIGNAL_PAIRS = [
    pytest.param(signal.SIGTERM, signal.SIGTERM, False, id="SIGTERM-SIGTERM"),
    pytest.param(signal.SIGTERM, signal.SIGINT, False, id="SIGTERM-SIGINT"),
    pytest.param(signal.SIGINT, signal.SIGINT, False, id="SIGINT-SIGINT"),
    pytest.param(signal.SIGQUIT, signal.SIGTERM, False, id="SIGQUIT-SIGTERM"),
    pytest.param(signal.SIGINT, signal.SIGINT, True, id="Ctrl-C-Ctrl-C"),
]


@pytest.mark.parametrize(("first", "second", "group"), SIGNAL_PAIRS)
def test_a_second_signal_cuts_the_drain_short(gunicorn, first, second, group):
    master = gunicorn(shutdown_timeout=30)
    tasks = master.start_slow_tasks(seconds=60)
    master.send(first, group=group)
    master.wait_draining()
    assert master.proc.poll() is None, "the drain should still be waiting for the tasks"
    master.send(second, group=group)
    elapsed = master.wait_exit(master.shutdown_timeout)
    names = f"{signal.Signals(first).name}+{signal.Signals(second).name} (group={group})"
    print(f"{names}: master exited {elapsed:.2f}s after the second signal")
    assert_clean_stop(master, forced=True)
    assert elapsed < 5, f"the second signal should end the drain at once:\n{master.log()}"
    ids = {task_id for ids in tasks.values() for task_id in ids}
    statuses = dict(master.rows("tasks", "task_id", "status"))
    assert {statuses.get(task_id) for task_id in ids} == {"interrupted"}, statuses
