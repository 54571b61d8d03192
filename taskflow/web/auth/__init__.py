"""Admin authentication for the API, the dashboard and the stream.

* :mod:`~taskflow.web.auth.guard`: :class:`AdminAuth`, the credentials a request may carry (bearer
  token or session cookie), CSRF and origin checks, the FastAPI dependency;
* :mod:`~taskflow.web.auth.sessions`: the signed session cookie and its scrypt-derived key;
* :mod:`~taskflow.web.auth.revocation`: logouts, refused on every instance through the backend;
* :mod:`~taskflow.web.auth.limits`: failed attempts at the token, limited per address and in total.
"""

from __future__ import annotations

from taskflow.web.auth.guard import (
    BEARER,
    CREDENTIAL_STATE,
    UNSAFE_METHODS,
    AdminAuth,
    Credential,
    client_address,
    cross_site,
)
from taskflow.web.auth.limits import LoginLimiter, TooManyAttempts
from taskflow.web.auth.revocation import Revocations
from taskflow.web.auth.sessions import (
    CLOCK_SKEW,
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    Session,
    SessionSigner,
)

__all__ = [
    "BEARER",
    "CLOCK_SKEW",
    "CREDENTIAL_STATE",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SESSION_MAX_AGE",
    "UNSAFE_METHODS",
    "AdminAuth",
    "Credential",
    "LoginLimiter",
    "Revocations",
    "Session",
    "SessionSigner",
    "TooManyAttempts",
    "client_address",
    "cross_site",
]
