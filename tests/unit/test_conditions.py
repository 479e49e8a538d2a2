"""conditions.py: lastTransitionTime moves only when a condition's status flips."""

from __future__ import annotations

from servicelink import conditions as c
from servicelink.model import Condition

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-02T00:00:00Z"


def cond(
    type_: str, status: str, reason: str, *, time: str | None = None, generation: int = 1, message: str = ""
) -> Condition:
    return Condition.model_validate(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": time,
        }
    )


def test_unchanged_status_keeps_the_transition_time() -> None:
    current = [cond(c.READY, "True", c.RECONCILED, time=T0)]
    merged = c.merge_conditions(current, [cond(c.READY, "True", c.RECONCILED)], now=T1)
    assert merged[0].last_transition_time == T0
    assert merged == current


def test_unchanged_status_with_new_reason_message_and_generation_keeps_the_time() -> None:
    current = [cond(c.RESOLVED_TYPE, "False", c.SERVICE_NOT_FOUND, time=T0, message="a")]
    desired = [cond(c.RESOLVED_TYPE, "False", c.PORT_NOT_FOUND, generation=2, message="b")]
    merged = c.merge_conditions(current, desired, now=T1)
    assert merged[0].last_transition_time == T0
    assert (merged[0].reason, merged[0].message, merged[0].observed_generation) == (c.PORT_NOT_FOUND, "b", 2)


def test_flipped_status_moves_the_transition_time() -> None:
    current = [cond(c.READY, "True", c.RECONCILED, time=T0)]
    merged = c.merge_conditions(current, [cond(c.READY, "False", c.SERVICE_NOT_FOUND)], now=T1)
    assert merged[0].last_transition_time == T1
    assert merged[0].status == "False"


def test_new_condition_gets_now() -> None:
    merged = c.merge_conditions([], [cond(c.SYNCED, "True", c.CONFIGMAP_UP_TO_DATE)], now=T1)
    assert merged[0].last_transition_time == T1


def test_old_condition_without_a_time_gets_now() -> None:
    merged = c.merge_conditions([cond(c.READY, "True", c.RECONCILED)], [cond(c.READY, "True", c.RECONCILED)], now=T1)
    assert merged[0].last_transition_time == T1


def test_each_type_is_judged_on_its_own_and_order_follows_desired() -> None:
    current = [cond(c.READY, "True", c.RECONCILED, time=T0), cond(c.SYNCED, "True", c.CONFIGMAP_UP_TO_DATE, time=T0)]
    desired = [
        cond(c.SYNCED, "True", c.CONFIGMAP_UP_TO_DATE),
        cond(c.READY, "False", c.KEY_CONFLICT),
        cond(c.ROLLED_OUT, "True", c.WORKLOADS_UPDATED),
    ]
    merged = c.merge_conditions(current, desired, now=T1)
    assert [(m.type, m.last_transition_time) for m in merged] == [(c.SYNCED, T0), (c.READY, T1), (c.ROLLED_OUT, T1)]


def test_conditions_not_desired_are_dropped() -> None:
    current = [cond(c.READY, "True", c.RECONCILED, time=T0), cond("Legacy", "True", "Old", time=T0)]
    merged = c.merge_conditions(current, [cond(c.READY, "True", c.RECONCILED)], now=T1)
    assert [m.type for m in merged] == [c.READY]


def test_every_reason_is_declared_for_its_condition_or_for_a_link() -> None:
    """The generated references list REASONS, MAPPING_REASONS, LINK_REASONS, SKIPPED_REASONS and DEFERRED_REASONS;
    a reason left out would be missed."""
    types = {c.READY, c.RESOLVED_TYPE, c.SYNCED, c.ROLLED_OUT}
    declared = {r for table in (c.REASONS, c.MAPPING_REASONS) for reasons in table.values() for r in reasons}
    declared |= set(c.LINK_REASONS) | set(c.SKIPPED_REASONS) | set(c.DEFERRED_REASONS)
    constants = {
        value for name, value in vars(c).items() if name.isupper() and isinstance(value, str) and value not in types
    }
    assert set(c.REASONS) == types
    assert set(c.MAPPING_REASONS) == {c.READY}
    # RESOLVED, a resolved link's own reason and never written, shares its name with the type.
    assert constants - declared == set()
