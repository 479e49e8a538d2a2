"""Rollout windows: cron schedules, durations and time zones, and whether a moment falls in a window (pure)."""

from __future__ import annotations

import datetime
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

_NAMES = {
    "month": ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    "weekday": ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
}
# Each field of a five-field cron schedule: its name, its lowest and its highest value.
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("weekday", 0, 7))
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
MAX_WINDOW = datetime.timedelta(days=7)
_SEARCH_DAYS = 366 * 5  # far enough for "29 2 *" (February 29th) in any year


@dataclass(frozen=True)
class Cron:
    """A five-field cron schedule, each field the set of values it matches."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday (a 7 is read as 0)
    any_day: bool  # the day-of-month field was "*"
    any_weekday: bool  # the weekday field was "*"

    def matches_day(self, day: datetime.date) -> bool:
        """Whether ``day`` is one the schedule runs on: like cron, either day field matches when both are set."""
        if day.month not in self.months:
            return False
        in_month, in_week = day.day in self.days, day.isoweekday() % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week


def _parse_value(text: str, field: str) -> int:
    names = _NAMES.get(field)
    if names is not None and text.upper() in names:
        return names.index(text.upper()) + (1 if field == "month" else 0)
    if not text.isdigit():
        raise ValueError(f"{field} field: {text!r} is not a number")
    return int(text)


def _parse_field(text: str, field: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        spread, _, step_text = part.partition("/")
        step = _parse_value(step_text, field) if step_text else 1
        if step < 1:
            raise ValueError(f"{field} field: a step must be at least 1")
        if spread == "*":
            first, last = low, high
        elif "-" in spread:
            start, _, end = spread.partition("-")
            first, last = _parse_value(start, field), _parse_value(end, field)
        else:
            first = _parse_value(spread, field)
            last = high if step_text else first
        if not low <= first <= last <= high:
            raise ValueError(f"{field} field: {part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse_cron(text: str) -> Cron:
    """Read a five-field cron schedule (minute hour day-of-month month weekday); raise ``ValueError`` naming the
    field at fault. Fields take ``*``, numbers, ranges ``a-b``, steps ``/n``, lists, and JAN-DEC, SUN-SAT."""
    fields = text.split()
    if len(fields) != len(_FIELDS):
        raise ValueError(f"a schedule has 5 fields (minute hour day-of-month month weekday), not {len(fields)}")
    minutes, hours, days, months, weekdays = (
        _parse_field(value, name, low, high) for value, (name, low, high) in zip(fields, _FIELDS, strict=True)
    )
    return Cron(
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=frozenset(d % 7 for d in weekdays),
        any_day=fields[2] == "*",
        any_weekday=fields[4] == "*",
    )


def parse_duration(text: str) -> datetime.timedelta:
    """Read a duration such as ``2h``, ``90m`` or ``1h30m``; raise ``ValueError`` unless it is 1 s to 7 days."""
    found = _DURATION.match(text.strip())
    if not text.strip() or found is None:
        raise ValueError(f"duration {text!r} is not hours, minutes and seconds such as 2h, 90m or 1h30m")
    hours, minutes, seconds = (int(group or 0) for group in found.groups())
    duration = datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if not datetime.timedelta(seconds=1) <= duration <= MAX_WINDOW:
        raise ValueError(f"duration {text!r} must be from 1s to 168h")
    return duration


def parse_zone(text: str) -> zoneinfo.ZoneInfo:
    """Read an IANA time zone name (``Europe/Berlin``); raise ``ValueError`` for one this machine does not know."""
    try:
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {text!r} is not an IANA time zone name such as Europe/Berlin or UTC") from None


@dataclass(frozen=True)
class Window:
    """A rollout window: it opens at each time ``cron`` matches, in ``zone``, and stays open for ``duration``."""

    cron: Cron
    duration: datetime.timedelta
    zone: zoneinfo.ZoneInfo

    def _openings(self, day: datetime.date, *, latest_first: bool = False) -> Iterator[datetime.datetime]:
        """The moments the window opens on ``day`` (wall-clock time in its zone), in order, as aware datetimes."""
        if not self.cron.matches_day(day):
            return
        hours, minutes = sorted(self.cron.hours, reverse=latest_first), sorted(self.cron.minutes, reverse=latest_first)
        for hour in hours:
            for minute in minutes:
                yield datetime.datetime.combine(day, datetime.time(hour, minute), tzinfo=self.zone)

    def is_open(self, at: datetime.datetime) -> bool:
        """Whether ``at`` (aware) falls in a window: the last opening at or before it is less than ``duration`` ago."""
        day = at.astimezone(self.zone).date()
        first = (at - self.duration).astimezone(self.zone).date()
        while day >= first:
            latest = next((o for o in self._openings(day, latest_first=True) if o <= at), None)
            if latest is not None:
                return at < latest + self.duration
            day -= datetime.timedelta(days=1)
        return False

    def next_open(self, at: datetime.datetime) -> datetime.datetime | None:
        """When the window next opens after ``at`` (aware); None when the schedule never runs (``0 0 31 2 *``)."""
        day = at.astimezone(self.zone).date()
        for _ in range(_SEARCH_DAYS):
            found = next((o for o in self._openings(day) if o > at), None)
            if found is not None:
                return found
            day += datetime.timedelta(days=1)
        return None


def parse_window(schedule: str, duration: str, zone: str = "UTC") -> Window:
    """Build a window from its three fields; raise ``ValueError`` naming what is wrong."""
    return Window(parse_cron(schedule), parse_duration(duration), parse_zone(zone))


def parse_windows_annotation(text: str) -> list[Window]:
    """Read a workload's windows annotation: ``always`` (no window: roll at any time) is ``[]``; else windows
    separated by ``;``, each ``MIN HOUR DOM MONTH WEEKDAY DURATION [ZONE]`` (``0 2 * * * 2h Europe/Berlin``).
    Raise ``ValueError`` naming what is wrong."""
    if text.strip().lower() == "always":
        return []
    windows: list[Window] = []
    for part in (p for p in text.split(";") if p.strip()):
        fields = part.split()
        if len(fields) not in (6, 7):
            raise ValueError(f"{part.strip()!r} is not 'MIN HOUR DOM MONTH WEEKDAY DURATION [ZONE]'")
        windows.append(parse_window(" ".join(fields[:5]), fields[5], fields[6] if len(fields) == 7 else "UTC"))
    if not windows:
        raise ValueError("no window: give at least one, or 'always'")
    return windows


def next_opening(windows: list[Window], at: datetime.datetime) -> datetime.datetime | None:
    """``at`` when a window is open then (or there are none), else when the first of them next opens."""
    if not windows or any(window.is_open(at) for window in windows):
        return at
    found = [opening for window in windows if (opening := window.next_open(at)) is not None]
    return min(found, default=None)
