"""Backends, chosen by URL through a lazy registry.

``from taskflow.backends import RedisBackend`` imports ``redis`` only at that moment (and
``PostgresBackend`` ``asyncpg``), so the package works without those extras until such a
backend is actually asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskflow.backends.base import (
    BackendError,
    ClusterBackend,
    HistoryBackend,
    HistoryCounts,
    InstanceInfo,
    SnapshotBackend,
)
from taskflow.backends.urls import backend_from_url, load_backend_class

if TYPE_CHECKING:
    from taskflow.backends.postgres import PostgresBackend
    from taskflow.backends.redis import RedisBackend
    from taskflow.backends.sqlite import SqliteBackend

__all__ = [
    "BackendError",
    "ClusterBackend",
    "HistoryBackend",
    "HistoryCounts",
    "InstanceInfo",
    "PostgresBackend",
    "RedisBackend",
    "SnapshotBackend",
    "SqliteBackend",
    "backend_from_url",
]


def __getattr__(name: str) -> Any:
    if name in ("PostgresBackend", "RedisBackend", "SqliteBackend"):
        return load_backend_class(name)
    raise AttributeError(f"module 'taskflow.backends' has no attribute {name!r}")
