"""The audit trail of admin actions: kept in the backend every instance shares (so an action on
one instance is listed on all of them), or, without a backend, in this process (bounded).

An entry that cannot be stored (the backend is down) is not lost silently: it is logged in full
and kept in this instance's memory, where the list shows it until the backend answers again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from taskflow.backends.base import BackendError, HistoryBackend
from taskflow.models import AuditEntry

logger = logging.getLogger("taskflow.audit")

#: Entries kept in memory: the whole trail without a backend, those not stored with one.
MEMORY_AUDIT_ENTRIES = 1000
#: Longest an append or a read of the trail may wait for the backend (seconds).
AUDIT_TIMEOUT = 5.0
#: Largest page of the trail one read returns.
MAX_AUDIT_PAGE = 500


class AuditTrail:
    """Appends and pages of the audit trail of one instance (``backend`` ``None``: memory)."""

    def __init__(self, backend: HistoryBackend | None) -> None:
        self.backend = backend
        self._memory: deque[AuditEntry] = deque(maxlen=MEMORY_AUDIT_ENTRIES)

    async def append(self, entry: AuditEntry) -> None:
        """Store ``entry``; never raises for the backend (the action it records happened)."""
        logger.info(
            "taskflow audit: %s by %s from %s: %s",
            entry.action,
            entry.actor,
            entry.client,
            entry.target,
        )
        if self.backend is None:
            self._memory.append(entry)
            return
        try:
            await asyncio.wait_for(self.backend.append_audit(entry), AUDIT_TIMEOUT)
        except (BackendError, OSError, asyncio.TimeoutError) as exc:
            logger.warning(
                "taskflow audit entry %s could not be stored in %s (%r); kept in this "
                "instance's memory: %s",
                entry.entry_id,
                self.backend.describe(),
                exc,
                entry.to_dict(),
            )
            self._memory.append(entry)

    async def entries(self, limit: int, before: str | None = None) -> list[AuditEntry]:
        """Up to ``limit`` entries, newest first, those before the entry id ``before`` when
        given; the backend's merged with any this instance could not store. Raises
        :class:`BackendError` when the backend cannot be read."""
        limit = max(1, min(limit, MAX_AUDIT_PAGE))
        stored: list[AuditEntry] = []
        if self.backend is not None:
            try:
                stored = await asyncio.wait_for(
                    self.backend.audit_entries(limit, before), AUDIT_TIMEOUT
                )
            except (OSError, asyncio.TimeoutError) as exc:
                raise BackendError(f"the audit trail cannot be read: {exc!r}") from exc
        by_id = {entry.entry_id: entry for entry in stored}
        for entry in self._memory:
            if before is None or entry.entry_id < before:
                by_id.setdefault(entry.entry_id, entry)
        return sorted(by_id.values(), key=lambda entry: entry.entry_id, reverse=True)[:limit]
