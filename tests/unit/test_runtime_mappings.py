"""How soon a WorkloadMapping whose kind is not followed yet is checked again by the mappings' queue."""

from __future__ import annotations

from servicelink.runtime import MAPPING_RECHECK_FIRST, MAPPING_RECHECK_MAX, recheck_delay


def test_a_mapping_not_followed_yet_is_checked_after_two_seconds_then_twice_as_late_up_to_a_minute() -> None:
    assert recheck_delay(None) == MAPPING_RECHECK_FIRST == 2.0
    assert [recheck_delay(d) for d in (2.0, 4.0, 32.0, 60.0)] == [4.0, 8.0, 60.0, 60.0]
    assert MAPPING_RECHECK_MAX == 60.0
