"""The upkeep of the backend: opening it (and again, until it opens), pinging it for readiness,
noticing a write that hangs, the safety-net flush every ``snapshot_interval``, and retention.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from taskflow.backends.base import HistoryBackend
from taskflow.models import utcnow
from taskflow.persistence.flusher import Flusher
from taskflow.persistence.health import BackendHealth
from taskflow.persistence.store import TaskStore

logger = logging.getLogger("taskflow.persistence")

#: How often the maintenance loop wakes up (seconds).
TICK_SECONDS = 0.5
#: How often a healthy backend is pinged for readiness (seconds).
PING_EVERY = 2.0
#: Longest a ping may take before the backend counts as unreachable (seconds): a hung server
#: (SIGSTOP, a cut connection) answers nothing, and its client's own timeouts and retries add
#: up to ~20 s.
PING_TIMEOUT = 2.0
#: Longest a write may stay unanswered before readiness turns false (seconds).
STALL_SECONDS = 3.0
#: How often retention runs when it is configured (seconds).
PRUNE_EVERY = 60.0
#: Longest opening the backend and reading its recent history may take at startup (seconds).
CONNECT_TIMEOUT = 5.0


class Upkeep:
    """Keeps ``health`` true to the backend and the history within its retention."""

    def __init__(
        self,
        backend: HistoryBackend,
        store: TaskStore,
        health: BackendHealth,
        flusher: Flusher,
        *,
        interval: float,
        restore_limit: int,
        retention_days: float | None,
        max_history: int | None,
    ) -> None:
        if interval <= 0:
            raise ValueError("snapshot_interval must be greater than 0 seconds")
        self.backend = backend
        self.store = store
        self.health = health
        self.flusher = flusher
        self.interval = interval
        self.restore_limit = restore_limit
        self.retention_days = retention_days
        self.max_history = max_history

    def start(self) -> asyncio.Task[None]:
        """Start the maintenance loop (returned; cancel it to stop)."""
        return asyncio.create_task(self._maintenance_loop(), name="taskflow-maintenance")

    async def _maintenance_loop(self) -> None:
        now = time.monotonic()
        last_flush = last_ping = last_prune = now
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            self._check_stall(now)
            if now - last_flush >= self.interval:
                last_flush = now
                self.flusher.wake()  # the safety net: write whatever an earlier write could not
            if now - last_ping >= (PING_EVERY if self.health.ready else TICK_SECONDS * 2):
                last_ping = now
                await self._check_backend()
            if self._retention_on and self.health.ready and now - last_prune >= PRUNE_EVERY:
                last_prune = now
                await self.apply_retention()

    def _check_stall(self, now: float) -> None:
        started, health = self.flusher.write_started, self.health
        if started is not None and now - started >= STALL_SECONDS and not health.stalled:
            health.stalled = True
            health.last_error = f"a write has not been answered for {now - started:.1f}s"
            logger.warning(
                "taskflow backend %s: %s; not ready until it answers",
                self.backend.describe(),
                health.last_error,
            )

    async def connect(self) -> None:
        """Open the backend and restore its recent history into memory; on failure, log it
        (once per kind of failure) and leave it to the loop to try again."""
        health = self.health
        try:
            await asyncio.wait_for(self._open_and_restore(), CONNECT_TIMEOUT)
        except Exception as exc:  # whatever opening raises, the instance serves from memory
            health.reachable = False
            error = f"cannot open: {type(exc).__name__}: {exc}"
            if error != health.last_error:
                logger.error(
                    "taskflow backend %s: %s; serving from memory and retrying",
                    self.backend.describe(),
                    error,
                )
            health.last_error = error
            return
        health.connected = health.reachable = True
        health.clear_error()
        self.flusher.wake()  # whatever waited for the backend goes now

    async def _open_and_restore(self) -> None:
        await self.backend.open()
        restored = await self.backend.load_recent(self.restore_limit)
        self.store.restore(restored)
        logger.info(
            "taskflow restored %d recent records from %s", len(restored), self.backend.describe()
        )

    async def _check_backend(self) -> None:
        health = self.health
        if not health.connected:
            await self.connect()
            return
        try:
            await asyncio.wait_for(self.backend.ping(), PING_TIMEOUT)
        except Exception as exc:
            if health.reachable:
                logger.warning(
                    "taskflow backend %s does not answer: %s", self.backend.describe(), exc
                )
            health.reachable = False
            health.last_error = f"ping failed: {type(exc).__name__}: {exc}"
            return
        health.reachable = True
        health.clear_error()
        if not health.writes_ok:
            self.flusher.wake()  # only a write that works makes the backend ready again

    @property
    def _retention_on(self) -> bool:
        return self.retention_days is not None or self.max_history is not None

    async def apply_retention(self) -> int:
        """Delete finished history beyond ``retention_days`` and ``max_history``."""
        if not self._retention_on:
            return 0
        older_than = None
        if self.retention_days is not None:
            older_than = utcnow() - timedelta(days=self.retention_days)
        try:
            removed = await self.backend.prune(older_than=older_than, keep=self.max_history)
        except Exception as exc:  # retention is upkeep: it must never end the maintenance loop
            logger.warning("taskflow retention on %s failed: %s", self.backend.describe(), exc)
            return 0
        if removed:
            logger.info("taskflow retention removed %d records", removed)
        return removed
