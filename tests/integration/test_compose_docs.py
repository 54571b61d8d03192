"""Every command in docs/compose.md runs, in order, exactly as written, as a new user would.

In a fresh copy of the repository's files (with this checkout's .venv beside them, as `make test`
leaves it), with a HOME of its own (no Compose plugin installed yet, no ~/.docker), on Debian's
Docker engine with no registry: so the page's own steps make `docker compose` available, create
`.env`, make the offline base and wheelhouse, build, bring the redis topology up, use it from
commands that get the token from `.env` alone, scale, upgrade, run a load test and take it all
down. The page's ```sh blocks are its commands (it has no other kind of shell block); they run in
one bash session. Only the load balancer's port differs, through `LB_PORT`, and the project's
name, through `COMPOSE_PROJECT_NAME`, so that nothing a developer runs is touched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.deploy.deploy_files import ROOT
from tests.integration.docker_images import docker, engine_answers, ensure_base_image

DOC = ROOT / "docs" / "compose.md"
FENCE = re.compile(r"^```(\S*)\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.docker,
    pytest.mark.skipif(not engine_answers(), reason="docker engine not available"),
]


def shell_blocks() -> list[str]:
    blocks = FENCE.findall(DOC.read_text())
    untested = [lang for lang, _ in blocks if lang in ("bash", "shell", "console", "")]
    assert untested == [], "shell commands belong in ```sh blocks, which this test runs"
    return [body for lang, body in blocks if lang == "sh"]


def fresh_copy(target: Path) -> Path:
    """The repository's tracked files (what a clone has), and the .venv `make test` made."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to((ROOT / ".venv").resolve(), target_is_directory=True)
    return target


def test_the_page_runs_everything_it_describes():
    blocks = shell_blocks()
    commands = "\n".join(blocks)
    needed = ["cli-plugins", "> .env", "make offline-images", "docker compose build"]
    needed += ["up -d --wait", "make compose-upgrade", "LOCUST_RUN=1", "down --volumes"]
    assert [n for n in needed if n not in commands] == []


@pytest.mark.timeout(900)
def test_every_command_in_the_guide_runs(tmp_path):
    if shutil.which("curl") is None or shutil.which("make") is None:
        pytest.fail("curl and make are needed (.ci/run installs them)")
    ensure_base_image()  # made anew once per CI session; the page's command then reuses it
    repo, home = fresh_copy(tmp_path / "repo"), tmp_path / "home"
    home.mkdir()
    project, port = f"tfdocs-{uuid.uuid4().hex[:8]}", free_port()
    prefixes = ("TASKFLOW_", "COMPOSE_", "LOCUST_", "DOCKER_", "LB_", "BASE_IMAGE", "APP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env |= {"HOME": str(home), "LB_PORT": str(port), "COMPOSE_PROJECT_NAME": project}
    script = "set -euo pipefail\n" + "\n".join(shell_blocks())
    try:
        result = subprocess.run(
            ["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=840
        )
    finally:
        label = f"label=com.docker.compose.project={project}"
        left = docker("ps", "-aq", "--filter", label)
        volumes = docker("volume", "ls", "-q", "--filter", label)
        if left or volumes:  # the page's own `down` did not run: clean up after it
            subprocess.run(
                ["docker", "compose", "down", "--volumes", "--timeout=30"],
                cwd=repo, env=env, capture_output=True, timeout=120,
            )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]

    assert "Docker Compose version" in output, "the plugin made of the extras' binary"
    settings = (repo / ".env").read_text()
    assert "COMPOSE_FILE=deploy/compose.yml:deploy/compose.redis.yml" in settings
    assert re.search(r"^TASKFLOW_ADMIN_TOKEN=\S{40,}$", settings, re.MULTILINE)
    assert re.search(r"^BASE_IMAGE=taskflow-kit-base:\w+$", settings, re.MULTILINE)
    assert re.search(r"^POSTGRES_IMAGE=taskflow-kit-base:\w+$", settings, re.MULTILINE)
    assert re.search(r"^POSTGRES_PASSWORD=[0-9a-f]{48}$", settings, re.MULTILINE)
    assert (repo / ".env").stat().st_mode & 0o077 == 0, ".env holds a secret: private to you"
    assert list((repo / "deploy/wheels").glob("async_timeout-*.whl")), "for the image's Python"

    assert '"task_ids"' in output, "the POST through nginx, with the token from .env"
    assert re.search(rf"{project}-nginx-1 .*\(healthy\)", output), "ps in a new shell"
    assert "Recreate" not in output, "no `up` recreated a replica"
    assert "compose-upgrade: done: 4 replicas, all new" in output
    assert "PASS: every threshold held" in output, "the load test's verdict"
    assert docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}") == ""
    assert docker("volume", "ls", "-q", "--filter", f"name={project}") == ""
