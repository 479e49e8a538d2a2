"""status.py: the status users read with kubectl, and that an unchanged reconcile leaves it unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from servicelink import conditions as c
from servicelink.consent import Skipped
from servicelink.model import Condition, RolledOut, ServiceLinkStatus, parse_spec
from servicelink.render import render_hash
from servicelink.resolve import LinkResult
from servicelink.rollout import Deferred
from servicelink.status import (
    Verdict,
    describe_invalid_spec,
    judge_resolution,
    judge_rollout,
    judge_sync,
    parse_conditions,
    parse_deferred,
    render_invalid_status,
    render_link_entries,
    render_status,
)
from servicelink.views import Endpoints, Progress

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-02T00:00:00Z"
AUTH = "http://auth-service.identity.svc.cluster.local:3001"

AUTH_OK = LinkResult(
    key="AUTH_SERVICE_URL",
    service="identity/auth-service",
    value=AUTH,
    reason=c.RESOLVED,
    message="",
    endpoints=Endpoints(ready=2, total=3),
)
MONGO_OK = LinkResult(
    key="MONGODB_HOST",
    service="gallery/mongodb",
    value="mongodb",
    reason=c.RESOLVED,
    message="",
    endpoints=Endpoints(ready=0, total=1),
)
CART_MISSING = LinkResult(
    key="CART_URL",
    service="gallery/cart",
    value=None,
    reason=c.SERVICE_NOT_FOUND,
    message="Service gallery/cart not found (links[key=CART_URL].service)",
)
SYNCED = Verdict(True, c.CONFIGMAP_UP_TO_DATE, "ConfigMap gallery/cm holds the 2 keys of this ServiceLink")
ROLLED = Verdict(True, c.WORKLOADS_UPDATED, "consumers carry its current hash")
VALUES = {"MONGODB_HOST": "mongodb", "AUTH_SERVICE_URL": AUTH}


def status(
    *,
    results: list[LinkResult] | None = None,
    values: dict[str, str] | None = None,
    synced: Verdict = SYNCED,
    rolled: Verdict = ROLLED,
    conflicts: dict[str, str] | None = None,
    skipped: list[Skipped] | None = None,
    current: list[Condition] | None = None,
    generation: int = 3,
    now: str = T0,
) -> dict[str, Any]:
    return render_status(
        generation=generation,
        results=[AUTH_OK, MONGO_OK] if results is None else results,
        values=VALUES if values is None else values,
        conflicts=conflicts or {},
        synced=synced,
        rolled=rolled,
        rolled_out=[RolledOut(kind="Deployment", name="gateway-service", hash=render_hash(VALUES))],
        skipped=skipped or [],
        current_conditions=current or [],
        now=now,
    )


def by_type(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cond["type"]: cond for cond in rendered["conditions"]}


def test_healthy_status_has_the_four_conditions_true_with_generation() -> None:
    rendered = status()
    assert [cond["type"] for cond in rendered["conditions"]] == ["Ready", "Resolved", "Synced", "RolledOut"]
    conds = by_type(rendered)
    assert {t: (v["status"], v["reason"]) for t, v in conds.items()} == {
        "Ready": ("True", "Reconciled"),
        "Resolved": ("True", "AllServicesFound"),
        "Synced": ("True", "ConfigMapUpToDate"),
        "RolledOut": ("True", "WorkloadsUpdated"),
    }
    assert all(cond["observedGeneration"] == 3 for cond in rendered["conditions"])
    assert all(cond["lastTransitionTime"] == T0 for cond in rendered["conditions"])
    assert rendered["observedGeneration"] == 3


def test_status_reports_values_hash_links_and_rollout() -> None:
    rendered = status()
    assert rendered["values"] == VALUES
    assert list(rendered["values"]) == ["AUTH_SERVICE_URL", "MONGODB_HOST"]
    assert rendered["hash"] == render_hash(VALUES)
    assert rendered["links"] == [
        {
            "key": "AUTH_SERVICE_URL",
            "service": "identity/auth-service",
            "resolved": True,
            "endpoints": {"ready": 2, "total": 3},
        },
        {"key": "MONGODB_HOST", "service": "gallery/mongodb", "resolved": True, "endpoints": {"ready": 0, "total": 1}},
    ]
    assert rendered["rolledOut"] == [{"kind": "Deployment", "name": "gateway-service", "hash": render_hash(VALUES)}]


def test_skipped_workloads_are_named_only_when_there_are_some() -> None:
    assert "skipped" not in status()
    why = "Deployment gallery/bystander does not read ConfigMap gallery/cm and has not opted in"
    rendered = status(
        skipped=[Skipped(kind="Deployment", name="bystander", reason=c.WORKLOAD_NOT_OPTED_IN, message=why)],
        rolled=Verdict(False, c.WORKLOAD_NOT_OPTED_IN, why),
    )
    assert rendered["skipped"] == [
        {"kind": "Deployment", "name": "bystander", "reason": c.WORKLOAD_NOT_OPTED_IN, "message": why}
    ]
    assert (by_type(rendered)["Ready"]["status"], by_type(rendered)["Ready"]["reason"]) == (
        "False",
        "WorkloadNotOptedIn",
    )


def test_link_and_endpoint_summaries() -> None:
    rendered = status()
    assert rendered["linkSummary"] == "2/2"
    assert rendered["endpointSummary"] == "1/2"  # mongodb has no ready endpoint


def test_missing_service_makes_resolved_and_ready_false_with_its_reason() -> None:
    rendered = status(results=[AUTH_OK, MONGO_OK, CART_MISSING])
    conds = by_type(rendered)
    assert (conds["Resolved"]["status"], conds["Resolved"]["reason"]) == ("False", "ServiceNotFound")
    assert "gallery/cart" in conds["Resolved"]["message"]
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "ServiceNotFound")
    assert rendered["linkSummary"] == "2/3"
    assert rendered["endpointSummary"] == "1/3"
    assert rendered["links"][2] == {
        "key": "CART_URL",
        "service": "gallery/cart",
        "resolved": False,
        "reason": "ServiceNotFound",
        "message": CART_MISSING.message,
    }


def test_key_conflict_shows_on_the_link_and_synced() -> None:
    conflict = "key MONGODB_HOST is already written by ServiceLink gallery/older"
    rendered = status(conflicts={"MONGODB_HOST": conflict}, synced=Verdict(False, c.KEY_CONFLICT, conflict))
    conds = by_type(rendered)
    assert (conds["Synced"]["status"], conds["Synced"]["reason"]) == ("False", "KeyConflict")
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "KeyConflict")
    assert conds["Resolved"]["status"] == "True"
    assert rendered["links"][1]["reason"] == "KeyConflict"
    assert rendered["links"][1]["message"] == conflict


def test_ready_takes_the_first_failing_reason() -> None:
    rendered = status(results=[CART_MISSING], rolled=Verdict(False, c.ROLLOUT_FAILED, "cannot patch"))
    assert by_type(rendered)["Ready"]["reason"] == "ServiceNotFound"
    assert by_type(rendered)["RolledOut"]["reason"] == "RolloutFailed"


def test_equal_inputs_give_equal_status_so_nothing_is_written() -> None:
    first = status(now=T0)
    again = status(current=parse_conditions(first), now=T1)
    assert again == first


def test_transition_time_moves_only_for_the_flipped_condition() -> None:
    first = status(now=T0)
    broken = status(results=[AUTH_OK, MONGO_OK, CART_MISSING], current=parse_conditions(first), now=T1)
    times = {t: v["lastTransitionTime"] for t, v in by_type(broken).items()}
    assert times == {"Ready": T1, "Resolved": T1, "Synced": T0, "RolledOut": T0}


def test_new_generation_updates_observed_generation_but_not_transition_times() -> None:
    first = status(now=T0)
    later = status(current=parse_conditions(first), generation=4, now=T1)
    assert all(cond["observedGeneration"] == 4 for cond in later["conditions"])
    assert all(cond["lastTransitionTime"] == T0 for cond in later["conditions"])


def test_long_messages_are_cut_to_a_readable_length() -> None:
    many = [
        LinkResult(
            key=f"K{i}",
            service=f"gallery/s{i}",
            value=None,
            reason=c.SERVICE_NOT_FOUND,
            message=f"Service gallery/s{i} not found " + "x" * 50,
        )
        for i in range(100)
    ]
    verdict = judge_resolution(many)
    assert not verdict.ok
    assert len(verdict.message) <= 1000
    assert verdict.message.endswith("...")


def test_link_entries_without_endpoints_leave_the_field_out() -> None:
    result = LinkResult(key="A", service="gallery/a", value="http://a:80", reason=c.RESOLVED, message="")
    entries = render_link_entries([result], {})
    assert [entry.model_dump(exclude_none=True) for entry in entries] == [
        {"key": "A", "service": "gallery/a", "resolved": True}
    ]


def test_the_status_written_is_the_models_and_reads_back_into_it() -> None:
    written = status(now=T0)
    assert ServiceLinkStatus.model_validate(written).model_dump(by_alias=True, exclude_none=True, mode="json") == {
        "skipped": [],
        "deferred": [],
        "staleJobs": [],
        **written,
    }


def test_a_field_the_model_lacks_cannot_be_written() -> None:
    with pytest.raises(ValidationError, match="rolledOuts"):
        ServiceLinkStatus.model_validate({"rolledOuts": []})


def test_invalid_spec_keeps_written_values_and_sets_ready_false() -> None:
    first = status(now=T0)
    invalid = render_invalid_status(
        generation=4, message="spec.links.0.key: bad", current=first, current_conditions=parse_conditions(first), now=T1
    )
    assert invalid["values"] == first["values"]
    assert invalid["hash"] == first["hash"]
    assert invalid["observedGeneration"] == 4
    ready = by_type(invalid)["Ready"]
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "InvalidSpec", 4)
    assert ready["lastTransitionTime"] == T1
    assert "spec.links.0.key" in ready["message"]


def test_parse_conditions_drops_unreadable_entries() -> None:
    parsed = parse_conditions(
        {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Reconciled", "lastTransitionTime": T0},
                {"type": "Synced", "status": "Maybe", "reason": "X"},
                {"nonsense": True},
            ]
        }
    )
    assert [cond.type for cond in parsed] == ["Ready"]
    assert parse_conditions({}) == []


def test_judge_sync_reports_the_conflicts_that_kept_keys_out() -> None:
    conflict = "key A of ConfigMap shop/cfg is already written by ServiceLink shop/a; remove it from one of them"
    assert judge_sync(namespace="shop", configmap="cfg", ours={"B": "y"}, conflicts={"A": conflict}) == Verdict(
        False, c.KEY_CONFLICT, conflict
    )
    assert judge_sync(namespace="shop", configmap="cfg", ours={"B": "y"}, conflicts={}) == Verdict(
        True, c.CONFIGMAP_UP_TO_DATE, "ConfigMap shop/cfg holds the 1 keys of this ServiceLink"
    )


def test_describe_invalid_spec_names_each_field() -> None:
    with pytest.raises(ValidationError) as raised:
        parse_spec({"configMapName": "cfg", "links": [{"key": "1X", "service": "a"}, {"key": "B"}]})
    message = describe_invalid_spec(raised.value)
    assert message.startswith("spec.links.0.key: Value error, key '1X' must match")
    assert "; spec.links.1.service: Field required" in message


# --- RolledOut: rollout progress --------------------------------------------------------------------

ROLLING = Progress("Progressing", "Deployment gallery/gateway: new pods not yet available")
STALLED = Progress("Stalled", 'Deployment gallery/gateway: ReplicaSet "gateway-1" has timed out progressing.')
HELD = Deferred(key="AUTH_SERVICE_URL", service="gallery/auth-v2", previous="http://auth-service:3001")


def rollout(**kwargs: Any) -> Verdict:
    given: dict[str, Any] = {"failures": [], "skipped": [], "blocked": [], "progress": [], **kwargs}
    return judge_rollout(namespace="gallery", configmap="cm", **given)


def test_rolled_out_is_true_only_once_every_rolled_consumer_completed() -> None:
    done = rollout(progress=[Progress("Complete")])
    assert (done.ok, done.reason) == (True, c.WORKLOADS_UPDATED)
    rolling = rollout(progress=[Progress("Complete"), ROLLING])
    assert rolling == Verdict(False, c.ROLLOUT_IN_PROGRESS, ROLLING.message)
    assert rollout(progress=[ROLLING, STALLED]) == Verdict(False, c.ROLLOUT_STALLED, STALLED.message)


def test_rolled_out_reasons_come_in_order_of_what_needs_a_hand_first() -> None:
    skipped = [Skipped(kind="Deployment", name="bystander", reason=c.WORKLOAD_NOT_OPTED_IN, message="opt it in")]
    assert rollout(failures=["HTTP 403"], progress=[STALLED]).reason == c.ROLLOUT_FAILED
    assert rollout(skipped=skipped, progress=[STALLED]).reason == c.ROLLOUT_STALLED
    assert rollout(skipped=skipped, blocked=[HELD], progress=[ROLLING]).reason == c.WORKLOAD_NOT_OPTED_IN
    waiting = rollout(blocked=[HELD], progress=[ROLLING])
    assert waiting == Verdict(
        False,
        c.WAITING_FOR_ENDPOINTS,
        "consumers of ConfigMap gallery/cm roll once these Services have a ready endpoint: "
        "gallery/auth-v2 (AUTH_SERVICE_URL)",
    )


@pytest.mark.parametrize("reason", [c.WORKLOAD_OPTED_OUT, c.KIND_IGNORED])
def test_a_workload_held_out_on_purpose_fails_nothing_and_is_counted(reason: str) -> None:
    held = [Skipped(kind="CronJob", name="nightly", reason=reason, message="held")]
    verdict = rollout(skipped=held)
    assert (verdict.ok, verdict.reason) == (True, c.WORKLOADS_UPDATED)
    assert verdict.message.endswith("; 1 opted out or of an ignored kind, never rolled (status.skipped)")
    assert rollout(skipped=held, progress=[ROLLING]).reason == c.ROLLOUT_IN_PROGRESS


def test_an_unchanged_rollout_in_progress_leaves_the_status_as_it_was() -> None:
    """A replica coming up changes no message, so a reconcile mid-rollout writes nothing."""
    first = status(rolled=rollout(progress=[ROLLING]))
    again = status(
        rolled=rollout(progress=[ROLLING]), current=[Condition.model_validate(x) for x in first["conditions"]], now=T1
    )
    assert again == first
    ready = next(cond for cond in first["conditions"] if cond["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", c.ROLLOUT_IN_PROGRESS)


def test_keys_held_back_are_listed_and_read_back() -> None:
    new = render_status(
        generation=1,
        results=[AUTH_OK],
        values={"AUTH_SERVICE_URL": AUTH},
        conflicts={},
        synced=SYNCED,
        rolled=rollout(blocked=[HELD]),
        rolled_out=[],
        skipped=[],
        deferred=[HELD, Deferred(key="NEW", service="gallery/new", previous=None)],
        current_conditions=[],
        now=T0,
    )
    assert new["deferred"] == [
        {
            "key": "AUTH_SERVICE_URL",
            "service": "gallery/auth-v2",
            "previous": "http://auth-service:3001",
            "reason": "WaitingForEndpoints",
        },
        {"key": "NEW", "service": "gallery/new", "reason": "WaitingForEndpoints"},
    ]
    assert parse_deferred(new) == [HELD, Deferred(key="NEW", service="gallery/new", previous=None)]
    assert "deferred" not in status()
