"""Images for the Compose tests, made without any image registry.

* The base: a minimal Debian of this machine's release made with debootstrap from its own apt
  mirror, holding python3 (with venv), nginx and redis-server, imported with `docker import`.
  It stands in for python:3.11-slim (BASE_IMAGE), nginx (NGINX_IMAGE) and redis (REDIS_IMAGE).
* The app: deploy/Dockerfile built on that base, offline, from a wheelhouse of the package's
  dependencies that pip downloads on the host for the base image's exact Python.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from tests.deploy.deploy_files import DEPLOY, ROOT

BASE_IMAGE = "taskflow-test-base:bookworm"
APP_IMAGE = "taskflow-kit:compose-test"
#: What the base holds besides Debian's minimal set.
BASE_PACKAGES = "python3,python3-venv,nginx,redis-server"
_MISSING = re.compile(r"No matching distribution found for (\S+)")


def docker(*args: str, timeout: float = 120, check: bool = True, stderr: bool = False) -> str:
    """stdout of ``docker *args`` (with stderr after it when asked: `docker logs` uses both)."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return (result.stdout + result.stderr if stderr else result.stdout).strip()


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _apt_source() -> tuple[str, str | None]:
    """This machine's Debian release and its apt mirror (None: debootstrap's own default)."""
    release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    suite = release["VERSION_CODENAME"].strip('"')
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    mirror = None
    if sources.exists():
        uris = re.findall(r"^URIs:\s*(\S+)", sources.read_text(), re.MULTILINE)
        mirror = next((u for u in uris if not u.rstrip("/").endswith("-security")), None)
    return suite, mirror


def ensure_base_image(workdir: Path) -> str:
    """The base image; made anew in CI (CI=true), reused from an earlier run elsewhere."""
    exists = docker("image", "inspect", BASE_IMAGE, check=False) != "[]"
    if exists and not os.environ.get("CI"):
        return BASE_IMAGE
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    suite, mirror = _apt_source()
    rootfs = workdir / "rootfs"
    argv = [debootstrap, "--variant=minbase", f"--include={BASE_PACKAGES}", suite, str(rootfs)]
    subprocess.run(
        [*argv, *([mirror] if mirror else [])], check=True, capture_output=True, timeout=600
    )
    # tar's own stream: device nodes and ownership as debootstrap made them.
    command = f"tar -C {shlex.quote(str(rootfs))} -c . | docker import - {BASE_IMAGE}"
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True, capture_output=True)
    shutil.rmtree(rootfs, ignore_errors=True)
    return BASE_IMAGE


def _pip(*args: str) -> None:
    argv = [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"]
    subprocess.run(argv, check=True, capture_output=True, timeout=600)


def build_app_image(base: str, workdir: Path) -> str:
    """deploy/Dockerfile on ``base``, installing only from a wheelhouse in the build context."""
    python = docker("run", "--rm", "--network=none", base, "python3", "-c",
                    "import platform; print(platform.python_version())")  # fmt: skip
    # The wheelhouse must be inside the build context (deploy/wheels/ ignores everything).
    wheelhouse = DEPLOY / "wheels" / f"pytest-{uuid.uuid4().hex[:8]}"
    project = workdir / "project"
    try:
        _pip("wheel", "--no-deps", "--wheel-dir", str(project), str(ROOT))
        (built,) = project.glob("taskflow_kit-*.whl")
        wanted = [f"{built}[redis,server]", "setuptools>=68", "wheel"]
        for _attempt in range(5):
            # --python-version sets python_version but not python_full_version for markers
            # (redis needs async-timeout below 3.11.3): what the build then misses is added.
            _pip("download", "--only-binary=:all:", f"--python-version={python}",
                 "--dest", str(wheelhouse), *wanted)  # fmt: skip
            result = subprocess.run(
                ["docker", "build", "--force-rm", "--file", str(DEPLOY / "Dockerfile"),
                 f"--build-arg=BASE_IMAGE={base}",
                 f"--build-arg=WHEELHOUSE={wheelhouse.relative_to(ROOT)}",
                 "--tag", APP_IMAGE, str(ROOT)],
                env={**os.environ, "DOCKER_BUILDKIT": "0"},  # the classic builder: no buildx here
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            if result.returncode == 0:
                return APP_IMAGE
            wanted = [m.rstrip(";") for m in _MISSING.findall(result.stdout + result.stderr)]
            if not wanted:
                raise RuntimeError(f"docker build failed:\n{result.stdout}{result.stderr}")
        raise RuntimeError(f"wheelhouse still incomplete after 5 rounds:\n{result.stderr}")
    finally:
        shutil.rmtree(wheelhouse, ignore_errors=True)
