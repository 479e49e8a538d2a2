"""schedule.py: cron schedules, durations and zones, and whether a moment falls in a rollout window."""

from __future__ import annotations

import datetime

import pytest

from servicelink.schedule import (
    next_opening,
    parse_cron,
    parse_duration,
    parse_window,
    parse_windows_annotation,
)

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


def test_a_schedule_reads_stars_steps_ranges_lists_and_names() -> None:
    cron = parse_cron("*/15 9-17 1,15 JAN-MAR mon-fri")
    assert cron.minutes == {0, 15, 30, 45}
    assert cron.hours == set(range(9, 18))
    assert cron.days == {1, 15}
    assert cron.months == {1, 2, 3}
    assert cron.weekdays == {1, 2, 3, 4, 5}
    assert parse_cron("0 0 * * 7").weekdays == {0}  # 7 is Sunday too


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("0 2 * *", "5 fields"),
        ("61 * * * *", "minute field"),
        ("0 24 * * *", "hour field"),
        ("0 0 0 * *", "day of month field"),
        ("0 0 * 13 *", "month field"),
        ("*/0 * * * *", "step"),
        ("x * * * *", "not a number"),
    ],
)
def test_a_bad_schedule_names_its_field(schedule: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_cron(schedule)


def test_durations_and_their_limits() -> None:
    assert parse_duration("1h30m") == datetime.timedelta(minutes=90)
    assert parse_duration("45s") == datetime.timedelta(seconds=45)
    for bad in ("", "2d", "0s", "169h", "1.5h"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_a_window_is_open_from_its_opening_for_its_duration_in_its_zone() -> None:
    nightly = parse_window("0 2 * * *", "2h", "Europe/Berlin")  # 02:00-04:00 in Berlin: 01:00-03:00 UTC in winter
    assert not nightly.is_open(at("2026-12-07T00:59:59+00:00"))
    assert nightly.is_open(at("2026-12-07T01:00:00+00:00"))
    assert nightly.is_open(at("2026-12-07T02:59:59+00:00"))
    assert not nightly.is_open(at("2026-12-07T03:00:00+00:00"))
    assert nightly.next_open(at("2026-12-07T03:00:00+00:00")) == at("2026-12-08T02:00:00+01:00")
    summer = nightly.next_open(at("2026-07-01T12:00:00+00:00"))
    assert summer == at("2026-07-02T00:00:00+00:00")  # 02:00 Berlin summer time


def test_a_window_that_spans_midnight_and_one_that_rarely_opens() -> None:
    friday_night = parse_window("0 22 * * FRI", "4h")
    assert friday_night.is_open(at("2026-12-12T01:30:00+00:00"))  # Saturday 01:30, opened Friday 22:00
    assert not friday_night.is_open(at("2026-12-12T02:00:00+00:00"))
    leap = parse_window("0 0 29 2 *", "1h")
    assert leap.next_open(at("2026-12-07T00:00:00+00:00")) == at("2028-02-29T00:00:00+00:00")
    assert parse_window("0 0 31 2 *", "1h").next_open(at("2026-12-07T00:00:00+00:00")) is None


def test_either_day_field_matches_when_both_are_set_as_in_cron() -> None:
    first_or_monday = parse_window("0 0 1 * MON", "1h")
    assert first_or_monday.next_open(at("2026-12-01T12:00:00+00:00")) == at("2026-12-07T00:00:00+00:00")  # Monday


def test_next_opening_is_now_while_one_is_open_and_with_no_window_at_all() -> None:
    now = at("2026-12-07T10:00:00+00:00")
    assert next_opening([], now) == now
    windows = parse_windows_annotation("0 2 * * * 2h; 0 9 * * MON 3h Europe/Berlin")
    assert next_opening(windows, now) == now  # Monday 11:00 in Berlin: the second is open until 12:00
    assert next_opening(windows, at("2026-12-07T12:00:00+00:00")) == at("2026-12-08T02:00:00+00:00")


def test_the_annotation_reads_always_and_refuses_what_it_cannot_read() -> None:
    assert parse_windows_annotation(" Always ") == []
    refusals = {
        "": "no window",
        "0 2 * * *": "is not 'MIN HOUR",
        "0 2 * * * 2h Mars/Olympus": "time zone",
        "0 2 * * * 2h UTC extra": "is not 'MIN HOUR",
    }
    for bad, problem in refusals.items():
        with pytest.raises(ValueError, match=problem):
            parse_windows_annotation(bad)
