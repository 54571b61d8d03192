"""A client that keeps a load balancer busy during an upgrade and counts every failed request.

Threads loop until stopped: most POST ``/demo/fast`` (a task each; a POST is never resent by
nginx once an instance may have received it, so a POST is what an upgrade done wrong fails),
one lists ``GET /tasks``. Any answer other than 2xx, and any transport error, is a failure.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadLoop:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    posters: int = 3
    listers: int = 1
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    instances: Counter[str] = field(default_factory=Counter)
    #: Seconds the slowest request took.
    slowest: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> LoadLoop:
        kinds = ["post"] * self.posters + ["list"] * self.listers
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in kinds]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def _run(self, kind: str) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    if kind == "post":
                        response = client.post("/demo/fast")
                    else:
                        response = client.get("/tasks", params={"limit": 5})
                except httpx.HTTPError as exc:
                    self._record(kind, f"{type(exc).__name__}: {exc}", None, started)
                    continue
                self._record(kind, str(response.status_code), response, started)

    def _record(
        self, kind: str, outcome: str, response: httpx.Response | None, started: float
    ) -> None:
        took = time.monotonic() - started
        with self._lock:
            self.statuses[outcome] += 1
            self.slowest = max(self.slowest, took)
            if response is None or not response.is_success:
                self.failures.append(f"{kind} -> {outcome} after {took:.2f}s")
                return
            if kind == "post":
                body = response.json()
                self.task_ids.extend(body["task_ids"])
                self.instances[str(body["instance_id"]).rsplit("-", 1)[0]] += 1
