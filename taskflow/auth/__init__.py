"""Admin authentication for the API, the dashboard and the stream.

* :mod:`~taskflow.auth.guard`: :class:`AdminAuth`, the credentials a request may carry (bearer
  token or session cookie), CSRF and origin checks, the FastAPI dependency;
* :mod:`~taskflow.auth.sessions`: the signed session cookie and its scrypt-derived key;
* :mod:`~taskflow.auth.revocation`: logouts, refused on every instance through the backend;
* :mod:`~taskflow.auth.limits`: failed attempts at the token, limited per address and in total.
"""

from __future__ import annotations

from taskflow.auth.guard import (
    BEARER,
    UNSAFE_METHODS,
    AdminAuth,
    Credential,
    client_address,
    cross_site,
)
from taskflow.auth.limits import LoginLimiter, TooManyAttempts
from taskflow.auth.revocation import Revocations
from taskflow.auth.sessions import (
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
