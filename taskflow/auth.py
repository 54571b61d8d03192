"""Admin authentication for the API, the dashboard and the stream.

With an admin token set, a request is let in when it carries

* ``Authorization: Bearer <token>`` (API clients), or
* a session cookie issued by the login form (browsers). The cookie holds an issue time and an
  HMAC of it keyed by the token, never the token itself, so every instance that knows the token
  accepts a session made by any other (round-robin load balancing needs no sticky sessions), and
  changing the token ends every session.

Requests that change state and authenticate with the cookie must also send the CSRF token
(``X-CSRF-Token``, equal to the readable ``taskflow_csrf`` cookie and bound to the session by an
HMAC) and come from the same origin. Tokens are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from starlette.responses import Response

#: HttpOnly cookie holding the signed session.
SESSION_COOKIE = "taskflow_session"
#: Readable cookie holding the CSRF token the dashboard echoes in :data:`CSRF_HEADER`.
CSRF_COOKIE = "taskflow_csrf"
CSRF_HEADER = "x-csrf-token"
#: Seconds a session stays valid after login.
SESSION_MAX_AGE = 12 * 3600
#: Seconds a session's issue time may lie in the future (clock differences between instances).
CLOCK_SKEW = 60
#: Methods that change state and so need CSRF protection when a cookie authenticates them.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def cross_site(request: Request) -> bool:
    """True when a browser says the request comes from another site or origin.

    ``Sec-Fetch-Site`` is set by the browser and cannot be forged by a page; it also holds behind
    proxies that rewrite ``Host``. Without it, ``Origin`` (or ``Referer``) must name this host.
    Requests without any of them (API clients, curl) are not cross-site.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return False
    netloc = urlsplit(source).netloc.lower()
    hosts = {
        value.strip().lower()
        for name in ("host", "x-forwarded-host")
        for value in request.headers.get(name, "").split(",")
        if value.strip()
    }
    hostname = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    # A proxy may pass the host without the port (nginx's $host): then the name must match.
    return not (netloc in hosts or hostname in hosts)


class AdminAuth:
    """Checks credentials and issues the browser session. ``token=None`` leaves everything open."""

    def __init__(self, token: str | None) -> None:
        if token is not None and not token.strip():
            raise ValueError("admin_token must not be empty; pass None to leave the admin open")
        self._token = token

    @property
    def enabled(self) -> bool:
        return self._token is not None

    # -- credentials -----------------------------------------------------------------------

    def token_matches(self, given: str) -> bool:
        """Constant-time comparison (of digests, so the token's length does not leak either)."""
        if self._token is None:
            return False
        return hmac.compare_digest(_digest(given), _digest(self._token))

    def _sign(self, purpose: str, value: str) -> str:
        assert self._token is not None
        message = f"taskflow-kit|{purpose}|{value}".encode()
        return hmac.new(self._token.encode(), message, hashlib.sha256).hexdigest()

    def new_session(self, now: float | None = None) -> str:
        issued = str(int(time.time() if now is None else now))
        return f"{issued}.{self._sign('session', issued)}"

    def session_valid(self, value: str | None, now: float | None = None) -> bool:
        if self._token is None or not value:
            return False
        issued, _, signature = value.partition(".")
        if not issued.isdigit():
            return False
        age = (time.time() if now is None else now) - int(issued)
        if not -CLOCK_SKEW <= age <= SESSION_MAX_AGE:
            return False
        return hmac.compare_digest(signature.encode(), self._sign("session", issued).encode())

    def csrf_token(self, session: str) -> str:
        """The CSRF token that belongs to ``session`` (stateless: derivable on every instance)."""
        return self._sign("csrf", session)

    def authenticated(self, request: Request) -> str | None:
        """``"bearer"`` or ``"session"`` when the request proves it knows the token, else None.

        A wrong bearer token is refused even when a valid cookie comes along.
        """
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, credentials = header.partition(" ")
            ok = scheme.lower() == "bearer" and self.token_matches(credentials.strip())
            return "bearer" if ok else None
        return "session" if self.session_valid(request.cookies.get(SESSION_COOKIE)) else None

    def csrf_ok(self, request: Request) -> bool:
        session = request.cookies.get(SESSION_COOKIE, "")
        sent = request.headers.get(CSRF_HEADER, "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not (session and sent):
            return False
        expected = self.csrf_token(session).encode()
        return hmac.compare_digest(sent.encode(), cookie.encode()) and hmac.compare_digest(
            sent.encode(), expected
        )

    # -- the FastAPI dependency ------------------------------------------------------------

    async def guard(self, request: Request) -> None:
        """Dependency for the API and the stream: 401 without credentials, 403 for forgeries."""
        unsafe = request.method in UNSAFE_METHODS
        if unsafe and cross_site(request):
            raise HTTPException(403, "cross-site request refused")
        if self._token is None:
            return
        how = self.authenticated(request)
        if how is None:
            raise HTTPException(
                401,
                "authentication required: send 'Authorization: Bearer <admin token>' or log in "
                "to the dashboard",
                headers={"WWW-Authenticate": 'Bearer realm="taskflow"'},
            )
        if how == "session" and unsafe and not self.csrf_ok(request):
            raise HTTPException(403, f"missing or wrong CSRF token ({CSRF_HEADER} header)")

    # -- cookies ---------------------------------------------------------------------------

    def start_session(self, response: Response, request: Request, path: str) -> None:
        """Set the session and CSRF cookies, scoped to the admin ``path`` (root path included)."""
        session = self.new_session()
        secure = request.url.scheme == "https"
        for name, value, http_only in (
            (SESSION_COOKIE, session, True),
            (CSRF_COOKIE, self.csrf_token(session), False),
        ):
            response.set_cookie(
                name,
                value,
                max_age=SESSION_MAX_AGE,
                path=path,
                secure=secure,
                httponly=http_only,
                samesite="strict",
            )

    @staticmethod
    def end_session(response: Response, request: Request, path: str) -> None:
        secure = request.url.scheme == "https"
        for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
            response.delete_cookie(
                name, path=path, secure=secure, httponly=http_only, samesite="strict"
            )
