"""Ports, variable names, health paths and grace periods agree across every part of the kit.

Reads the real files: deploy/app.py (its routes), taskflow/settings.py, deploy/gunicorn.conf.py
(executed as gunicorn does), nginx/ (parsed, includes resolved, as the runner lays it out), the
runner and the Makefile.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

import pytest

from deploy import nginx_config, runner, stack
from taskflow.settings import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"

# -- a small nginx config reader -----------------------------------------------------------------

Directive = tuple[str, list[str], list[Any]]  # name, arguments, block (nested directives)
_TOKEN = re.compile(r"""#[^\n]*|"(?:\\.|[^"])*"|'(?:\\.|[^'])*'|[{};]|[^\s{};"'#]+""")


def parse_nginx(path: Path, conf_dir: Path) -> list[Directive]:
    """Directives of ``path``, ``include`` resolved relative to ``conf_dir`` (as nginx does)."""
    tokens = [t for t in _TOKEN.findall(path.read_text()) if not t.startswith("#")]
    tokens = [t[1:-1] if t[0] in "\"'" else t for t in tokens]
    stack_: list[list[Directive]] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            if words[0] == "include":
                for included in sorted(conf_dir.glob(words[1])):
                    stack_[-1].extend(parse_nginx(included, conf_dir))
            else:
                stack_[-1].append((words[0], words[1:], []))
            words = []
        elif token == "{":
            block: list[Directive] = []
            stack_[-1].append((words[0], words[1:], block))
            stack_.append(block)
            words = []
        elif token == "}":
            stack_.pop()
        else:
            words.append(token)
    assert len(stack_) == 1 and not words, f"unbalanced braces or a missing ';' in {path}"
    return stack_[0]


def find(block: list[Directive], name: str, *args: str) -> list[Directive]:
    return [d for d in block if d[0] == name and tuple(d[1][: len(args)]) == args]


def one(block: list[Directive], name: str, *args: str) -> Directive:
    found = find(block, name, *args)
    assert len(found) == 1, f"expected one `{name} {' '.join(args)}`, found {len(found)}"
    return found[0]


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert match, value
    return int(match[1]) * units[match[2] or "s"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Directive]]:
    prefix = tmp_path_factory.mktemp("nginx")
    conf = nginx_config.render(prefix, port=18080, servers=["127.0.0.1:18001", "127.0.0.1:18002"])
    return prefix, parse_nginx(conf, prefix)


@pytest.fixture(scope="module")
def http(rendered: tuple[Path, list[Directive]]) -> list[Directive]:
    return one(rendered[1], "http")[2]


@pytest.fixture(scope="module")
def server(http: list[Directive]) -> list[Directive]:
    return one(http, "server")[2]


# -- gunicorn, executed the way gunicorn reads it ------------------------------------------------


