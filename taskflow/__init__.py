"""taskflow: tracked, retried and persisted FastAPI background tasks across processes and hosts."""

from __future__ import annotations

from taskflow.admin import TaskAdmin, admin_router
from taskflow.background import ManagedBackgroundTasks
from taskflow.cancel import CancelRefused
from taskflow.context import TaskContext, TaskLogHandler, task_context, task_log
from taskflow.manager import TaskManager
from taskflow.models import TaskRecord, TaskStatus
from taskflow.query import InvalidQuery, Page, TaskQuery
from taskflow.retry import RetryRefused

__all__ = [
    "CancelRefused",
    "InvalidQuery",
    "ManagedBackgroundTasks",
    "Page",
    "RetryRefused",
    "TaskAdmin",
    "TaskContext",
    "TaskLogHandler",
    "TaskManager",
    "TaskQuery",
    "TaskRecord",
    "TaskStatus",
    "admin_router",
    "task_context",
    "task_log",
]
__version__ = "0.1.0"
