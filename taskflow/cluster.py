"""ClusterMonitor: heartbeats into the backend's instance registry, and claims the live records
of instances that stopped heartbeating (SIGKILL, OOM kill, lost host) or that were queued for
requeue at a clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta

from taskflow.backends.base import BackendError, InstanceInfo, SnapshotBackend
from taskflow.models import TaskRecord, utcnow

logger = logging.getLogger("taskflow.cluster")

#: Owner of the records queued for requeue at a clean shutdown (any instance may claim them).
QUEUE_OWNER = ""

#: Longest registering may hold up startup (seconds); a backend that does not answer is retried
#: by the heartbeat loop.
REGISTER_TIMEOUT = 5.0
#: Longest leaving the registry may take at shutdown (seconds): a hung backend must not hold up
#: the final flush; the survivors expire this instance instead.
DEREGISTER_TIMEOUT = 2.0

#: Called with claimed records and the owner they were taken from.
ClaimHandler = Callable[[list[TaskRecord], str], None]


class ClusterMonitor:
    """One instance's membership of the cluster.

    Every ``heartbeat_interval`` seconds: refresh this instance's heartbeat, expire instances
    silent for ``expiry`` seconds, and claim the live records of owners that are not registered
    (expired or never deregistered) plus the unowned queue. Claims are atomic per record in the
    backend, so each record goes to exactly one survivor, which decides (``on_claimed``) whether
    to run it again or mark it interrupted.
    """

    def __init__(
        self,
        backend: SnapshotBackend,
        instance_id: Callable[[], str],
        on_claimed: ClaimHandler,
        *,
        heartbeat_interval: float = 5.0,
        expiry: float = 15.0,
    ) -> None:
        if heartbeat_interval <= 0 or expiry <= heartbeat_interval:
            raise ValueError("need heartbeat_interval > 0 and expiry > heartbeat_interval")
        self.backend = backend
        self.instance_id = instance_id
        self.on_claimed = on_claimed
        self.heartbeat_interval = heartbeat_interval
        self.expiry = expiry
        self.claimed_total = 0
        self._started_at = utcnow()
        self._last_beat: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register, take back what a previous process with this instance id left running,
        and start the heartbeat loop."""
        self._started_at = utcnow()
        try:
            await asyncio.wait_for(self._register(), REGISTER_TIMEOUT)
        except Exception as exc:  # the app starts anyway; the heartbeat loop tries again
            logger.warning("taskflow cluster registration failed: %r; retrying", exc)
        self._task = asyncio.create_task(self._loop(), name="taskflow-heartbeat")

    async def _register(self) -> None:
        await self._heartbeat()
        # Nothing runs here yet: live records already owned by this id were left by an
        # earlier process with the same id (same host name and pid after a restart).
        me = self.instance_id()
        self._hand_over(await self.backend.claim_live(me, me), me)
        await self.tick()

    async def stop(self) -> None:
        """Stop heartbeating and leave the registry (best effort: the backend may be down)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2.0)
            self._task = None
        try:
            await asyncio.wait_for(self.backend.deregister(self.instance_id()), DEREGISTER_TIMEOUT)
        except Exception as exc:  # a shutdown must go on to the final flush whatever this does
            logger.warning("taskflow could not deregister %s: %s", self.instance_id(), exc)

    async def tick(self) -> int:
        """One round: heartbeat, expire, claim. Returns how many records were claimed."""
        await self._heartbeat()
        now = utcnow()
        expired = await self.backend.expire_instances(now - timedelta(seconds=self.expiry))
        for instance in expired:
            logger.warning(
                "taskflow instance %s sent no heartbeat for %.0fs: claiming its tasks",
                instance,
                self.expiry,
            )
        me = self.instance_id()
        registered = {info.instance_id for info in await self.backend.instances()}
        orphaned = await self.backend.live_owners() - registered - {me}
        claimed = 0
        for owner in sorted(orphaned):
            records = await self.backend.claim_live(owner, me)
            claimed += len(records)
            self._hand_over(records, owner)
        return claimed

    def _hand_over(self, records: list[TaskRecord], owner: str) -> None:
        if records:
            self.claimed_total += len(records)
            self.on_claimed(records, owner)

    async def _heartbeat(self) -> None:
        info = InstanceInfo(
            self.instance_id(), socket.gethostname(), os.getpid(), self._started_at, utcnow()
        )
        await self.backend.heartbeat(info)
        now = time.monotonic()
        if self._last_beat is not None and now - self._last_beat > self.expiry:
            logger.warning(
                "taskflow instance %s sent no heartbeat for %.0fs (instance_expiry %.0fs): "
                "the cluster may have declared it gone and given its tasks to other instances; "
                "its results of such tasks are kept as late results (late_of)",
                info.instance_id,
                now - self._last_beat,
                self.expiry,
            )
        self._last_beat = now

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.tick()
            except (BackendError, OSError) as exc:
                logger.debug("taskflow heartbeat failed: %s", exc)
            except Exception:  # a bug here must not end heartbeats (others would claim our work)
                logger.exception("taskflow heartbeat round failed")