def gunicorn_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in ("BIND", "PORT", "WEB_CONCURRENCY", "GUNICORN_CONTROL_SOCKET", "GUNICORN_PIDFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def route_paths(routes: list[Any], prefix: str = "") -> set[str]:
    """Every path an app routes, including those of routers it includes and apps it mounts."""
    paths: set[str] = set()
    for route in routes:
        path = getattr(route, "path", None)
        if path is not None:
            paths.add(prefix + path)
        # Newer FastAPI keeps an included router as one entry with its prefix beside it.
        context = getattr(route, "include_context", None)
        if context is not None:
            paths |= route_paths(context.included_router.routes, prefix + context.prefix)
        elif getattr(route, "routes", None) is not None:
            paths |= route_paths(route.routes, prefix + (path or ""))
    return paths


@pytest.fixture(scope="module")
def app_paths() -> set[str]:
    from deploy.app import app

    return route_paths(app.routes)


def makefile_default(name: str) -> str:
    match = re.search(rf"^{name} \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile sets no default for {name}"
    return match[1]


# -- the tests -----------------------------------------------------------------------------------


def test_gunicorn_defaults(monkeypatch):
    conf = gunicorn_conf(monkeypatch)
    assert conf["worker_class"] == "uvicorn_worker.UvicornWorker"
    assert conf["preload_app"] is False
    assert conf["workers"] == 2
    assert conf["bind"] == [f"0.0.0.0:{conf['DEFAULT_PORT']}"]
    assert conf["max_requests"] == 0, "recycling drops POSTs behind nginx (docs/loadtest.md)"
    assert conf["control_socket_disable"] is True, "one shared default socket path per user"
    assert conf["pidfile"] is None


def test_gunicorn_reads_its_environment(monkeypatch):
    conf = gunicorn_conf(monkeypatch, PORT="9000", WEB_CONCURRENCY="5")
    assert (conf["bind"], conf["workers"]) == (["0.0.0.0:9000"], 5)
    conf = gunicorn_conf(
        monkeypatch,
        BIND="127.0.0.1:8123",
        PORT="9000",
        GUNICORN_PIDFILE="/x/app-1.pid",
        GUNICORN_CONTROL_SOCKET="/x/app-1.ctl",
    )
    assert conf["bind"] == ["127.0.0.1:8123"]
    assert (conf["pidfile"], conf["control_socket"]) == ("/x/app-1.pid", "/x/app-1.ctl")
    assert conf["control_socket_disable"] is False


@pytest.mark.parametrize("shutdown", [None, "45", "2.5"])
def test_grace_periods_nest(monkeypatch, shutdown):
    env = {} if shutdown is None else {"TASKFLOW_SHUTDOWN_TIMEOUT": shutdown}
    conf = gunicorn_conf(monkeypatch, **env)
    drain = float(shutdown or DEFAULTS["TASKFLOW_SHUTDOWN_TIMEOUT"])
    # TASKFLOW_SHUTDOWN_TIMEOUT < gunicorn graceful_timeout < what the runner waits before SIGKILL
    assert isinstance(conf["graceful_timeout"], int)
    assert conf["graceful_timeout"] >= drain + 5
    assert conf["timeout"] >= conf["graceful_timeout"], "a recycled worker drains unwatched"
    assert stack.instance_stop_timeout() > conf["graceful_timeout"]


def test_gunicorn_keepalive_outlasts_nginx_upstream_keepalive(monkeypatch, http):
    upstream = one(http, "upstream", "taskflow_app")[2]
    nginx_idle = seconds(one(upstream, "keepalive_timeout")[1][0])
    assert gunicorn_conf(monkeypatch)["keepalive"] > nginx_idle


def test_ports_agree(monkeypatch, server):
    app_port = gunicorn_conf(monkeypatch)["DEFAULT_PORT"]
    assert makefile_default("PORT") == str(app_port)
    repo_upstream = parse_nginx(ROOT / "nginx/conf.d/upstream.conf", ROOT / "nginx")
    assert [d[1][0].rsplit(":", 1)[1] for d in repo_upstream] == [str(app_port)]
    repo_listen = parse_nginx(ROOT / "nginx/conf.d/listen.conf", ROOT / "nginx")
    assert repo_listen == [("listen", [str(runner.DEFAULT_LB_PORT)], [])]
    assert makefile_default("LB_PORT") == str(runner.DEFAULT_LB_PORT)
    # The runner's own rendering: its loopback address and the instances it was given.
    assert one(server, "listen")[1] == ["127.0.0.1:18080"]


def test_upstream_passive_health_checks_agree(http):
    upstream = one(http, "upstream", "taskflow_app")[2]
    assert find(upstream, "zone") and find(upstream, "keepalive")
    expected = [f"max_fails={nginx_config.MAX_FAILS}", f"fail_timeout={nginx_config.FAIL_TIMEOUT}"]
    # The runner's list: each instance as a primary with the checks, then again as a backup
    # that is never marked down (tried only when every primary is).
    servers = find(upstream, "server")
    primaries = [d[1][0] for d in servers if d[1][1:] == expected]
    backups = [d[1][0] for d in servers if d[1][1:] == nginx_config.BACKUP.split()]
    assert primaries == backups == ["127.0.0.1:18001", "127.0.0.1:18002"]
    assert len(servers) == 4
    # The host-name templates that nginx/entrypoint.sh expands (Compose, Kubernetes), and the
    # backup lines it writes.
    for template in (
        ROOT / "nginx/conf.d/upstream.conf",
        ROOT / "k8s/components/nginx/upstream.conf",
    ):
        lines = parse_nginx(template, template.parent)
        assert lines and all(d[1][1:] == expected for d in lines), template
    entrypoint = (ROOT / "nginx/entrypoint.sh").read_text()
    assert f'backup_params="{nginx_config.BACKUP}"' in entrypoint


def test_failover_and_proxy_headers(http, server):
    assert one(http, "proxy_next_upstream")[1] == ["error", "timeout", "http_502", "http_503"]
    assert one(http, "proxy_http_version")[1] == ["1.1"]
    headers = {d[1][0]: d[1][1] for d in find(http, "proxy_set_header")}
    assert headers["Connection"] == ""
    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert headers["X-Request-ID"] == "$taskflow_request_id"
    log_format = " ".join(one(http, "log_format")[1])
    assert "$taskflow_request_id" in log_format and "$upstream_addr" in log_format
    # A location that sets any proxy_set_header loses all the inherited ones.
    for location in find(server, "location"):
        assert not find(location[2], "proxy_set_header"), location[1]


def test_health_and_stream_locations_match_the_app(http, server, app_paths):
    assert {"/healthz", "/readyz"} <= app_paths
    assert stack.READY_PATH in app_paths
    health = one(server, "location", "=", nginx_config.LB_HEALTH_PATH)
    assert nginx_config.LB_HEALTH_PATH == "/healthz"
    assert find(health[2], "return")[0][1][0] == "200"
    # Readiness is passed through, and its 503 never takes an instance out of rotation.
    readiness = one(server, "location", "=", stack.READY_PATH)
    assert "http_503" not in one(readiness[2], "proxy_next_upstream")[1]

    streams = [d for d in find(server, "location") if d[1][-1].endswith("/stream")]
    assert len(streams) == 1
    stream_path, stream = streams[0][1][-1], streams[0][2]
    assert stream_path == "/tasks/stream", "the TaskAdmin path of deploy/app.py"
    app_streams = {p for p in app_paths if p.endswith("/stream")}
    assert app_streams == {stream_path}, "nginx's SSE location must be the app's stream route"
    assert one(stream, "proxy_buffering")[1] == ["off"]
    # Long read timeouts only where streams live.
    assert seconds(one(stream, "proxy_read_timeout")[1][0]) >= 600
    assert seconds(one(http, "proxy_read_timeout")[1][0]) <= 60
    assert not find(one(server, "location", "/")[2], "proxy_read_timeout")


def test_main_config_leaves_daemon_and_user_to_the_supervisor(rendered):
    prefix, top = rendered
    assert not find(top, "daemon") and not find(top, "user")
    assert one(top, "pid")[1] == ["nginx.pid"], "relative: one pid file per prefix"
    command = nginx_config.command("nginx", prefix)
    assert command[command.index("-g") + 1].startswith("daemon off;")


def test_every_snippet_is_included_or_documented_as_optional():
    main = (ROOT / "nginx/nginx.conf").read_text()
    for snippet in sorted((ROOT / "nginx/snippets").glob("*.conf")):
        included = f"include snippets/{snippet.name};" in main
        optional = snippet.read_text().startswith("# OPTIONAL, not included")
        assert included != optional, snippet.name


def test_variable_names_are_the_contracts():
    # The app's own switches: `make run`'s seed, the schedules load test's tick.
    allowed = set(DEFAULTS) | {"TASKFLOW_DEMO_SEED", "TASKFLOW_DEMO_TICK"}
    files = [*(ROOT / "deploy").glob("*.py"), *(ROOT / "nginx").rglob("*.conf")]
    files += [ROOT / "Makefile", ROOT / "docs" / "multi-instance.md"]
    for path in files:
        used = set(re.findall(r"TASKFLOW_[A-Z_]+[A-Z]", path.read_text()))
        assert used <= allowed, f"{path.name}: unknown {sorted(used - allowed)}"
    instance_env = stack._env(Path("/r"), stack.State("sqlite", 1, 1, "sqlite:////r/t.db"), "a", 1)
    assert {k for k in instance_env if k.startswith("TASKFLOW_")} <= set(DEFAULTS)
    documented = (ROOT / "docs" / "multi-instance.md").read_text()
    assert [name for name in DEFAULTS if name not in documented] == []


def test_makefile_drives_the_runner_with_its_defaults():
    text = (ROOT / "Makefile").read_text()
    assert makefile_default("INSTANCES") == str(runner.DEFAULT_INSTANCES)
    assert makefile_default("BACKEND") in stack.BACKENDS
    up = re.search(r"^up: .*\n\t(.+)$", text, re.MULTILINE)
    assert up and "--backend $(BACKEND)" in up[1] and "--instances $(INSTANCES)" in up[1]
    run = re.search(r"^run: .*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert run and "gunicorn -c deploy/gunicorn.conf.py deploy.app:app" in run[1]
    assert "TASKFLOW_DEMO_SEED=1" in run[1]
