"""Admin authentication for the API, the dashboard and the stream.

* :mod:`~taskflow.auth.guard`: :class:`AdminAuth`, the credentials a request may carry (bearer
  token or session cookie), CSRF and origin checks, the FastAPI dependency;
* :mod:`~taskflow.auth.sessions`: the signed session cookie and its scrypt-derived key;
* :mod:`~taskflow.auth.revocation`: logouts, refused on every instance through the backend.
"""

from __future__ import annotations

from taskflow.auth.guard import BEARER, UNSAFE_METHODS, AdminAuth, Credential, cross_site
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
    "Revocations",
    "Session",
    "SessionSigner",
    "cross_site",
]
