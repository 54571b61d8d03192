"""`make restart` on the local runner: a rolling upgrade of three instances under load, with
real gunicorn masters, real nginx reloads and real signals, on both backends.

The load (tests/integration/loadloop.py) runs through nginx for the whole upgrade; the target,
as docs/multi-instance.md says, is not one failed request. Every instance is replaced (new
processes, new ports), each old one drains and exits cleanly, and every task accepted during the
upgrade finishes where every instance can see it. PostgreSQL here is the runner's own cluster
(`--postgres own`, made with initdb in the run folder or, when the postgres user cannot enter
it, in a temporary folder that `down` removes); test_runner.py runs the machine's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy import nginx_config
from tests.integration.history import list_all
from tests.integration.loadloop import LoadLoop

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(nginx_config.find_nginx() is None, reason="nginx not installed"),
]


def runner(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.runner", *args, "--run-dir", str(run_dir)],
        cwd=ROOT,
        env={**os.environ, "WEB_CONCURRENCY": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def instances(run_dir: Path) -> dict[str, dict[str, Any]]:
    state = json.loads(runner(run_dir, "status", "--json").stdout)
    return {p["name"]: p for p in state["processes"] if p["kind"] == "instance"}


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "run"
    yield path
    if (path / "state.json").exists():
        runner(path, "down")


def not_succeeded(url: str, ids: list[str], timeout: float = 60) -> set[str]:
    """The ids that GET /tasks through ``url`` does not list as succeeded (within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        done = {i["task_id"] for i in list_all(url, func_name="fast_task", status="success")}
        missing = set(ids) - done
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.5)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgres"])
def test_rolling_restart_under_load_fails_no_request(run_dir, backend):
    own = ["--postgres", "own"] if backend == "postgres" else []
    up = runner(run_dir, "up", "--backend", backend, *own, "--instances", "3", "--lb-port", "0")
    assert up.returncode == 0, up.stdout + up.stderr
    lb = json.loads(runner(run_dir, "status", "--json").stdout)["lb_url"]
    before = instances(run_dir)

    with LoadLoop(lb) as load:
        time.sleep(2)  # load on every instance before the first one goes
        started = time.monotonic()
        restart = runner(run_dir, "restart")
        took = time.monotonic() - started
        served_during = load.total
        time.sleep(2)  # and on every successor after the last one came
    print(
        f"{backend}: rolling restart of 3 instances in {took:.1f}s under load: "
        f"{load.total} requests ({served_during} before it ended), {len(load.failures)} failed"
    )
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert restart.stdout.count("restarted app-") == 3, restart.stdout
    assert load.failures == [], f"{len(load.failures)} of {load.total}: {load.failures[:10]}"
    assert load.total > 200, "the load ran throughout"

    after = instances(run_dir)
    assert sorted(after) == sorted(before) == ["app-1", "app-2", "app-3"]
    for name, old in before.items():
        assert after[name]["pid"] != old["pid"] and after[name]["port"] != old["port"], name
        assert after[name]["alive"] and after[name]["health"] == 200, after[name]
        # The old instance drained and left cleanly: its summary line, nothing interrupted.
        assert "0 interrupted" in Path(old["log"]).read_text(), name
    status = runner(run_dir, "status")
    assert status.returncode == 0, status.stdout
    # Every task accepted during the upgrade finished, visible through the load balancer.
    assert not_succeeded(lb, load.task_ids) == set()

    if backend == "postgres":
        assert_own_cluster_stops(run_dir)


def assert_own_cluster_stops(run_dir: Path) -> None:
    """The runner's own PostgreSQL answered throughout, and `down` stops it (fast shutdown)."""
    state = json.loads(runner(run_dir, "status", "--json").stdout)
    (cluster,) = [p for p in state["processes"] if p["kind"] == "postgres"]
    assert cluster["ok"] and state["backend_url"].endswith(
        f":{cluster['port']}/postgres?schema=taskflow_kit"
    )
    folder = (run_dir / "postgres").resolve()
    assert (folder / "data" / "PG_VERSION").exists()
    down = runner(run_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not alive(cluster["pid"]), "the postmaster is gone"
    assert not listening(cluster["port"])
    # Kept in the run folder for the next `up`; a temporary one outside is removed.
    assert (folder / "data").exists() == (folder == run_dir / "postgres")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie that nobody reaped yet does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
