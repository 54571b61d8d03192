"""The dashboard page and files: served by the library, offline, text-only rendering, root path."""

from __future__ import annotations

import re
from importlib import resources

import httpx
import pytest
from fastapi import FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.dashboard.routes import ASSETS

STATIC = resources.files("taskflow.dashboard") / "static"


def client_for(app: FastAPI, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_the_dashboard_page_is_served_with_a_strict_policy():
    app = FastAPI()
    TaskAdmin(app, TaskManager())
    async with client_for(app) as client:
        page = await client.get("/tasks/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert '<script src="/tasks/dashboard/app.js" defer></script>' in page.text
    assert '<meta name="taskflow-base" content="/tasks">' in page.text
    assert '<meta name="taskflow-auth" content="off">' in page.text
    assert "{{" not in page.text


@pytest.mark.parametrize("name", sorted(ASSETS))
async def test_assets_are_served_from_the_package_with_their_types(name):
    app = FastAPI()
    TaskAdmin(app, TaskManager())
    async with client_for(app) as client:
        response = await client.get(f"/tasks/dashboard/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == ASSETS[name].split(";")[0]
        assert response.content == (STATIC / name).read_bytes()
        again = await client.get(
            f"/tasks/dashboard/{name}", headers={"If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304


@pytest.mark.parametrize("path", ["login.html", "..%2Fauth.py", "%2e%2e%2f__init__.py", "nope.js"])
async def test_nothing_but_the_listed_assets_is_served(path):
    app = FastAPI()
    TaskAdmin(app, TaskManager())
    async with client_for(app) as client:
        assert (await client.get(f"/tasks/dashboard/{path}")).status_code == 404


def test_the_static_files_load_nothing_from_elsewhere():
    for name in ("index.html", "login.html", *sorted(ASSETS)):
        text = (STATIC / name).read_text()
        urls = re.findall(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", text, re.IGNORECASE)
        urls = [u for u in urls if not u.endswith("//www.w3.org")]  # the SVG namespace name
        assert urls == [], f"{name} refers to {urls}"
        assert "@import" not in text


@pytest.mark.parametrize("name", ["app.js", "admin.js"])
def test_the_scripts_render_data_as_text_only(name):
    lines = (STATIC / name).read_text().splitlines()
    script = "\n".join(line for line in lines if not line.lstrip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "textContent" in script


async def test_urls_carry_the_root_path_behind_a_prefix():
    app = FastAPI()
    TaskAdmin(app, TaskManager(), admin_token="tok")
    async with client_for(app, root_path="/app") as client:
        redirect = await client.get("/app/tasks/dashboard")
        assert redirect.status_code == 303
        assert redirect.headers["location"] == "/app/tasks/login"
        form = await client.get("/app/tasks/login")
        assert 'action="/app/tasks/login"' in form.text
        assert 'href="/app/tasks/dashboard/style.css"' in form.text
        login = await client.post("/app/tasks/login", data={"token": "tok"})
        assert login.headers["location"] == "/app/tasks/dashboard"
        assert all("Path=/app/tasks" in c for c in login.headers.get_list("set-cookie"))
        page = await client.get("/app/tasks/dashboard")
        assert page.status_code == 200
        assert '<meta name="taskflow-base" content="/app/tasks">' in page.text
        assert 'src="/app/tasks/dashboard/app.js"' in page.text


async def test_a_custom_admin_path_moves_the_dashboard_too():
    app = FastAPI()
    TaskAdmin(app, TaskManager(), path="/admin/jobs")
    async with client_for(app) as client:
        page = await client.get("/admin/jobs/dashboard")
        assert page.status_code == 200
        assert '<meta name="taskflow-base" content="/admin/jobs">' in page.text
        assert (await client.get("/admin/jobs/dashboard/app.js")).status_code == 200


async def test_the_dashboard_can_be_left_out():
    app = FastAPI()
    TaskAdmin(app, TaskManager(), dashboard=False)
    async with client_for(app) as client:
        assert (await client.get("/tasks")).status_code == 200
        for path in ("/tasks/dashboard", "/tasks/stream", "/tasks/login"):
            assert (await client.get(path)).status_code == 404
