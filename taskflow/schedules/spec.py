"""When a periodic schedule's ticks fall: every fixed interval, or at the times a cron
expression names in a time zone.

A tick is identified by its scheduled time (timezone-aware UTC), which every instance works
out alike from the spec alone: intervals are counted from the Unix epoch, cron times come from
``croniter`` (which also handles the daylight-saving changes of the zone, through ``zoneinfo``).
That time is what the backend claims, so instances agree on which tick is which whatever their
start times.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: The shortest interval a schedule may have: every tick is a write to the backend on every
#: instance that tries to claim it.
MIN_INTERVAL = timedelta(milliseconds=100)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


class ScheduleSpec(ABC):
    """The ticks of a periodic schedule."""

    @abstractmethod
    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (UTC)."""

    @abstractmethod
    def latest(self, now: datetime) -> datetime:
        """The newest tick at or before ``now`` (UTC)."""

    @abstractmethod
    def describe(self) -> str:
        """The spec as users wrote it: ``every 0:05:00``, ``cron */5 * * * * Europe/Berlin``."""


class Every(ScheduleSpec):
    """A tick every ``interval``, at whole multiples of it since the Unix epoch (UTC): a
    five-minute schedule ticks at :00, :05, ... whichever instance started when."""

    def __init__(self, interval: timedelta | float) -> None:
        if not isinstance(interval, timedelta):
            if isinstance(interval, bool) or not isinstance(interval, (int, float)):
                raise TypeError(f"every= takes a timedelta or seconds, not {interval!r}")
            if interval != interval or interval in (float("inf"), float("-inf")):
                raise ValueError(f"every= must be a finite duration, not {interval!r}")
            if abs(interval) > timedelta.max.total_seconds():
                raise ValueError(f"every= {interval!r} seconds is too long")
            interval = timedelta(seconds=interval)
        if interval < MIN_INTERVAL:
            raise ValueError(f"every= must be at least {MIN_INTERVAL}, not {interval}")
        self.interval = interval
        self._step = interval // _MICROSECOND

    def latest(self, now: datetime) -> datetime:
        elapsed = (_aware(now) - _EPOCH) // _MICROSECOND
        return _EPOCH + _MICROSECOND * (elapsed - elapsed % self._step)

    def next_after(self, moment: datetime) -> datetime:
        return self.latest(moment) + _MICROSECOND * self._step

    def describe(self) -> str:
        return f"every {self.interval}"


class Cron(ScheduleSpec):
    """The times a five-field cron expression names, as wall-clock times in ``timezone``
    (default UTC). Daylight-saving changes follow croniter: a time skipped by the spring change
    runs at the first time after it, an hourly or finer schedule keeps its pace across both
    changes."""

    def __init__(self, expression: str, timezone_name: str | None = None) -> None:
        try:  # imported where cron is used: the "cron" extra
            from croniter import CroniterError, croniter
        except ImportError as exc:
            raise ImportError(
                "schedule(cron=...) needs croniter: pip install 'taskflow-kit[cron]'"
            ) from exc

        if not isinstance(expression, str):
            raise TypeError(f"cron= takes a string, not {expression!r}")
        if len(expression.split()) != 5 or not croniter.is_valid(expression):
            raise ValueError(
                f"cron= {expression!r} is not a five-field cron expression "
                "(minute hour day-of-month month day-of-week)"
            )
        if timezone_name is None:
            self.zone: Any = timezone.utc
        else:
            try:
                self.zone = ZoneInfo(timezone_name)
            except (ZoneInfoNotFoundError, ValueError, TypeError, OSError, UnicodeError) as exc:
                raise ValueError(f"timezone {timezone_name!r} is not a known time zone") from exc
        self.expression = expression
        self.timezone_name = timezone_name
        self._croniter = croniter
        try:
            self.next_after(_EPOCH + timedelta(days=365 * 56))
        except (CroniterError, ValueError, OverflowError) as exc:
            raise ValueError(f"cron= {expression!r} names no time that ever comes") from exc

    def next_after(self, moment: datetime) -> datetime:
        local = _aware(moment).astimezone(self.zone)
        tick: datetime = self._croniter(self.expression, local).get_next(datetime)
        return tick.astimezone(timezone.utc)

    def latest(self, now: datetime) -> datetime:
        # croniter's get_prev and get_next are both strict: a tick exactly at ``now`` is found
        # as the next tick after a moment just before it.
        now = _aware(now)
        candidate = self.next_after(now - _MICROSECOND)
        if candidate <= now:
            return candidate
        local = now.astimezone(self.zone)
        tick: datetime = self._croniter(self.expression, local).get_prev(datetime)
        return tick.astimezone(timezone.utc)

    def describe(self) -> str:
        zone = f" {self.timezone_name}" if self.timezone_name else ""
        return f"cron {self.expression}{zone}"


def make_spec(
    every: timedelta | float | None, cron: str | None, timezone_name: str | None
) -> ScheduleSpec:
    """The spec of ``schedule(every=...)`` or ``schedule(cron=..., timezone=...)``."""
    if (every is None) == (cron is None):
        raise ValueError("give every= or cron=, exactly one")
    if every is not None:
        if timezone_name is not None:
            raise ValueError("timezone= goes with cron=; every= counts in UTC")
        return Every(every)
    assert cron is not None
    return Cron(cron, timezone_name)
