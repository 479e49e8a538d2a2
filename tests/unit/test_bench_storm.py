"""The benchmark's storm: when a consumer counts as on the final values."""

from __future__ import annotations

from bench.compare import settled_at


def test_a_consumer_is_on_the_final_values_at_its_last_rollout_after_its_last_change_was_sent() -> None:
    assert settled_at([1.0, 2.5, 4.0], last_sent=3.0) == 4.0
    assert settled_at([1.0, 3.0], last_sent=3.0) == 3.0


def test_a_consumer_whose_last_rollout_came_before_its_last_change_is_not() -> None:
    assert settled_at([1.0, 2.0], last_sent=3.0) is None


def test_a_consumer_never_rolled_or_never_changed_is_not() -> None:
    assert settled_at([], last_sent=3.0) is None
    assert settled_at([1.0, 2.0], last_sent=None) is None
