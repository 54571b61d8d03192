"""taskflow's routes sit behind one gate: the app's own routes around them keep working, and
taskflow's paths answer as before (listing, mount, health, 405, reverse routing, root_path)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from starlette.routing import Match, Route

from taskflow import TaskAdmin, TaskManager
from taskflow.web.routing import RouteGate


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz-before")
    def before() -> dict[str, str]:
        return {"route": "before"}

    TaskAdmin(app, TaskManager())

    @app.get("/tasksometimes")
    def similar_prefix() -> dict[str, str]:
        return {"route": "tasksometimes"}

    @app.get("/items/{item}")
    def item(item: str) -> dict[str, str]:
        return {"route": "items", "item": item}

    return app


async def test_routes_on_both_sides_of_the_gate(make_client) -> None:
    async for client in make_client(_app()):
        assert (await client.get("/healthz-before")).json() == {"route": "before"}
        assert (await client.get("/tasksometimes")).json() == {"route": "tasksometimes"}
        assert (await client.get("/items/7")).json() == {"route": "items", "item": "7"}
        assert (await client.get("/tasks")).json()["items"] == []
        assert (await client.get("/tasks/metrics")).status_code == 200
        assert (await client.get("/tasks/no-such-task")).status_code == 404
        assert (await client.get("/healthz")).json()["status"] == "ok"
        assert (await client.get("/readyz")).status_code == 200
        # A path taskflow knows with a method it does not: 405, not the app's 404.
        assert (await client.post("/healthz")).status_code == 405
        assert (await client.get("/nothing-here")).status_code == 404


async def test_behind_a_root_path(make_client) -> None:
    app = _app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/api/tasks")).status_code == 200
            assert (await client.get("/api/healthz")).json()["status"] == "ok"
            assert (await client.get("/api/items/x")).json()["item"] == "x"


def test_reverse_routing_reaches_inner_routes() -> None:
    app = _app()
    assert app.url_path_for("healthz") == "/healthz"
    assert app.url_path_for("taskflow", path="/metrics") == "/tasks/metrics"


def test_other_paths_never_reach_the_inner_routes() -> None:
    # An inner route that would match anything shows whether the gate consulted it.
    catch_all = Route("/{anything:path}", lambda request: None)
    gate = RouteGate("/tasks", ["/tasks", "/healthz"], [catch_all])
    for path in ("/items/1", "/task", "/tasksometimes", "/healthzz"):
        scope = {"type": "http", "path": path, "root_path": "", "method": "GET"}
        assert gate.matches(scope) == (Match.NONE, {})
    for path in ("/tasks", "/tasks/x", "/healthz"):
        scope = {"type": "http", "path": path, "root_path": "", "method": "GET"}
        assert gate.matches(scope)[0] is Match.FULL
    assert gate.matches({"type": "lifespan"}) == (Match.NONE, {})
