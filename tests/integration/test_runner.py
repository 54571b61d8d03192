"""The local runner with real processes: three gunicorn instances behind nginx on one backend.

For each backend: requests through nginx reach every instance, every task is visible as
finished through every instance, a SIGKILLed instance is routed around, and `down` leaves no
process and no open port. PostgreSQL here is the machine's (the tests' server, in a schema of
this test's own); test_runner_restart.py runs the runner's own cluster.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy import nginx_config, postgres_cluster
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(nginx_config.find_nginx() is None, reason="nginx not installed"),
]


def runner(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WEB_CONCURRENCY": "2"}
    return subprocess.run(
        [sys.executable, "-m", "deploy.runner", *args, "--run-dir", str(run_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def status(run_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(runner(run_dir, "status", "--json").stdout)
    return result


@pytest.fixture
def backend_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """``up``'s arguments for the test's ``backend``: for postgres, the tests' server with a
    schema of this test's own (dropped afterwards), which the runner must use, not start one."""
    backend = request.getfixturevalue("backend")
    if backend != "postgres":
        yield ["--backend", backend]
        return
    url = postgres_cluster.with_schema(
        request.getfixturevalue("postgres_url"), f"tfrunner_{uuid.uuid4().hex[:8]}"
    )
    yield ["--backend", "postgres", "--postgres", "machine", "--postgres-url", url]
    postgres_cluster.drop_schema(url)


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """A run folder; whatever the test leaves running there is stopped afterwards."""
    path = tmp_path / "run"
    yield path
    if (path / "state.json").exists():
        runner(path, "down")


# -- independent checks (not the runner's own helpers) ------------------------------------------


