"""Every command in docs/multi-instance.md runs, in order, exactly as written.

The page's ```sh blocks are its commands (it has no other kind of shell block: the test checks
that too); they run in one bash session from the repository root, with the run folder and the
load balancer's port pointed at free places through the Makefile's RUN_DIR and LB_PORT, and
PostgreSQL at the tests' server (POSTGRES_URL, in a schema of the test's own, dropped after).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from deploy import nginx_config, postgres_cluster
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "multi-instance.md"
FENCE = re.compile(r"^```(\S*)\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(nginx_config.find_nginx() is None, reason="nginx not installed"),
]


def shell_blocks() -> list[str]:
    blocks = FENCE.findall(DOC.read_text())
    untested = [lang for lang, _ in blocks if lang in ("bash", "shell", "console", "")]
    assert untested == [], "shell commands belong in ```sh blocks, which this test runs"
    return [body for lang, body in blocks if lang == "sh"]


def test_make_targets_named_in_the_prose_exist():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    named = set(re.findall(r"`make (?:-s )?([a-z-]+)", DOC.read_text()))
    assert named and named <= targets
    # `make run` is started by tests/integration/test_make_run.py; the rest by the blocks.
    run_by_blocks = {m for b in shell_blocks() for m in re.findall(r"make (?:-s )?([a-z-]+)", b)}
    assert named - run_by_blocks <= {"run"}


@pytest.mark.timeout(300)
def test_every_command_in_the_guide_runs(tmp_path, postgres_url):
    if shutil.which("curl") is None:
        pytest.fail("curl is missing (.ci/run installs it)")
    blocks = shell_blocks()
    assert len(blocks) >= 5
    script = "set -euo pipefail\n" + "\n".join(blocks)
    run_dir, port = tmp_path / "run", free_port()
    env = {**os.environ, "RUN_DIR": str(run_dir), "LB_PORT": str(port), "WEB_CONCURRENCY": "2"}
    schema = f"tfdocs_{uuid.uuid4().hex[:8]}"
    env["POSTGRES_URL"] = pg_url = postgres_cluster.with_schema(postgres_url, schema)
    try:
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        if (run_dir / "state.json").exists():
            subprocess.run(["make", "down"], cwd=ROOT, env=env, capture_output=True, timeout=120)
        postgres_cluster.drop_schema(pg_url)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"load balancer: http://127.0.0.1:{port}" in output
    assert output.count('"instance_id":"app-') >= 3, "the /demo answers"
    assert "app-2    pid" in output and "DOWN" in output, "make status after the kill"
    assert output.count("(old one drained;") == 3, "make restart replaced every instance"
    assert "200 " * 6 in output, "no failed request after an instance was killed"
    assert '"backend_reachable":false' in output, "/readyz with Redis gone"
    assert f"3 instances sharing {pg_url}" in output, "the tests' PostgreSQL, as POSTGRES_URL says"
    assert output.count("down: nothing left running") == 3
    assert not (run_dir / "state.json").exists()
