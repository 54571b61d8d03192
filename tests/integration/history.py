"""Helpers for reading task history over HTTP and straight from a backend."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from taskflow.backends import SnapshotBackend
from taskflow.models import TaskRecord
from taskflow.query import TaskQuery


def list_all(base_url: str, **filters: str) -> list[dict[str, Any]]:
    """Every task ``GET /tasks`` lists, following ``next_cursor`` to the end."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000, **filters}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        while True:
            response = client.get("/tasks", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            items += body["items"]
            if body["next_cursor"] is None:
                return items
            params["cursor"] = body["next_cursor"]


def completions(path: Path) -> dict[str, list[str]]:
    """token -> the instances that completed it, one entry per completion (the lines the
    ``tracked`` task of apps/basic.py appends to ``TEST_COMPLETIONS``)."""
    done: dict[str, list[str]] = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            token, instance = line.split(" ", 1)
            done[token].append(instance)
    return done


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``predicate()`` holds; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


@dataclass
class BackendUnderTest:
    """How the app processes reach the backend (env) and how the test reads it directly."""

    name: str
    env: dict[str, str]
    make: Callable[[], SnapshotBackend]

    def stored(self) -> dict[str, TaskRecord]:
        """Every record in the backend, by id."""

        async def read() -> dict[str, TaskRecord]:
            backend = self.make()
            await backend.open()
            try:
                found: dict[str, TaskRecord] = {}
                cursor = None
                while True:
                    page = await backend.query(TaskQuery.build(limit=1000, cursor=cursor))
                    found.update((r.task_id, r) for r in page.records)
                    if page.next_cursor is None:
                        return found
                    cursor = page.next_cursor
            finally:
                await backend.close()

        return asyncio.run(read())