def live_pids(pgids: set[int]) -> set[int]:
    """Processes (not zombies) whose process group is one of ``pgids``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) in pgids and fields[0] not in ("Z", "X"):
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def instance_of(answer: httpx.Response) -> str:
    # Instance ids are `<TASKFLOW_INSTANCE_ID>-<worker pid>`; the runner names instances app-N.
    return str(answer.json()["instance_id"]).rsplit("-", 1)[0]


def wait_finished(base_url: str, ids: list[str], timeout: float = 30.0) -> None:
    """Every id answers GET /tasks/{id} with status success at ``base_url``, and is listed."""
    deadline = time.monotonic() + timeout
    pending = list(ids)
    with httpx.Client(base_url=base_url, timeout=10) as client:
        while pending:
            pending = [
                task_id
                for task_id in pending
                if (r := client.get(f"/tasks/{task_id}")).status_code != 200
                or r.json()["status"] != "success"
            ]
            assert time.monotonic() < deadline, f"{base_url}: {len(pending)} not finished"
            if pending:
                time.sleep(0.2)
        listed = client.get("/tasks", params={"func_name": "fast_task", "limit": 1000}).json()
    finished = {item["task_id"] for item in listed["items"] if item["status"] == "success"}
    assert set(ids) <= finished, f"{base_url}: {len(set(ids) - finished)} missing from GET /tasks"


def post_fast(client: httpx.Client) -> httpx.Response | Exception:
    try:
        return client.post("/demo/fast")
    except httpx.HTTPError as exc:
        return exc


def assert_stream_through(lb: str) -> None:
    """Tasks enqueued on any instance arrive as finished on one stream opened through nginx."""
    client = httpx.Client(base_url=lb, timeout=10)
    with client, client.stream("GET", "/tasks/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert "event: hello" in [next(lines) for _ in range(2)]
        ids = {client.post("/demo/fast").json()["task_ids"][0] for _ in range(6)}
        deadline = time.monotonic() + 15
        for line in lines:
            if line.startswith("data: ") and '"task"' in line:
                task = json.loads(line[6:])["task"]
                if task["status"] == "success":
                    ids.discard(task["task_id"])
            if not ids:
                break
            assert time.monotonic() < deadline, f"never streamed as finished: {ids}"


# -- the test ------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgres"])
def test_three_instances_behind_nginx(run_dir, backend, backend_args):
    up = runner(run_dir, "up", *backend_args, "--instances", "3", "--lb-port", "0")
    assert up.returncode == 0, up.stdout + up.stderr
    state = status(run_dir)
    assert state["up"] is True and state["backend"] == backend
    assert f"load balancer: {state['lb_url']}" in up.stdout
    instances = {p["name"]: p for p in state["processes"] if p["kind"] == "instance"}
    assert sorted(instances) == ["app-1", "app-2", "app-3"]
    if backend == "redis":
        assert not state["backend_url"].startswith("redis://127.0.0.1:6379"), "its own server"
    elif backend == "postgres":
        assert state["backend_url"] == backend_args[-1], "the machine's server, as told"
        assert "postgres" not in {p["kind"] for p in state["processes"]}, "no cluster of its own"
    else:
        assert state["backend_url"] == f"sqlite:///{run_dir.resolve() / 'tasks.db'}"

    again = runner(run_dir, "up", *backend_args, "--instances", "3", "--lb-port", "0")
    assert again.returncode == 0 and "already up" in again.stdout
    assert status(run_dir)["processes"] == state["processes"], "a second up starts nothing"
    other = "redis" if backend == "sqlite" else "sqlite"
    refused = runner(run_dir, "up", "--backend", other, "--instances", "3")
    assert refused.returncode == 2 and "make down" in refused.stderr

    # 300 requests through nginx reach all three instances (round robin: about 100 each).
    lb = state["lb_url"]
    with httpx.Client(base_url=lb, timeout=10) as client, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: client.post("/demo/fast"), range(300)))
    assert [a.status_code for a in answers] == [200] * 300
    spread = Counter(instance_of(a) for a in answers)
    assert set(spread) == set(instances) and min(spread.values()) >= 60, spread
    ids = [a.json()["task_ids"][0] for a in answers]
    assert len(set(ids)) == 300

    # Request ids: returned to the client and in nginx's access log.
    request_id = answers[-1].headers["X-Request-ID"]
    assert request_id in (run_dir / "nginx.log").read_text()

    # Every task is visible as finished through each instance directly, and through nginx.
    for url in [p["url"] for p in instances.values()] + [lb]:
        wait_finished(url, ids)

    # The dashboard's live stream passes through nginx unbuffered, with every instance's tasks.
    assert_stream_through(lb)

    # A crash: SIGKILL one instance's master and workers at once. nginx routes around it.
    victim = instances["app-2"]
    victim_pids = live_pids({victim["pid"]})
    assert len(victim_pids) == 3, "a master and its two workers"
    os.killpg(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while live_pids({victim["pid"]}) or listening(victim["port"]):
        assert time.monotonic() < deadline, "the killed instance is still there"
        time.sleep(0.05)
    with httpx.Client(base_url=lb, timeout=10) as client:
        after = [post_fast(client) for _ in range(100)]
    failed = [i for i, a in enumerate(after) if isinstance(a, Exception) or a.status_code != 200]
    assert failed in ([], [0]), f"failed requests after the kill: {failed}"
    survivors = Counter(instance_of(a) for a in after if isinstance(a, httpx.Response))
    assert set(survivors) == {"app-1", "app-3"}, survivors
    degraded = runner(run_dir, "status")
    assert degraded.returncode == 1 and "DOWN" in degraded.stdout

    # `down` leaves nothing: no process of any group the runner started, no open port.
    state = status(run_dir)
    pgids = {p["pid"] for p in state["processes"]}
    ports = [p["port"] for p in state["processes"]]
    running = live_pids(pgids)
    assert len(running) >= 1 + 2 * 3 + 1, "nginx, two instances of three processes, maybe redis"
    down = runner(run_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert live_pids(pgids) == set()
    assert [pid for pid in running | victim_pids if alive(pid)] == []
    assert [port for port in ports if listening(port)] == []
    assert not (run_dir / "state.json").exists()
    assert (run_dir / "app-1.log").stat().st_size > 0 and (run_dir / "nginx.log").exists()
    assert runner(run_dir, "status").returncode == 1


@pytest.mark.timeout(60)
def test_postgres_machine_mode_fails_when_no_server_answers(run_dir):
    """`--postgres machine` never starts a cluster of its own: with nothing at the URL, `up`
    fails naming it (the password masked) and leaves nothing running."""
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/postgres"
    up = runner(run_dir, "up", "--backend", "postgres", "--postgres", "machine",
                "--postgres-url", url, "--instances", "1", "--lb-port", "0")  # fmt: skip
    assert up.returncode == 1
    assert "no PostgreSQL answers at postgresql://postgres:***@127.0.0.1" in up.stderr
    assert "secret" not in up.stdout + up.stderr
    assert not (run_dir / "state.json").exists() and not (run_dir / "postgres").exists()
