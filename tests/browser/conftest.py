"""Browser tests: headless Debian Chromium driven by Playwright, against real uvicorn processes.

Never a downloaded browser: Chromium is the Debian package at /usr/bin/chromium (`.ci/run`
installs it); without it these tests skip, saying so.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.integration import conftest as integration
from tests.integration.conftest import ROOT, Server

# The real-process fixture of the integration layer, shared (uvicorn on a free port, stopped after).
run_server = integration.run_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
APP = "tests.browser.apps.dashboard_app:app"
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"chromium not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """A page in its own browser context, recording dialogs and uncaught script errors."""

    page: Any
    context: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"dialogs opened: {self.dialogs}"
        assert self.errors == [], f"script errors: {self.errors}"


@pytest.fixture
def open_tab(browser: Any) -> Iterator[Callable[..., Tab]]:
    """Factory: a fresh context (no cookies) and page; closed after the test, errors checked."""
    tabs: list[Tab] = []

    def factory(base_url: str | None = None) -> Tab:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=base_url)
        context.set_default_timeout(10_000)
        page = context.new_page()
        tab = Tab(page, context)

        def on_dialog(dialog: Any) -> None:
            tab.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: tab.errors.append(str(error)))
        tabs.append(tab)
        return tab

    yield factory
    for tab in tabs:
        tab.context.close()
    for tab in tabs:
        tab.assert_clean()


@dataclass
class Instance:
    """One instance of the dashboard app; ``enqueue`` starts a task through it."""

    server: Server
    name: str

    @property
    def url(self) -> str:
        return self.server.url

    def enqueue(self, func: str, *args: Any, **kwargs: Any) -> str:
        response = httpx.post(f"{self.url}/enqueue/{func}", json={"args": args, "kwargs": kwargs})
        assert response.status_code == 200, response.text
        task_id: str = response.json()["task_id"]
        return task_id

    def wait_finished(self, task_id: str, timeout: float = 10.0, **headers: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = httpx.get(f"{self.url}/tasks/{task_id}", headers=headers)
            if response.status_code == 200 and response.json()["status"] in (
                "success",
                "failed",
                "interrupted",
                "cancelled",
            ):
                body: dict[str, Any] = response.json()
                return body
            time.sleep(0.02)
        raise AssertionError(f"task {task_id} did not finish on {self.name} within {timeout}s")


@pytest.fixture
def start_instance(run_server: Callable[..., Server], tmp_path: Path) -> Callable[..., Instance]:
    """Factory: ``start_instance("web-1", db=..., token=..., extra_args=[...])``."""

    def start(
        name: str,
        *,
        db: Path | None = None,
        token: str | None = None,
        extra_args: list[str] | None = None,
        schedule: bool = False,
    ) -> Instance:
        env = {"TEST_INSTANCE_ID": name, "TEST_HEARTBEAT": "2"}
        if schedule:
            env["TEST_SCHEDULE"] = "1"
        if db is not None:
            env["TEST_DB"] = str(db)
        if token is not None:
            env["TEST_ADMIN_TOKEN"] = token
        server = run_server(APP, env=env, extra_args=extra_args or [])
        return Instance(server, name)

    return start


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Factory: a real nginx on a free port proxying ``prefix`` round-robin to the instances."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.skip("nginx not installed")
    procs: list[subprocess.Popen[bytes]] = []

    def start(instances: list[Instance], prefix: str) -> str:
        port = free_port()
        home = tmp_path / f"nginx-{port}"
        home.mkdir()
        servers = "\n".join(f"server {i.url.removeprefix('http://')};" for i in instances)
        config = NGINX_CONFIG.format(port=port, servers=servers, prefix=prefix)
        (home / "nginx.conf").write_text(config)
        with (home / "nginx.log").open("wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [binary, "-p", f"{home}/", "-c", "nginx.conf", "-e", "stderr", "-g", "daemon off;"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}{prefix}/healthz", timeout=0.5).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"nginx did not start:\n{(home / 'nginx.log').read_text()}")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


# Round-robin over the instances under a path prefix the proxy strips, as a site that mounts the
# app at /app would; the instances run with `--root-path /app` so their URLs include it.
NGINX_CONFIG = """
pid nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path tmp-body;
    proxy_temp_path tmp-proxy;
    fastcgi_temp_path tmp-fastcgi;
    uwsgi_temp_path tmp-uwsgi;
    scgi_temp_path tmp-scgi;
    upstream instances {{
        {servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        location {prefix}/tasks/stream {{
            proxy_pass http://instances/tasks/stream;
            proxy_read_timeout 1h;
        }}
        location {prefix}/ {{
            proxy_pass http://instances/;
        }}
    }}
}}
"""
