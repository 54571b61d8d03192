"""LoginLimiter: caps failed attempts at the admin token, per client address and in total.

An attempt is any request that presents the token: the login form, or an ``Authorization:
Bearer`` header (otherwise guessing would just move from the form to the API). While a client
address, or everyone together, is over its limit, every attempt gets 429 with ``Retry-After``
*before* the token is compared: an answer that still told right from wrong would let guessing
go on. Sessions already open are not affected.

Counts are kept per instance, in memory: behind a balancer, N instances allow N times as many
attempts. The client address is the one uvicorn reports, so behind a proxy it must trust the
proxy's ``X-Forwarded-For`` (``--forwarded-allow-ips``; the kit's gunicorn config does) or every
client shares the proxy's address and its limit.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable

#: Seconds a failed attempt counts against its address and the total.
WINDOW = 300.0
#: Failed attempts one client address may make within :data:`WINDOW`.
PER_ADDRESS = 10
#: Failed attempts all clients together may make within :data:`WINDOW`: about one a second
#: per instance. Also what bounds the memory: no more failures than this are remembered.
TOTAL = 300


class TooManyAttempts(Exception):
    """Over the limit: try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed attempts; try again in {retry_after} s")
        self.retry_after = retry_after


class LoginLimiter:
    """Failed attempts of the last ``window`` seconds, by address and in total."""

    def __init__(
        self,
        *,
        per_address: int = PER_ADDRESS,
        total: int = TOTAL,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_address < 1 or total < 1 or window <= 0:
            raise ValueError("login limits must be at least 1 attempt in more than 0 seconds")
        self.per_address = per_address
        self.total = total
        self.window = window
        self._clock = clock
        self._failures: deque[tuple[float, str]] = deque()  # oldest first
        self._by_address: Counter[str] = Counter()

    def check(self, address: str) -> None:
        """Raise :class:`TooManyAttempts` while ``address`` or everyone is over the limit."""
        now = self._forget_old()
        if len(self._failures) >= self.total:
            raise TooManyAttempts(self._wait(self._failures[0][0], now))
        if self._by_address[address] >= self.per_address:
            oldest = next(at for at, who in self._failures if who == address)
            raise TooManyAttempts(self._wait(oldest, now))

    def failed(self, address: str) -> None:
        """Count a wrong token from ``address``."""
        self._failures.append((self._clock(), address))
        self._by_address[address] += 1

    def _forget_old(self) -> float:
        now = self._clock()
        while self._failures and self._failures[0][0] <= now - self.window:
            _, address = self._failures.popleft()
            self._by_address[address] -= 1
            if self._by_address[address] <= 0:
                del self._by_address[address]
        return now

    def _wait(self, oldest: float, now: float) -> int:
        return max(1, math.ceil(oldest + self.window - now))
