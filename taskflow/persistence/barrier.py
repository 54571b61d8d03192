"""WriteBarrier: lets a request wait until the records it changed are in the backend."""

from __future__ import annotations

import asyncio
from collections import deque

#: Waiters kept before the ones that already timed out are swept out (a backend that hangs
#: without failing would otherwise collect one per request until its socket timeout).
SWEEP_AT = 10_000


class WriteBarrier:
    """Numbers the backend writes in the order they take their batches.

    A write calls :meth:`take` when it takes its batch from the store and :meth:`done` with
    that number once it succeeded. A :meth:`ticket` resolves when a write that took its batch
    after the call has succeeded: that write carried whatever the caller had changed before it.

    One future per waiter, resolved in order: cheaper than a Condition, whose ``notify_all``
    makes every waiter take its lock again in turn. One timer for all waiters' timeouts,
    armed for the nearest deadline, instead of a timer started and cancelled per waiter.
    """

    def __init__(self) -> None:
        self._taken = 0
        self._waiters: deque[tuple[int, float, asyncio.Future[bool]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def take(self) -> int:
        """A write takes its batch now: its number."""
        self._taken += 1
        return self._taken

    def done(self, number: int) -> None:
        """Write ``number`` succeeded (so did every write before it, or it was retried in it)."""
        waiters = self._waiters
        while waiters and waiters[0][0] <= number:
            waiter = waiters.popleft()[2]
            if not waiter.done():
                waiter.set_result(True)

    def ticket(self, timeout: float) -> asyncio.Future[bool]:
        """A future that a write taking its batch after this call resolves once it succeeded
        (True), or ``timeout`` does (False). Taken now, awaited whenever the caller is ready."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        if len(self._waiters) >= SWEEP_AT:
            self._waiters = deque(entry for entry in self._waiters if not entry[2].done())
        deadline = loop.time() + timeout
        self._waiters.append((self._taken + 1, deadline, waiter))
        if self._timer is None or deadline < self._timer_at:
            self._arm(loop, deadline)
        return waiter

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(deadline, self._expire, loop)
        self._timer_at = deadline

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let go of every waiter past its deadline; arm the timer for the nearest one left."""
        self._timer = None
        now = loop.time()
        nearest: float | None = None
        for _, deadline, waiter in self._waiters:
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_result(False)
            elif nearest is None or deadline < nearest:
                nearest = deadline
        if nearest is not None:
            self._arm(loop, nearest)
