"""TaskAdmin: mounts the API, the health endpoints and the lifecycle hooks on an app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount

from taskflow.background import TasksMiddleware, install
from taskflow.dashboard import build_dashboard_router
from taskflow.dashboard.hub import StreamHub
from taskflow.dashboard.stream import build_stream_router
from taskflow.manager import TaskManager
from taskflow.web.api import build_router
from taskflow.web.auth import AdminAuth, Revocations
from taskflow.web.headers import AdminHeaders
from taskflow.web.routing import RouteGate

logger = logging.getLogger("taskflow.web.auth")

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


class TaskAdmin:
    """Wire a :class:`TaskManager` into a FastAPI app.

    * registers startup and shutdown on the app itself (wrapping any ``lifespan=`` the app has),
      so no lifespan function is needed;
    * mounts the JSON API under ``path`` and ``GET /healthz`` / ``GET /readyz`` on the app;
    * with ``dashboard`` (default), the live dashboard at ``{path}/dashboard``, its event stream
      at ``{path}/stream`` (a heartbeat every ``stream_heartbeat`` seconds) and ``{path}/login``;
    * with ``admin_token``, the API, the dashboard and the stream require it (bearer token or
      the login form's session cookie, see :mod:`taskflow.web.auth`); the health endpoints stay
      open. Without one, a warning at startup says that everything under ``path`` is open.
    * every response under ``path`` and of the health endpoints says ``no-store`` and
      ``nosniff`` (:mod:`taskflow.web.headers`): they carry arguments and tracebacks.
    * with ``auto_install`` (default), routes that declare ``background_tasks: BackgroundTasks``
      get a managed instance whose ``add_task`` returns the task id.
    """

    def __init__(
        self,
        app: FastAPI,
        task_manager: TaskManager,
        path: str = "/tasks",
        display_func_args: bool = False,
        auto_install: bool = True,
        health_endpoints: bool = True,
        admin_token: str | None = None,
        dashboard: bool = True,
        stream_heartbeat: float = 15.0,
    ) -> None:
        self.app = app
        self.manager = task_manager
        self.path = "/" + path.strip("/")
        # Logouts are stored in the manager's backend, so they end the session on every instance.
        self.auth = AdminAuth(admin_token, revocations=Revocations(task_manager.backend))
        if display_func_args:
            task_manager.display_func_args = True
        self.stream_hub = StreamHub(task_manager)
        routes = self._admin_routes(task_manager, dashboard, stream_heartbeat)
        exact = [self.path]
        if health_endpoints:
            health = self._health_routes()
            routes += health
            exact += [route.path for route in health]
        # One gate in the place the routes had: the app's routes added after it pay one string
        # check for all of them (routes added before it still match first).
        app.router.routes.append(RouteGate(self.path, exact, routes))
        app.add_middleware(AdminHeaders, prefix=self.path, exact=exact)
        if auto_install:
            install()
        # Also without auto_install: Depends(task_manager.get_tasks) relies on it for durable
        # acceptance and for the tasks of a request that raised.
        app.add_middleware(TasksMiddleware, acceptor=task_manager.acceptor, inject=auto_install)
        app.router.lifespan_context = self._wrap_lifespan(app.router.lifespan_context)

    def _admin_routes(
        self, manager: TaskManager, dashboard: bool, stream_heartbeat: float
    ) -> list[BaseRoute]:
        """The listing at ``path`` and a Mount with everything below it."""
        guarded = [Depends(self.auth.guard)]
        api = build_router(manager, root="/")
        admin = _admin_router(
            manager,
            api,
            self.auth,
            self.stream_hub,
            self.path,
            dashboard,
            stream_heartbeat,
            prefix="",
        )
        listing = next(r for r in api.routes if isinstance(r, APIRoute) and r.path == "/")
        # A mount is invisible to OpenAPI: the same routes are appended after the app's own
        # routes at startup, where the gate always matches first, so they only document.
        self._document = [build_router(manager)]
        if dashboard:
            stream = build_stream_router(self.stream_hub, self.auth, heartbeat=stream_heartbeat)
            self._document.append(stream)
        self._guarded = guarded
        return [
            APIRoute(
                self.path,
                listing.endpoint,
                methods=["GET"],
                dependencies=guarded,
                include_in_schema=False,
            ),
            Mount(self.path, admin, name="taskflow"),
        ]

    def _add_documentation(self, app: Any) -> None:
        if self._document:
            for router in self._document:
                app.include_router(router, prefix=self.path, dependencies=self._guarded)
            self._document = []
            app.openapi_schema = None

    def _wrap_lifespan(self, inner: Lifespan) -> Lifespan:
        manager = self.manager
        auth, path = self.auth, self.path

        # Our hooks wrap the app's own lifespan: tasks can be enqueued during its startup, and
        # its shutdown code runs before the drain and the final flush.
        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            if not auth.enabled:
                logger.warning(
                    "taskflow: no admin token is set, so the dashboard and the API under %s are "
                    "open to anyone who can reach this server; set TASKFLOW_ADMIN_TOKEN (or "
                    "TaskAdmin(admin_token=...))",
                    path,
                )
            self._add_documentation(app)
            await manager.start()
            try:
                async with inner(app) as state:
                    yield state
            finally:
                await manager.stop()

        return lifespan

    def _health_routes(self) -> list[APIRoute]:
        manager = self.manager
        health = APIRouter()

        @health.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            # Liveness only: the process answers. Never checks the backend, so an outage of the
            # shared store never gets every instance restarted at once.
            return {"status": "ok", "instance_id": manager.instance_id}

        @health.get("/readyz", include_in_schema=False)
        async def readyz() -> JSONResponse:
            body = manager.readiness()
            return JSONResponse(body, status_code=200 if body["ready"] else 503)

        return [route for route in health.routes if isinstance(route, APIRoute)]


def admin_router(
    task_manager: TaskManager,
    *,
    path: str = "/tasks",
    admin_token: str | None = None,
    dashboard: bool = True,
    stream_heartbeat: float = 15.0,
) -> APIRouter:
    """The API (and the dashboard, its stream and login) under ``path`` as a router, for the
    conventional spelling::

        app = FastAPI(lifespan=task_manager.lifespan)
        app.include_router(admin_router(task_manager))

    What
    :class:`TaskAdmin` adds besides is not here: the health endpoints, the response headers,
    and the middleware that gives ``background_tasks: BackgroundTasks`` parameters ids and
    holds responses until their tasks are stored; use ``Depends(task_manager.get_tasks)``.
    """
    auth = AdminAuth(admin_token, revocations=Revocations(task_manager.backend))
    path = "/" + path.strip("/")
    api = build_router(task_manager)
    hub = StreamHub(task_manager)
    return _admin_router(
        task_manager, api, auth, hub, path, dashboard, stream_heartbeat, prefix=path
    )


def _admin_router(
    manager: TaskManager,
    api: APIRouter,
    auth: AdminAuth,
    hub: StreamHub,
    path: str,
    dashboard: bool,
    stream_heartbeat: float,
    *,
    prefix: str,
) -> APIRouter:
    """The admin routes (the dashboard's, then ``api``) at ``prefix``, guarded by ``auth``;
    the dashboard's links point below ``path``."""
    guarded = [Depends(auth.guard)]
    admin = APIRouter()
    if dashboard:
        # Before the API routes, whose GET /{task_id} would match these paths too.
        admin.include_router(build_dashboard_router(auth, path, manager), prefix=prefix)
        stream = build_stream_router(hub, auth, heartbeat=stream_heartbeat)
        admin.include_router(stream, prefix=prefix, dependencies=guarded)
    admin.include_router(api, prefix=prefix, dependencies=guarded)
    return admin
