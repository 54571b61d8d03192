"""Revocations: sessions ended by a logout are refused on every instance until they would have
expired anyway.

With a backend the revocation is stored there (:meth:`ClusterBackend.revoke_session`), so a
logout on one instance ends the session on all of them; without one, in this process (there is
no other instance then). Each instance remembers

* a revoked id until the session's expiry: revocations never end early;
* that an id was *not* revoked for at most :data:`CHECK_SECONDS`, so an open dashboard costs
  the backend at most one read per session per second on each instance, and a logout on another
  instance takes effect here within that time.

While the backend cannot be read, sessions are let in and a warning says once that logouts on
other instances cannot be seen (sessions ended on this instance are still refused): refusing
them would lock every operator out of the dashboard during the very outage it should show.
Changing the admin token ends every session at once, backend or not.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from taskflow.backends.base import BackendError, HistoryBackend, cluster_part
from taskflow.web.auth.sessions import Session

logger = logging.getLogger("taskflow.web.auth")

#: Longest an instance relies on an earlier "not revoked" answer (seconds).
CHECK_SECONDS = 1.0
#: Most sessions whose "not revoked" answer is remembered at once (the oldest go first).
MAX_REMEMBERED = 10_000


class Revocations:
    """Sessions ended by a logout: stored in ``backend`` (shared) when it implements the
    cluster contract, or in this process."""

    def __init__(
        self, backend: HistoryBackend | None, *, check_seconds: float = CHECK_SECONDS
    ) -> None:
        self.backend = cluster_part(backend)
        self._where = backend.describe() if backend is not None else "memory"
        self.check_seconds = check_seconds
        self._revoked: dict[str, float] = {}  # id -> when the session expires (epoch seconds)
        self._not_revoked: dict[str, float] = {}  # id -> when that was read (monotonic)
        self._failing = False

    async def revoke(self, session: Session) -> None:
        """End ``session``: at once on this instance, and through the backend on every other.

        Raises :class:`BackendError` when the backend cannot store it; this instance refuses
        the session all the same.
        """
        now = time.time()
        self._revoked = {sid: end for sid, end in self._revoked.items() if end > now}
        self._revoked[session.session_id] = session.expires
        self._not_revoked.pop(session.session_id, None)
        if self.backend is not None:
            expires = datetime.fromtimestamp(session.expires, timezone.utc)
            await self.backend.revoke_session(session.session_id, expires)

    async def revoked(self, session: Session) -> bool:
        """True when ``session`` was ended by a logout on this or (through the backend) any
        other instance; at most :data:`CHECK_SECONDS` late for a logout elsewhere."""
        sid = session.session_id
        if sid in self._revoked:
            return True
        if self.backend is None:
            return False
        read_at = self._not_revoked.get(sid)
        if read_at is not None and time.monotonic() - read_at < self.check_seconds:
            return False
        try:
            revoked = await self.backend.session_revoked(sid)
        except BackendError as exc:
            if not self._failing:
                logger.warning(
                    "taskflow: cannot read ended dashboard sessions from %s (%s); until it "
                    "answers, logouts on other instances are not seen here",
                    self._where,
                    exc,
                )
            self._failing = True
            return False
        if self._failing:
            logger.info("taskflow: ended dashboard sessions can be read again")
            self._failing = False
        if revoked:
            self._revoked[sid] = session.expires
            self._not_revoked.pop(sid, None)
            return True
        self._not_revoked.pop(sid, None)  # re-inserted last: the dict stays oldest first
        self._not_revoked[sid] = time.monotonic()
        while len(self._not_revoked) > MAX_REMEMBERED:
            del self._not_revoked[next(iter(self._not_revoked))]
        return False
