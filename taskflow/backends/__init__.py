"""Snapshot backends, chosen by URL through a lazy registry.

``from taskflow.backends import RedisBackend`` imports ``redis`` only at that moment, so the
package works without the ``redis`` extra until a Redis backend is actually asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskflow.backends.base import BackendError, HistoryCounts, InstanceInfo, SnapshotBackend
from taskflow.backends.urls import backend_from_url, load_backend_class

if TYPE_CHECKING:
    from taskflow.backends.redis import RedisBackend
    from taskflow.backends.sqlite import SqliteBackend

__all__ = [
    "BackendError",
    "HistoryCounts",
    "InstanceInfo",
    "RedisBackend",
    "SnapshotBackend",
    "SqliteBackend",
    "backend_from_url",
]


def __getattr__(name: str) -> Any:
    if name in ("RedisBackend", "SqliteBackend"):
        return load_backend_class(name)
    raise AttributeError(f"module 'taskflow.backends' has no attribute {name!r}")
