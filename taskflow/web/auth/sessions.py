"""Browser sessions: the signed cookie the login form issues, and the key that signs it.

The session cookie is ``<issued>.<id>.<signature>``: its issue time (epoch seconds), a random
id (what a logout revokes, see :mod:`taskflow.web.auth.revocation`) and an HMAC-SHA256 of both.

The HMAC key is derived from the admin token with scrypt and a fixed label, once per process.
Every instance that knows the token derives the same key, so any of them accepts a session
made by another (round-robin balancing needs no sticky sessions), and changing the token ends
every session. The cookie never holds the token, and a captured cookie does not make guessing
a weak token cheap: each guess costs the attacker one scrypt (~70 ms and 32 MiB), not one HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

#: HttpOnly cookie holding the signed session.
SESSION_COOKIE = "taskflow_session"
#: Readable cookie holding the CSRF token the dashboard echoes in :data:`CSRF_HEADER`.
CSRF_COOKIE = "taskflow_csrf"
CSRF_HEADER = "x-csrf-token"
#: Seconds a session stays valid after login.
SESSION_MAX_AGE = 12 * 3600
#: Seconds a session's issue time may lie in the future (clock differences between instances).
CLOCK_SKEW = 60

#: scrypt's salt: a fixed label, so the key is the same on every instance and serves this one
#: purpose; bump the version to end every session on purpose.
KDF_LABEL = b"taskflow-kit session v1"
#: scrypt cost (N, r, p): 32 MiB and ~70 ms, paid once per process here and once per guess by
#: anyone guessing the token from a captured cookie.
KDF_N, KDF_R, KDF_P = 2**15, 8, 1
#: What that cost needs (128 * N * r bytes) with room to spare: OpenSSL's default is 32 MiB.
KDF_MAXMEM = 64 * 1024 * 1024

#: A session cookie exactly as issued: ASCII digits, 22 URL-safe characters, 64 hex digits.
_COOKIE = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{22})\.([0-9a-f]{64})", re.ASCII)
#: Longer cookie values are refused before any parsing (an issued one has about 100 characters).
MAX_COOKIE_CHARS = 128


def derive_key(token: str) -> bytes:
    """The signing key of sessions and CSRF tokens for ``token`` (slow on purpose)."""
    return hashlib.scrypt(
        token.encode(), salt=KDF_LABEL, n=KDF_N, r=KDF_R, p=KDF_P, maxmem=KDF_MAXMEM, dklen=32
    )


@dataclass(frozen=True, slots=True)
class Session:
    """A session cookie whose signature and age were checked (revocation is checked apart)."""

    session_id: str
    issued: int
    #: The cookie value, from which the session's CSRF token derives.
    value: str

    @property
    def expires(self) -> float:
        """Epoch seconds at which the session ends by itself."""
        return float(self.issued + SESSION_MAX_AGE)


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens with a key derived from the token."""

    def __init__(self, token: str) -> None:
        self._key = derive_key(token)

    def _sign(self, purpose: str, value: str) -> str:
        message = f"taskflow-kit|{purpose}|{value}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        """A new session cookie value with a random id."""
        issued = int(time.time() if now is None else now)
        body = f"{issued}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign('session', body)}"

    def parse(self, value: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value this key signed and that has not expired, else None.

        Anything else (junk, other digits than ASCII ones, 4,000-digit numbers, a signature
        made with another key) is None, never an exception.
        """
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        match = _COOKIE.fullmatch(value)
        if match is None:
            return None
        issued_text, session_id, signature = match.groups()
        expected = self._sign("session", f"{issued_text}.{session_id}")
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        issued = int(issued_text)
        age = (time.time() if now is None else now) - issued
        if not -CLOCK_SKEW <= age <= SESSION_MAX_AGE:
            return None
        return Session(session_id, issued, value)

    def csrf_token(self, session_value: str) -> str:
        """The CSRF token that belongs to a session (stateless: derivable on every instance)."""
        return self._sign("csrf", session_value)
