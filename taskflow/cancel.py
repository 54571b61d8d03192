"""Cancelling a task from any instance.

The instance that runs a task cancels it itself (:meth:`~taskflow.runner.Runner.cancel`). A
request made on another instance goes through the backend: it is appended to the backend's log
of cancellation requests (:meth:`~taskflow.backends.base.ClusterBackend.request_cancel`), and
every instance's :class:`CancelWatcher` reads that log every ``interval`` seconds while it has
live tasks, cancelling those of its own. One read of an empty log is one indexed query (SQLite,
PostgreSQL) or one ``XRANGE`` (Redis); an instance with no live task does not read at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from taskflow.backends.base import BackendError, ClusterBackend
from taskflow.persistence.store import TaskStore
from taskflow.runner import Runner

logger = logging.getLogger("taskflow.cancel")

#: Seconds between two reads of the cancellation log while this instance has live tasks: a
#: request reaches the task within this plus one read (measured in docs/operations.md).
DEFAULT_CANCEL_POLL_INTERVAL = 0.25
#: Longest the first read of the log (the position to start from) may hold up startup.
START_TIMEOUT = 5.0


class CancelRefused(Exception):
    """A task cannot be cancelled (it has finished); the message says why (the API: 409)."""


class CancelWatcher:
    """Reads the backend's cancellation requests and cancels this instance's tasks named in
    them. Started with the manager (cluster backends only)."""

    def __init__(
        self,
        backend: ClusterBackend,
        store: TaskStore,
        runner: Runner,
        instance_id: Callable[[], str],
        *,
        interval: float = DEFAULT_CANCEL_POLL_INTERVAL,
    ) -> None:
        if interval <= 0:
            raise ValueError("cancel_poll_interval must be > 0")
        self.backend = backend
        self.store = store
        self.runner = runner
        self.instance_id = instance_id
        self.interval = interval
        #: Tasks cancelled here because of a request read from the backend.
        self.cancelled_total = 0
        self._position: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read from the log's current end on (earlier requests are for earlier runs)."""
        try:
            _, self._position = await asyncio.wait_for(
                self.backend.cancel_requests(None), START_TIMEOUT
            )
        except Exception as exc:  # the loop starts from the end it first reads
            logger.warning("taskflow could not read the cancellation log: %r; retrying", exc)
        self._task = asyncio.create_task(self._loop(), name="taskflow-cancel-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2.0)
            self._task = None

    async def poll(self) -> int:
        """One read of the log: cancel this instance's tasks named since the last one. Returns
        how many were cancelled."""
        ids, self._position = await self.backend.cancel_requests(self._position)
        me = self.instance_id()
        cancelled = 0
        while ids:
            for task_id in ids:
                record = self.store.get(task_id)
                if record is not None and not record.status.finished and record.instance_id == me:
                    self.runner.cancel(record)
                    cancelled += 1
            ids, self._position = await self.backend.cancel_requests(self._position)
        self.cancelled_total += cancelled
        return cancelled

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._position is not None and not self.store.has_live:
                continue  # nothing here to cancel: no read at all
            try:
                await self.poll()
            except (BackendError, OSError) as exc:
                logger.debug("taskflow cancellation read failed: %s", exc)
            except Exception:  # a bug here must not end cancellation for good
                logger.exception("taskflow cancellation read failed")
