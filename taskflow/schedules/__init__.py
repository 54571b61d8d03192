"""Scheduled tasks: periodic schedules (every interval, or cron in a time zone) fired once per
tick across the cluster, and delayed one-off tasks (see docs/schedules.md)."""

from __future__ import annotations

from taskflow.schedules.scheduler import CatchUp, Schedule, Scheduler, ScheduleView
from taskflow.schedules.spec import Cron, Every, ScheduleSpec, make_spec

__all__ = [
    "CatchUp",
    "Cron",
    "Every",
    "Schedule",
    "ScheduleSpec",
    "ScheduleView",
    "Scheduler",
    "make_spec",
]
