"""taskflow: tracked, retried and persisted FastAPI background tasks across processes and hosts."""

from __future__ import annotations

from taskflow.admin import TaskAdmin, admin_router
from taskflow.background import ManagedBackgroundTasks
from taskflow.manager import TaskManager
from taskflow.models import TaskRecord, TaskStatus
from taskflow.query import InvalidQuery, Page, TaskQuery
from taskflow.retry import RetryRefused

__all__ = [
    "InvalidQuery",
    "ManagedBackgroundTasks",
    "Page",
    "RetryRefused",
    "TaskAdmin",
    "TaskManager",
    "TaskQuery",
    "TaskRecord",
    "TaskStatus",
    "admin_router",
]
__version__ = "0.1.0"
