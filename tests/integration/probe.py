"""What clients see of one instance during a fault drill, measured from outside its process.

A :class:`Probe` runs three client threads against one app until it is stopped:

* readiness: ``GET /readyz`` every :data:`READY_EVERY` seconds;
* enqueue: ``POST /burst`` (a few short tasks) in a loop, timing each response and keeping the
  task ids of every 2xx answer: those tasks were *accepted* and must end up stored;
* listing: ``GET /tasks`` (what the dashboard reads) in a loop, timing each response.

Each sample keeps the monotonic time its request started and ended, so a drill can split them
into phases (before the fault, before it was detected, while detected, after it healed).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

#: Seconds between readiness samples.
READY_EVERY = 0.1
#: Tasks per enqueueing request, and how long each one sleeps.
BURST, TASK_SECONDS = 5, 0.05
#: Pause between two enqueueing requests (seconds).
ENQUEUE_PAUSE = 0.05
#: Pause between two listing requests (seconds).
LIST_PAUSE = 0.25


@dataclass(frozen=True)
class Sample:
    started: float
    ended: float
    status: int  # 0 when the request itself failed (refused, timed out)

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Probe:
    url: str
    enqueue: bool = True
    listing: bool = True
    readiness: list[Sample] = field(default_factory=list)
    enqueues: list[Sample] = field(default_factory=list)
    listings: list[Sample] = field(default_factory=list)
    #: Task ids of every 2xx enqueue response.
    accepted: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Probe:
        loops = [self._poll_ready]
        loops += [self._enqueue] if self.enqueue else []
        loops += [self._list] if self.listing else []
        self._threads = [threading.Thread(target=loop, daemon=True) for loop in loops]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def __enter__(self) -> Probe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading the samples ---------------------------------------------------------------

    def wait_ready(self, ready: bool, after: float, timeout: float, what: str) -> float:
        """Seconds from ``after`` until a readiness sample that *started* after ``after``
        answered 200 (``ready``) or 503 (not); fails after ``timeout``."""
        want = 200 if ready else 503
        while True:
            for sample in list(self.readiness):
                if sample.started >= after and sample.status == want:
                    return sample.ended - after
            if time.monotonic() - after > timeout:
                raise AssertionError(
                    f"/readyz did not turn {want} within {timeout}s {what}; "
                    f"seen since: {self.statuses_between(after, time.monotonic())}"
                )
            time.sleep(READY_EVERY / 2)

    def statuses_between(self, start: float, end: float) -> list[int]:
        """Readiness answers of the samples that started and ended within [start, end]."""
        return [s.status for s in self.readiness if s.started >= start and s.ended <= end]

    def enqueue_seconds(self, start: float, end: float) -> list[float]:
        """Latencies of the enqueue requests that started within [start, end], sorted."""
        return sorted(s.seconds for s in self.enqueues if start <= s.started <= end)

    def listing_seconds(self, start: float, end: float) -> list[float]:
        return sorted(s.seconds for s in self.listings if start <= s.started <= end)

    def failed_enqueues(self) -> list[Sample]:
        return [s for s in self.enqueues if not 200 <= s.status < 300]

    # -- the client loops ------------------------------------------------------------------

    def _poll_ready(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                self.readiness.append(_timed(client, "GET", "/readyz"))
                self._stop.wait(READY_EVERY)

    def _enqueue(self) -> None:
        params = {"count": BURST, "seconds": TASK_SECONDS}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post("/burst", params=params)
                except httpx.HTTPError:
                    self.enqueues.append(Sample(started, time.monotonic(), 0))
                else:
                    self.enqueues.append(Sample(started, time.monotonic(), response.status_code))
                    if response.is_success:
                        self.accepted += response.json()["task_ids"]
                self._stop.wait(ENQUEUE_PAUSE)

    def _list(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                self.listings.append(_timed(client, "GET", "/tasks", params={"limit": 20}))
                self._stop.wait(LIST_PAUSE)


def _timed(client: httpx.Client, method: str, path: str, **kwargs: object) -> Sample:
    started = time.monotonic()
    try:
        status = client.request(method, path, **kwargs).status_code  # type: ignore[arg-type]
    except httpx.HTTPError:
        status = 0
    return Sample(started, time.monotonic(), status)


def quantile(values: list[float], fraction: float) -> float:
    """Nearest-rank quantile of sorted ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(fraction * len(values)))]
