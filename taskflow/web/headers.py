"""AdminHeaders: ``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff`` on every
response under the admin path and on the health endpoints.

The API's answers carry task arguments, errors and tracebacks: no shared cache and no browser
disk may keep them, and no browser may guess them to be HTML. A pure ASGI middleware that only
edits the start message (BaseHTTPMiddleware would buffer the stream). It sits on the app rather
than around the admin routes because the errors Starlette's routing raises (a path under the
admin mount that no route matches, a method a route does not allow) are rendered by the app's
exception middleware, outside any route; so are the app's own handlers for 401, 403 and 422.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Added unless the response sets its own value: the dashboard's script and stylesheet keep
#: their ETag and ``no-cache`` (they hold no data, and browsers revalidate them cheaply).
DEFAULTS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))


class AdminHeaders:
    """Adds :data:`DEFAULTS` to responses for ``exact`` paths and paths below ``prefix``."""

    def __init__(self, app: ASGIApp, *, prefix: str, exact: Sequence[str]) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/") + "/"
        self.exact = frozenset(exact)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.covers(scope):
            await self.app(scope, receive, send)
            return

        async def send_with_defaults(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {bytes(name).lower() for name, _ in headers}
                headers += [(name, value) for name, value in DEFAULTS if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_defaults)

    def covers(self, scope: Scope) -> bool:
        path: str = scope["path"]
        # Under a root path (uvicorn --root-path), the path the routes see follows it.
        root: str = scope.get("root_path", "")
        if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
            path = path[len(root) :]
        return path in self.exact or path.startswith(self.prefix)
