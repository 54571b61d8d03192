"""Schedule specs: every interval and cron in a time zone; hostile specs are a ValueError."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskflow.schedules.spec import Cron, Every, make_spec

MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
)
CRONS = st.sampled_from(
    ["*/5 * * * *", "0 * * * *", "30 2 * * *", "0 9 * * 1-5", "15,45 */2 * * *", "0 0 1 * *"]
)
ZONES = st.sampled_from([None, "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])


@given(
    interval=st.integers(min_value=100, max_value=10 * 86400 * 1000).map(
        lambda ms: timedelta(milliseconds=ms)
    ),
    now=MOMENTS,
)
def test_every_ticks_surround_any_moment(interval: timedelta, now: datetime) -> None:
    spec = Every(interval)
    latest = spec.latest(now)
    following = spec.next_after(now)
    assert latest <= now < following
    assert following - latest == interval
    assert spec.latest(latest) == latest  # a tick is its own latest tick
    assert spec.next_after(latest) == latest + interval


def test_every_counts_from_the_epoch_so_every_instance_agrees() -> None:
    spec = Every(timedelta(minutes=5))
    now = datetime(2026, 5, 1, 10, 7, 31, 123456, tzinfo=timezone.utc)
    assert spec.latest(now) == datetime(2026, 5, 1, 10, 5, tzinfo=timezone.utc)
    assert spec.next_after(now) == datetime(2026, 5, 1, 10, 10, tzinfo=timezone.utc)
    assert Every(1.5).latest(datetime(1970, 1, 1, 0, 0, 4, tzinfo=timezone.utc)) == datetime(
        1970, 1, 1, 0, 0, 3, tzinfo=timezone.utc
    )


@settings(max_examples=60, deadline=None)
@given(expression=CRONS, zone=ZONES, now=MOMENTS)
def test_cron_ticks_surround_any_moment(expression: str, zone: str | None, now: datetime) -> None:
    spec = Cron(expression, zone)
    latest = spec.latest(now)
    following = spec.next_after(now)
    assert latest <= now < following
    assert spec.next_after(latest) == following or spec.next_after(latest) <= now
    assert latest.tzinfo is not None and following.tzinfo is not None


def test_cron_follows_the_zone_across_daylight_saving_changes() -> None:
    daily = Cron("0 9 * * *", "Europe/Berlin")
    before = daily.next_after(datetime(2026, 3, 27, 12, tzinfo=timezone.utc))
    after = daily.next_after(before)
    assert before == datetime(2026, 3, 28, 8, tzinfo=timezone.utc)  # 09:00 CET (UTC+1)
    assert after == datetime(2026, 3, 29, 7, tzinfo=timezone.utc)  # 09:00 CEST (UTC+2)
    # An hourly schedule keeps its pace through the autumn change: two 02:30 local, one hour apart.
    hourly = Cron("30 * * * *", "Europe/Berlin")
    tick = datetime(2026, 10, 25, 0, 0, tzinfo=timezone.utc)
    ticks = []
    for _ in range(4):
        tick = hourly.next_after(tick)
        ticks.append(tick)
    assert [b - a for a, b in itertools.pairwise(ticks)] == [timedelta(hours=1)] * 3


def test_a_cron_tick_is_its_own_latest() -> None:
    spec = Cron("*/5 * * * *")
    tick = datetime(2026, 1, 1, 10, 5, tzinfo=timezone.utc)
    assert spec.latest(tick) == tick
    assert spec.latest(tick - timedelta(microseconds=1)) == tick - timedelta(minutes=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"every": 5, "cron": "* * * * *"}, "exactly one"),
        ({"every": 0.01}, "at least"),
        ({"every": -1}, "at least"),
        ({"every": float("nan")}, "finite"),
        ({"every": float("inf")}, "finite"),
        ({"every": 1e300}, "too long"),
        ({"every": 5, "timezone": "Europe/Berlin"}, "goes with cron"),
        ({"cron": "* * * *"}, "five-field"),
        ({"cron": "* * * * * *"}, "five-field"),
        ({"cron": "61 * * * *"}, "five-field"),
        ({"cron": "0 0 30 2 *"}, "no time that ever comes"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "time zone"),
        ({"cron": "* * * * *", "timezone": "../../etc/passwd"}, "time zone"),
    ],
)
def test_bad_specs_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_spec(kwargs.get("every"), kwargs.get("cron"), kwargs.get("timezone"))  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(expression=st.text(max_size=40), zone=st.one_of(st.none(), st.text(max_size=30)))
def test_any_text_is_a_spec_or_a_value_error(expression: str, zone: str | None) -> None:
    try:
        spec = Cron(expression, zone)
    except ValueError:
        return
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    assert spec.latest(now) <= now < spec.next_after(now)


def test_a_non_number_interval_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Every("5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Every(True)


def test_cron_without_croniter_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "croniter", None)  # what an environment without it sees
    with pytest.raises(ImportError, match=r"taskflow-kit\[cron\]"):
        Cron("* * * * *")
    assert Every(60).interval.total_seconds() == 60  # every= needs nothing more
