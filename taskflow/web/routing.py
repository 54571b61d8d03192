"""RouteGate: taskflow's routes behind one string check, so the app's own routes pay for them
once per request instead of once per route.

Starlette tries an app's routes in order, each with a regular expression. taskflow's routes
come first (TaskAdmin is set up before most apps add theirs), so every request to the app's
own endpoints used to fail four matches (the listing, the mount, /healthz, /readyz) before
reaching its route: a few percent of a small request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send


def route_path(scope: Scope) -> str:
    """The path routes match against: the request path without the app's root path (as
    Starlette's own routing computes it; its helper for this is private)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


#: Where a matched request's inner route is kept in the scope, for :meth:`RouteGate.handle`.
_ROUTE = "taskflow.route"


class RouteGate(BaseRoute):
    """Routes that only match paths equal to one of ``exact`` or below ``prefix``."""

    def __init__(self, prefix: str, exact: Sequence[str], routes: list[BaseRoute]) -> None:
        self.prefix = prefix.rstrip("/") + "/"
        self.exact = frozenset(exact)
        self.routes = routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] not in ("http", "websocket"):
            return Match.NONE, {}
        path = route_path(scope)
        if path not in self.exact and not path.startswith(self.prefix):
            return Match.NONE, {}
        partial: Scope | None = None
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return Match.FULL, {**child, _ROUTE: route}
            if match is Match.PARTIAL and partial is None:
                partial = {**child, _ROUTE: route}
        return (Match.PARTIAL, partial) if partial is not None else (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope[_ROUTE].handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        raise NoMatchFound(name, path_params)
