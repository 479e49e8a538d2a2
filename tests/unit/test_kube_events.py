"""kube.py's memory of recent Events, which turns a repeat into a count: bounded, and only within its window."""

from __future__ import annotations

from servicelink.kube import _RecentEvents, _Recorded


def test_a_repeat_within_the_window_finds_the_event_and_a_later_one_does_not() -> None:
    recent = _RecentEvents(size=8, window=60)
    recent.put(("a",), _Recorded("sl.1", 1, seen=100.0))
    assert recent.get(("a",), now=160.0) == _Recorded("sl.1", 1, seen=100.0)
    assert recent.get(("a",), now=160.5) is None
    assert recent.get(("b",), now=100.0) is None


def test_the_least_recently_seen_event_is_forgotten_first() -> None:
    recent = _RecentEvents(size=2, window=60)
    recent.put(("a",), _Recorded("sl.1", 1, seen=1.0))
    recent.put(("b",), _Recorded("sl.2", 1, seen=2.0))
    recent.put(("a",), _Recorded("sl.1", 2, seen=3.0))  # seen again: now the most recent
    recent.put(("c",), _Recorded("sl.3", 1, seen=4.0))
    assert recent.get(("b",), now=4.0) is None
    assert [recent.get((k,), now=4.0) is not None for k in "ac"] == [True, True]
