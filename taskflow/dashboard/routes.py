"""The dashboard page, its static assets, and the login form (``{path}/dashboard``, ``/login``)."""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from taskflow.backends.base import BackendError
from taskflow.web import audit
from taskflow.web.auth import AdminAuth, Session, TooManyAttempts, client_address, cross_site

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

logger = logging.getLogger("taskflow.web.auth")

#: Files served under ``{path}/dashboard/``, with their media types (nothing else is).
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "control.js": "text/javascript; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
    "schedules.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "admin.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
#: Sent with the HTML pages: scripts, styles and connections from this origin only, no framing.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: Largest login form body accepted (bytes).
MAX_LOGIN_BODY = 4096
#: Pause before answering a wrong token: slows guessing without holding a thread.
FAILED_LOGIN_DELAY = 0.5


@cache
def _read(name: str) -> bytes:
    return (resources.files("taskflow.dashboard") / "static" / name).read_bytes()


def _render(name: str, **values: str) -> str:
    text = _read(name).decode()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return text


def build_dashboard_router(
    auth: AdminAuth, path: str, manager: TaskManager | None = None
) -> APIRouter:
    """Routes for ``path`` (the admin prefix, e.g. ``/tasks``); URLs include the root path.
    With ``manager``, logins and logouts go to its audit trail."""
    pages = DashboardPages(auth, path, manager)
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/dashboard", pages.dashboard, methods=["GET"])
    router.add_api_route("/dashboard/{asset}", pages.asset, methods=["GET"])
    router.add_api_route("/login", pages.login_form, methods=["GET"])
    router.add_api_route("/login", pages.login, methods=["POST"])
    router.add_api_route(
        "/logout", pages.logout, methods=["POST"], dependencies=[Depends(auth.guard)]
    )
    return router


class DashboardPages:
    def __init__(self, auth: AdminAuth, path: str, manager: TaskManager | None = None) -> None:
        self.auth = auth
        self.path = path
        self.manager = manager

    def base(self, request: Request) -> str:
        # Behind a proxy under a prefix (uvicorn --root-path), every URL the page uses has it.
        # Inside TaskAdmin's mount, root_path already ends with the mount path; app_root_path
        # is the server's own prefix.
        root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
        return str(root).rstrip("/") + self.path

    def _to(self, request: Request, page: str) -> RedirectResponse:
        return RedirectResponse(f"{self.base(request)}/{page}", status_code=303)

    def _login_page(self, request: Request, error: str = "", status: int = 200) -> HTMLResponse:
        body = _render("login.html", base=self.base(request), error=error)
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)

    def _too_many(self, request: Request, exc: TooManyAttempts) -> HTMLResponse:
        message = f"Too many wrong tokens. Try again in {exc.retry_after} s."
        page = self._login_page(request, message, 429)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page

    async def dashboard(self, request: Request) -> Response:
        auth, csrf = self.auth, ""
        if auth.enabled:
            # The same test as the login form's, so the two never send a browser back and forth.
            try:
                credential = await auth.credential(request)
            except TooManyAttempts as exc:
                return self._too_many(request, exc)
            if credential is None:
                return self._to(request, "login")
            if isinstance(credential, Session):
                csrf = auth.csrf_token(credential.value)
        body = _render(
            "index.html",
            base=self.base(request),
            csrf=csrf,
            auth="on" if auth.enabled else "off",
        )
        return HTMLResponse(body, headers=PAGE_HEADERS)

    async def asset(self, asset: str, request: Request) -> Response:
        # Code and styles only, no data: served without a login so the login page can use them.
        if asset not in ASSETS:
            raise HTTPException(404, f"no dashboard file {asset!r}")
        body = _read(asset)
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=ASSETS[asset], headers=headers)

    async def login_form(self, request: Request) -> Response:
        if not self.auth.enabled:
            return self._to(request, "dashboard")
        try:
            credential = await self.auth.credential(request)
        except TooManyAttempts as exc:
            return self._too_many(request, exc)
        if credential is not None:
            return self._to(request, "dashboard")
        return self._login_page(request)

    async def login(self, request: Request) -> Response:
        if not self.auth.enabled:
            return self._to(request, "dashboard")
        if cross_site(request):
            return self._login_page(request, "This sign-in came from another site.", 403)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BODY:
                return self._login_page(request, "That request was too large.", 413)
        form = parse_qs(body.decode("utf-8", "replace"))
        try:
            right = self.auth.attempt(request, form.get("token", [""])[0])
        except TooManyAttempts as exc:
            return self._too_many(request, exc)
        if not right:
            logger.warning("taskflow dashboard: failed login from %s", client_address(request))
            await asyncio.sleep(FAILED_LOGIN_DELAY)  # a pause that holds no thread
            return self._login_page(request, "That token is not right.", 401)
        response = self._to(request, "dashboard")
        session = self.auth.start_session(response, request, self.base(request))
        if self.manager is not None:
            await audit.record(self.manager, request, "login", "dashboard", credential=session)
        return response

    async def logout(self, request: Request) -> Response:
        response = Response(status_code=204)
        try:
            await self.auth.end_session(response, request, self.base(request))
        except BackendError as exc:
            logger.warning("taskflow dashboard: a logout could not be stored: %s", exc)
            detail = (
                "the session could not be ended on every instance (the history backend does "
                "not answer); it is ended on this one. Try again."
            )
            return JSONResponse({"detail": detail}, status_code=503)
        if self.manager is not None:
            await audit.record(self.manager, request, "logout", "dashboard")
        return response
