"""AdminAuth: who may use the API, the dashboard and the stream, and the FastAPI dependency that
says so.

With an admin token set, a request is let in when it carries

* ``Authorization: Bearer <token>`` (API clients). Only the ``Bearer`` scheme is a token: a
  header with any other scheme (a proxy's own Basic auth) is ignored and the cookie decides;
* or a session cookie issued by the login form (browsers; see :mod:`taskflow.web.auth.sessions`)
  that has not expired and was not ended by a logout on any instance
  (:mod:`taskflow.web.auth.revocation`).

Failed attempts at the token are limited per client address and in total
(:mod:`taskflow.web.auth.limits`). Requests that change state and authenticate with the cookie must
also send the CSRF token (``X-CSRF-Token``, equal to the readable ``taskflow_csrf`` cookie and
bound to the session by an HMAC) and come from the same origin. Tokens are compared in constant
time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from starlette.responses import Response

from taskflow.web.auth.limits import LoginLimiter, TooManyAttempts
from taskflow.web.auth.revocation import Revocations
from taskflow.web.auth.sessions import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    Session,
    SessionSigner,
)

#: Methods that change state and so need CSRF protection when a cookie authenticates them.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: How a request proved it knows the token: the bearer header, or its session.
BEARER: Literal["bearer"] = "bearer"
Credential = Session | Literal["bearer"]
#: Where :meth:`AdminAuth.guard` leaves the request's credential (``request.state``), for the
#: audit trail to name who acted (see :mod:`taskflow.web.audit`).
CREDENTIAL_STATE = "taskflow_credential"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def client_address(request: Request) -> str:
    """The client's address as the server reports it (behind a trusted proxy: the real one)."""
    return request.client.host if request.client else "unknown"


def cross_site(request: Request) -> bool:
    """True when a browser says the request comes from another site or origin.

    ``Sec-Fetch-Site`` is set by the browser and cannot be forged by a page; it also holds behind
    proxies that rewrite ``Host``. Without it, ``Origin`` (or ``Referer``) must name this host;
    one that is not even a URL counts as another site. Requests without any of them (API
    clients, curl) are not cross-site.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return False
    try:
        netloc = urlsplit(source).netloc.lower()
    except ValueError:  # e.g. "http://[": no browser sends that
        return True
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
    """Checks credentials and issues the browser session. ``token=None`` leaves everything open.

    The session key is derived from the token here, once (a deliberately slow KDF). Without
    ``revocations``, logouts are remembered in this process only; TaskAdmin passes the
    manager's backend so that they reach every instance.
    """

    def __init__(
        self,
        token: str | None,
        *,
        revocations: Revocations | None = None,
        limiter: LoginLimiter | None = None,
    ) -> None:
        if token is not None and not token.strip():
            raise ValueError("admin_token must not be empty; pass None to leave the admin open")
        self._token = token
        self._signer = SessionSigner(token) if token is not None else None
        self.revocations = revocations if revocations is not None else Revocations(None)
        self.limiter = limiter if limiter is not None else LoginLimiter()

    @property
    def enabled(self) -> bool:
        return self._token is not None

    # -- credentials -----------------------------------------------------------------------

    def token_matches(self, given: str) -> bool:
        """Constant-time comparison (of digests, so the token's length does not leak either)."""
        if self._token is None:
            return False
        return hmac.compare_digest(_digest(given), _digest(self._token))

    def attempt(self, request: Request, given: str) -> bool:
        """Check a token a client presents, counting a failure against its address.

        Raises :class:`TooManyAttempts` while the address, or everyone, is over the limit: then
        the token is not compared at all.
        """
        address = client_address(request)
        self.limiter.check(address)
        if self.token_matches(given):
            return True
        self.limiter.failed(address)
        return False

    def new_session(self, now: float | None = None) -> str:
        """A new session cookie value."""
        assert self._signer is not None
        return self._signer.issue(now)

    async def session(self, value: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value when it is signed, current and not revoked."""
        if self._signer is None:
            return None
        session = self._signer.parse(value, now)
        if session is None or await self.revocations.revoked(session):
            return None
        return session

    async def still_valid(self, credential: Credential | None) -> bool:
        """For long requests (the stream): a session must not have expired or been revoked
        since the request began; a bearer token (or an open admin) stays valid."""
        if not isinstance(credential, Session):
            return True
        return await self.session(credential.value) is not None

    def csrf_token(self, session_value: str) -> str:
        """The CSRF token that belongs to a session cookie value."""
        assert self._signer is not None
        return self._signer.csrf_token(session_value)

    async def credential(self, request: Request) -> Credential | None:
        """:data:`BEARER` or the :class:`Session` when the request proves it knows the token.

        A wrong bearer token is refused even when a valid cookie comes along. Raises
        :class:`TooManyAttempts` for a bearer token from a client over the limit.
        """
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer":
            return BEARER if self.attempt(request, given.strip()) else None
        return await self.session(request.cookies.get(SESSION_COOKIE))

    def csrf_ok(self, request: Request) -> bool:
        session = request.cookies.get(SESSION_COOKIE, "")
        sent = request.headers.get(CSRF_HEADER, "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not (session and sent) or self._signer is None:
            return False
        expected = self._signer.csrf_token(session).encode()
        return hmac.compare_digest(sent.encode(), cookie.encode()) and hmac.compare_digest(
            sent.encode(), expected
        )

    # -- the FastAPI dependency ------------------------------------------------------------

    async def guard(self, request: Request) -> Credential | None:
        """Dependency for the API and the stream: 401 without credentials, 403 for forgeries,
        429 while failed attempts are over the limit. Returns how the request authenticated
        (None when the admin is open)."""
        unsafe = request.method in UNSAFE_METHODS
        if unsafe and cross_site(request):
            raise HTTPException(403, "cross-site request refused")
        if self._token is None:
            return None
        try:
            credential = await self.credential(request)
        except TooManyAttempts as exc:
            raise HTTPException(
                429,
                f"too many failed attempts with the admin token; try again in {exc.retry_after} s",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        if credential is None:
            raise HTTPException(
                401,
                "authentication required: send 'Authorization: Bearer <admin token>' or log in "
                "to the dashboard",
                headers={"WWW-Authenticate": 'Bearer realm="taskflow"'},
            )
        if isinstance(credential, Session) and unsafe and not self.csrf_ok(request):
            raise HTTPException(403, f"missing or wrong CSRF token ({CSRF_HEADER} header)")
        setattr(request.state, CREDENTIAL_STATE, credential)
        return credential

    # -- cookies ---------------------------------------------------------------------------

    def start_session(self, response: Response, request: Request, path: str) -> Session | None:
        """Set the session and CSRF cookies, scoped to the admin ``path`` (root path included);
        returns the new session."""
        session = self.new_session()
        secure = request.scope.get("scheme") == "https"
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
        assert self._signer is not None
        return self._signer.parse(session)

    async def end_session(self, response: Response, request: Request, path: str) -> None:
        """Revoke the request's session on every instance, then clear its cookies.

        Raises :class:`~taskflow.backends.BackendError` (and clears nothing, so the browser can
        try again) when the revocation cannot be stored; this instance refuses the session
        from then on all the same.
        """
        if self._signer is not None:
            session = self._signer.parse(request.cookies.get(SESSION_COOKIE))
            if session is not None:
                await self.revocations.revoke(session)
        secure = request.scope.get("scheme") == "https"
        for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
            response.delete_cookie(
                name, path=path, secure=secure, httponly=http_only, samesite="strict"
            )
