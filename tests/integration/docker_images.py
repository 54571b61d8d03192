"""Images for the Compose tests, made without any image registry, the way the docs make them.

* The base: deploy/offline_images.py's (debootstrap, `docker import`): python3, nginx,
  redis-server and PostgreSQL on a minimal Debian of this machine's release. It stands in for
  python:3.11-slim (BASE_IMAGE), nginx (NGINX_IMAGE), redis (REDIS_IMAGE) and postgres
  (POSTGRES_IMAGE). Made anew once per session in CI (CI=true), reused from an earlier run
  elsewhere.
* The app: deploy/Dockerfile built on that base, offline, from a wheelhouse that the base
  image's own pip filled (deploy/offline_images.py again), in a folder of the build context.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import uuid

from deploy import offline_images
from tests.deploy.deploy_files import DEPLOY, ROOT

APP_IMAGE = "taskflow-kit:compose-test"


#: The classic builder: this engine has no buildx (and an image pulled for BuildKit's frontend
#: would need a registry).
CLASSIC_BUILDER = {**os.environ, "DOCKER_BUILDKIT": "0"}


def docker(*args: str, timeout: float = 120, check: bool = True, stderr: bool = False) -> str:
    """stdout of ``docker *args`` (with stderr after it when asked: `docker logs` uses both)."""
    env = CLASSIC_BUILDER if args[0] == "build" else None
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
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


@functools.cache
def ensure_base_image() -> str:
    """The offline base image: made anew in CI (once per session), reused elsewhere."""
    return offline_images.build_base(rebuild=bool(os.environ.get("CI")))


@functools.cache
def build_app_image() -> str:
    """deploy/Dockerfile on the base, installing only from a wheelhouse in the build context."""
    base = ensure_base_image()
    wheelhouse = DEPLOY / "wheels" / f"pytest-{uuid.uuid4().hex[:8]}"
    try:
        offline_images.fill_wheelhouse(base, wheelhouse)
        docker(
            "build", "--force-rm", "--file", str(DEPLOY / "Dockerfile"),
            f"--build-arg=BASE_IMAGE={base}",
            f"--build-arg=WHEELHOUSE={wheelhouse.relative_to(ROOT)}",
            "--tag", APP_IMAGE, str(ROOT),
            timeout=600,
        )  # fmt: skip
    finally:
        shutil.rmtree(wheelhouse, ignore_errors=True)
    return APP_IMAGE


def new_version(image: str) -> str:
    """Tag ``image`` anew as a different image (a label more): what `docker compose build`
    after a code change does to the tag. Returns the new image's id."""
    dockerfile = f"FROM {image}\nLABEL org.taskflow.test.version={uuid.uuid4().hex}\n"
    result = subprocess.run(
        ["docker", "build", "--quiet", "--tag", image, "-"],
        input=dockerfile, capture_output=True, text=True, timeout=120, env=CLASSIC_BUILDER,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"docker build failed:\n{result.stdout}{result.stderr}")
    return docker("image", "inspect", "--format", "{{.Id}}", image)
