"""plan.py: every decision of a reconcile, on literal objects and the real in-memory Cache (no API server)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from servicelink import conditions as c
from servicelink import plan as planner
from servicelink.cache import Cache
from servicelink.model import (
    CONFIG_HASH_ANNOTATION,
    COOLDOWN_ANNOTATION,
    FIELD_MANAGER,
    FINALIZER,
    ROLLED_AT_ANNOTATION,
    ROLLOUT_ANNOTATION,
    ROLLOUT_WINDOWS_ANNOTATION,
    WORKLOAD_RESOURCES,
    WRITABLE_BY_ANNOTATION,
    parse_spec,
)
from servicelink.render import CONFIGMAP_DATA_LIMIT, render_hash
from servicelink.rollout import Rollout
from servicelink.status import Verdict

NS = "gallery"
T0 = "2026-01-01T00:00:00Z"
AUTH = "http://auth-service:3001"  # same namespace: the short name
MONGO = "mongodb.gallery.svc.cluster.local"


def body(
    name: str = "gateway",
    *links: dict[str, Any],
    configmap: str = "gw",
    status: dict[str, Any] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    **metadata: Any,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "generation": 2,
            "resourceVersion": "7",
            **metadata,
        },
        "spec": {"configMapName": configmap, "links": list(links) or [AUTH_LINK]},
        **({"status": status} if status is not None else {}),
    }


AUTH_LINK = {"key": "AUTH_URL", "service": "auth-service", "port": 3001, "scheme": "http"}
MONGO_LINK = {"key": "MONGO_HOST", "service": "mongodb"}


def service(name: str, port: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS}, "spec": {"ports": [{"port": port}]}}


def slice_of(service_name: str, *ready: bool) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{service_name}-x",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "endpoints": [{"conditions": {"ready": r}} for r in ready],
    }


def deployment(name: str, *, reads: str, config_hash: str | None = None) -> dict[str, Any]:
    annotations = {} if config_hash is None else {CONFIG_HASH_ANNOTATION: config_hash}
    return {
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "3"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [{"envFrom": [{"configMapRef": {"name": reads}}]}]},
            }
        },
    }


def configmap(
    data: dict[str, str], *, ours: tuple[str, ...] = (), owner: str | None = None, shared: bool = False, **others: str
) -> dict[str, Any]:
    """A ConfigMap as the API returns it: ``ours`` applied by servicelink, ``others`` key -> another manager."""
    managed = [{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:data": {f"f:{k}": {} for k in ours}}}]
    managed += [
        {"manager": m, "operation": "Update", "fieldsV1": {"f:data": {f"f:{k}": {}}}} for k, m in others.items()
    ]
    metadata: dict[str, Any] = {"name": "gw", "namespace": NS, "resourceVersion": "41", "managedFields": managed}
    if owner is not None:
        metadata["ownerReferences"] = [{"uid": owner}]
    if shared:
        metadata["annotations"] = {WRITABLE_BY_ANNOTATION: "*"}
    return {"metadata": metadata, "data": data}


def world(*servicelinks: dict[str, Any], ready: bool = True) -> Cache:
    cache = Cache()
    for sl in servicelinks:
        cache.put_servicelink(sl)
    cache.put_service(service("auth-service", 3001))
    cache.put_endpointslice(slice_of("auth-service", ready))
    return cache


def values_of(sl: dict[str, Any], cache: Cache) -> tuple[planner.ServiceLinkView, planner.Values]:
    view = planner.parse_servicelink(sl)
    return view, planner.plan_values(view, spec=parse_spec(sl["spec"]), world=cache, cluster_domain="cluster.local")


# --- The view ------------------------------------------------------------------------------------


def test_the_view_reads_a_servicelink_once_and_tolerates_absent_fields() -> None:
    view = planner.parse_servicelink(
        body(finalizers=["a", FINALIZER], deletionTimestamp=T0, status={"values": {"A": "1"}})
    )
    assert (view.namespace, view.name, view.uid, view.generation, view.resource_version) == (
        NS,
        "gateway",
        "uid-gateway",
        2,
        "7",
    )
    assert view.finalizers == ("a", FINALIZER)
    assert view.deleting
    assert view.previous == {"A": "1"}
    bare = planner.parse_servicelink({})
    assert (bare.name, bare.generation, bare.finalizers, bare.deleting, bare.previous) == ("", 0, (), False, {})


# --- planner.Values and conflicts ------------------------------------------------------------------------


def test_a_resolved_link_is_desired() -> None:
    _, values = values_of(body(), world())
    assert values.desired == {"AUTH_URL": AUTH}
    assert values.conflicts == {}


def test_a_link_whose_service_went_keeps_its_last_value() -> None:
    sl = body("gateway", AUTH_LINK, MONGO_LINK, status={"values": {"MONGO_HOST": "old-mongo"}})
    _, values = values_of(sl, world())
    assert values.desired == {"AUTH_URL": AUTH, "MONGO_HOST": "old-mongo"}
    assert [r.resolved for r in values.results] == [True, False]


def test_a_key_an_older_servicelink_claims_conflicts_and_is_not_written() -> None:
    older = body("older", AUTH_LINK, created="2025-01-01T00:00:00Z")
    mine = body("gateway", AUTH_LINK, MONGO_LINK)
    _, values = values_of(mine, world(older, mine))
    assert values.desired == {}
    assert set(values.conflicts) == {"AUTH_URL"}
    assert "ServiceLink gallery/older" in values.conflicts["AUTH_URL"]
    assert values.siblings == {"AUTH_URL"}


def test_the_older_servicelink_keeps_its_key_and_same_age_goes_by_name() -> None:
    younger = body("younger", AUTH_LINK, created="2027-01-01T00:00:00Z")
    mine = body("gateway", AUTH_LINK)
    _, values = values_of(mine, world(younger, mine))
    assert values.desired == {"AUTH_URL": AUTH}
    assert values.conflicts == {}
    assert values.siblings == {"AUTH_URL"}  # kept as they are in the ConfigMap
    alpha = body("alpha", AUTH_LINK)
    _, values = values_of(mine, world(alpha, mine))
    assert set(values.conflicts) == {"AUTH_URL"}


# --- The ConfigMap write -------------------------------------------------------------------------


def test_a_missing_configmap_is_created_owned_and_needs_no_finalizer() -> None:
    view, values = values_of(body(), world())
    write = planner.plan_write(view, spec=parse_spec(body()["spec"]), values=values, configmap=None)
    assert write.apply is not None
    assert write.apply["data"] == {"AUTH_URL": AUTH}
    assert [ref["uid"] for ref in write.apply["metadata"]["ownerReferences"]] == ["uid-gateway"]
    assert "resourceVersion" not in write.apply["metadata"]
    assert write.finalizers is None
    assert write.outcome.verdict.reason == c.CONFIGMAP_UP_TO_DATE
    assert write.outcome.plan is not None
    assert write.outcome.plan.creates


def test_a_missing_configmap_is_left_to_the_oldest_valid_servicelink_naming_it() -> None:
    older = body("older", MONGO_LINK, created="2025-01-01T00:00:00Z")
    mine = body("gateway", AUTH_LINK)
    view, values = values_of(mine, world(older, mine))
    write = planner.plan_write(view, spec=parse_spec(mine["spec"]), values=values, configmap=None)
    assert write.apply is None
    assert write.finalizers is None
    assert write.outcome.verdict.reason == c.CONFIGMAP_NOT_SHARED
    assert "ServiceLink gallery/older" in write.outcome.verdict.message
    assert f"kubectl annotate configmap gw -n {NS} {WRITABLE_BY_ANNOTATION}=gateway" in write.outcome.verdict.message
    assert planner.plan_recheck(write.outcome) == pytest.approx(15.0)
    # Once it exists, owned by the older one, the ordinary consent rule refuses the same way.
    owned = configmap({}, owner="uid-older")
    assert planner.plan_write(view, spec=parse_spec(mine["spec"]), values=values, configmap=owned).apply is None


@pytest.mark.parametrize(
    "older",
    [
        body("older", created="2025-01-01T00:00:00Z", deletionTimestamp=T0),
        {**body("older", created="2025-01-01T00:00:00Z"), "spec": {"configMapName": "gw", "links": [{"key": 1}]}},
        body("younger", created="2027-01-01T00:00:00Z"),
    ],
    ids=["deleting", "invalid", "younger"],
)
def test_a_missing_configmap_is_created_when_no_older_valid_servicelink_names_it(older: dict[str, Any]) -> None:
    mine = body("gateway", AUTH_LINK)
    view, values = values_of(mine, world(older, mine))
    write = planner.plan_write(view, spec=parse_spec(mine["spec"]), values=values, configmap=None)
    assert write.apply is not None
    assert [ref["uid"] for ref in write.apply["metadata"]["ownerReferences"]] == ["uid-gateway"]


def test_the_next_oldest_valid_servicelink_creates_it_when_the_oldest_is_invalid() -> None:
    invalid = {**body("first", created="2024-01-01T00:00:00Z"), "spec": {"configMapName": "gw", "links": [{}]}}
    second = body("second", MONGO_LINK, created="2025-01-01T00:00:00Z")
    mine = body("gateway", AUTH_LINK)
    _, values = values_of(mine, world(invalid, second, mine))
    assert values.creator == "second"
    _, values = values_of(second, world(invalid, second, mine))
    assert values.creator is None


def test_a_shared_configmap_is_written_at_the_version_consent_was_read_and_holds_deletion() -> None:
    sl = body(finalizers=["other"])
    view, values = values_of(sl, world())
    write = planner.plan_write(
        view, spec=parse_spec(sl["spec"]), values=values, configmap=configmap({"LOG_LEVEL": "debug"}, shared=True)
    )
    assert write.apply is not None
    assert write.apply["metadata"]["resourceVersion"] == "41"
    assert "ownerReferences" not in write.apply["metadata"]
    assert write.finalizers == ["other", FINALIZER]
    held = planner.parse_servicelink(body(finalizers=[FINALIZER]))
    assert write.outcome.plan is not None
    assert planner.plan_hold_finalizers(held, write.outcome.plan) is None


def test_a_configmap_not_shared_is_refused_and_looked_at_again() -> None:
    sl = body(status={"values": {"AUTH_URL": "old"}})
    view, values = values_of(sl, world())
    write = planner.plan_write(
        view, spec=parse_spec(sl["spec"]), values=values, configmap=configmap({"AUTH_URL": "old"})
    )
    assert write.apply is None
    assert write.finalizers is None
    assert write.outcome.verdict.reason == c.CONFIGMAP_NOT_SHARED
    assert write.outcome.values == {"AUTH_URL": "old"}  # the status keeps what was written before
    assert planner.plan_recheck(write.outcome) == pytest.approx(15.0)
    view, values = values_of(body(), world())
    assert (
        planner.plan_recheck(
            planner.plan_write(view, spec=parse_spec(body()["spec"]), values=values, configmap=None).outcome
        )
        is None
    )


def test_a_configmap_holding_the_values_already_is_not_written() -> None:
    sl = body(status={"values": {"AUTH_URL": AUTH}})
    view, values = values_of(sl, world())
    write = planner.plan_write(
        view,
        spec=parse_spec(sl["spec"]),
        values=values,
        configmap=configmap({"AUTH_URL": AUTH}, ours=("AUTH_URL",), owner="uid-gateway"),
    )
    assert write.apply is None
    assert write.outcome.plan is not None
    assert not write.outcome.plan.write
    assert write.outcome.values == {"AUTH_URL": AUTH}


def test_a_removed_key_leaves_the_configmap() -> None:
    sl = body(status={"values": {"AUTH_URL": AUTH, "GONE": "x"}})
    view, values = values_of(sl, world())
    current = configmap({"AUTH_URL": AUTH, "GONE": "x"}, ours=("AUTH_URL", "GONE"), owner="uid-gateway")
    write = planner.plan_write(view, spec=parse_spec(sl["spec"]), values=values, configmap=current)
    assert write.apply is not None
    assert write.apply["data"] == {"AUTH_URL": AUTH}
    assert write.outcome.plan is not None
    assert write.outcome.plan.changes == (("GONE", "x", None),)


def test_a_key_another_manager_holds_conflicts_and_one_it_changed_is_taken_back() -> None:
    sl = body(
        "gateway", AUTH_LINK, {"key": "MONGO_HOST", "service": "auth-service"}, status={"values": {"MONGO_HOST": "x"}}
    )
    view, values = values_of(sl, world())
    current = configmap(
        {"AUTH_URL": "theirs", "MONGO_HOST": "edited"}, owner="uid-gateway", AUTH_URL="helm", MONGO_HOST="kubectl"
    )
    write = planner.plan_write(view, spec=parse_spec(sl["spec"]), values=values, configmap=current)
    assert set(write.outcome.conflicts) == {"AUTH_URL"}
    assert "field manager 'helm'" in write.outcome.conflicts["AUTH_URL"]
    assert write.outcome.verdict.reason == c.KEY_CONFLICT
    assert write.force
    assert write.apply is not None
    assert set(write.apply["data"]) == {"MONGO_HOST"}


def test_a_configmap_over_the_size_limit_is_not_written() -> None:
    view, values = values_of(body(), world())
    full = configmap({"BLOB": "x" * CONFIGMAP_DATA_LIMIT}, shared=True)
    write = planner.plan_write(view, spec=parse_spec(body()["spec"]), values=values, configmap=full)
    assert write.apply is None
    assert write.finalizers is None
    assert write.outcome.verdict.reason == c.CONFIGMAP_TOO_LARGE
    assert write.outcome.plan is None


def test_the_copy_last_seen_decides_only_a_write() -> None:
    sl = body(status={"values": {"AUTH_URL": "old"}})
    view, values = values_of(sl, world())
    spec = parse_spec(sl["spec"])
    seen = configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",), owner="uid-gateway")
    write = planner.plan_write_over_seen(view, spec=spec, values=values, seen=seen)
    assert write is not None
    assert write.apply is not None
    assert write.apply["metadata"]["resourceVersion"] == "41"  # a newer ConfigMap makes the apply fail
    current = configmap({"AUTH_URL": AUTH}, ours=("AUTH_URL",), owner="uid-gateway")
    assert planner.plan_write_over_seen(view, spec=spec, values=values, seen=current) is None  # nothing to write
    not_shared = configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",))
    assert planner.plan_write_over_seen(view, spec=spec, values=values, seen=not_shared) is None  # refused: read again


def test_a_refused_apply_keeps_the_last_values_and_the_conflicts() -> None:
    sl = body(status={"values": {"AUTH_URL": "old"}})
    view, values = values_of(sl, world())
    spec = parse_spec(sl["spec"])
    written = planner.plan_write_failed(
        view,
        spec=spec,
        write=planner.plan_write(view, spec=spec, values=values, configmap=None),
        error="HTTP 403 Forbidden",
    )
    assert written == planner.Written(
        {"AUTH_URL": "old"},
        Verdict(False, c.WRITE_FAILED, "cannot write ConfigMap gallery/gw: HTTP 403 Forbidden"),
        None,
        {},
    )


# --- The rollout ---------------------------------------------------------------------------------


def written_for(
    sl: dict[str, Any], cache: Cache, current: dict[str, Any] | None
) -> tuple[planner.ServiceLinkView, planner.Values, planner.Written]:
    view, values = values_of(sl, cache)
    return view, values, planner.plan_write(view, spec=parse_spec(sl["spec"]), values=values, configmap=current).outcome


def test_the_first_rollout_into_a_new_configmap_rolls_nothing() -> None:
    sl = body()
    cache = world(sl)
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("web", reads="gw"))
    view, values, written = written_for(sl, cache, None)
    assert planner.plan_baseline(view, written) == {"AUTH_URL": AUTH}  # pods waiting for it start with its values
    roll = planner.plan_roll(view, spec=parse_spec(sl["spec"]), values=values, written=written, world=cache)
    assert roll.done is None
    assert roll.rollouts == []


def test_the_first_rollout_into_an_existing_configmap_compares_with_what_it_held() -> None:
    sl = body()
    cache = world(sl)
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("web", reads="gw"))
    view, values, written = written_for(sl, cache, configmap({"AUTH_URL": "before", "X": "1"}, shared=True))
    assert planner.plan_baseline(view, written) == {"AUTH_URL": "before"}
    roll = planner.plan_roll(view, spec=parse_spec(sl["spec"]), values=values, written=written, world=cache)
    assert [(r.name, r.changed_keys) for r in roll.rollouts] == [("web", ("AUTH_URL",))]


def test_a_later_rollout_compares_with_the_last_status_and_held_back_keys() -> None:
    status = {"values": {"AUTH_URL": "old"}, "hash": "h", "deferred": [{"key": "OTHER", "service": "gallery/x"}]}
    sl = body(status=status)
    view, _, written = written_for(
        sl, world(sl), configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",), owner="uid-gateway")
    )
    assert planner.plan_baseline(view, written) == {"AUTH_URL": "old"}  # OTHER had no value before: unset again
    status["deferred"] = [{"key": "AUTH_URL", "service": "gallery/auth-service", "previous": "older"}]
    view = planner.parse_servicelink(body(status=status))
    assert planner.plan_baseline(view, written) == {"AUTH_URL": "older"}


def test_a_later_change_rolls_each_consumer_once() -> None:
    sl = body(status={"values": {"AUTH_URL": "old"}, "hash": render_hash({"AUTH_URL": "old"})})
    cache = world(sl)
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("web", reads="gw"))
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("other", reads="elsewhere"))
    view, values, written = written_for(
        sl, cache, configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",), owner="uid-gateway")
    )
    roll = planner.plan_roll(view, spec=parse_spec(sl["spec"]), values=values, written=written, world=cache)
    assert [(r.kind, r.name, r.hash) for r in roll.rollouts] == [("Deployment", "web", render_hash({"AUTH_URL": AUTH}))]
    assert roll.baseline == {"AUTH_URL": "old"}


def test_no_rollout_when_disabled_or_nothing_was_written() -> None:
    rolled_out = [{"kind": "Deployment", "name": "web", "hash": "h"}]
    sl = body(status={"rolledOut": rolled_out, "deferred": [{"key": "AUTH_URL", "service": "gallery/auth-service"}]})
    sl["spec"]["rollout"] = "None"
    view, values, written = written_for(sl, world(sl), None)
    roll = planner.plan_roll(view, spec=parse_spec(sl["spec"]), values=values, written=written, world=world(sl))
    assert roll.done is not None
    assert roll.done.verdict.reason == c.ROLLOUT_DISABLED
    assert [r.name for r in roll.done.rolled_out] == ["web"]
    sl["spec"]["rollout"] = "Rolling"
    refused = planner.Written({}, Verdict(False, c.CONFIGMAP_NOT_SHARED, "no"), None, {})
    roll = planner.plan_roll(view, spec=parse_spec(sl["spec"]), values=values, written=refused, world=world(sl))
    assert roll.done is not None
    assert roll.done.verdict.reason == c.NO_CHANGE
    assert [d.key for d in roll.done.deferred] == ["AUTH_URL"]  # still owed


def test_a_change_waits_for_a_ready_endpoint_when_asked() -> None:
    sl = body(status={"values": {"AUTH_URL": "old"}, "hash": "h"})
    sl["spec"]["waitForEndpoints"] = True
    cache = world(sl, ready=False)
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("web", reads="gw"))
    view, values, written = written_for(
        sl, cache, configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",), owner="uid-gateway")
    )
    roll = planner.plan_roll(view, spec=parse_spec(sl["spec"]), values=values, written=written, world=cache)
    assert roll.done is not None
    assert roll.done.verdict.reason == c.WAITING_FOR_ENDPOINTS
    assert [(d.key, d.previous) for d in roll.done.deferred] == [("AUTH_URL", "old")]


def rollout(name: str) -> Rollout:
    return Rollout("Deployment", NS, name, "gw", f"hash-{name}", frozenset({"gw"}), ("AUTH_URL",))


def test_the_patches_outcomes_make_the_rollout_verdict() -> None:
    sl = body(status={"rolledOut": [{"kind": "Deployment", "name": "before", "hash": "h"}]})
    view, spec = planner.parse_servicelink(sl), parse_spec(sl["spec"])
    cache = world(sl)
    roll = planner.Roll(None, [rollout("web"), rollout("api"), rollout("late")])
    outcomes = {("Deployment", NS, "web"): None, ("Deployment", NS, "api"): "cannot patch: HTTP 403"}
    rolled = planner.judge_roll(view, spec=spec, roll=roll, outcomes=outcomes, world=cache)
    assert rolled.verdict == Verdict(False, c.ROLLOUT_FAILED, "cannot patch: HTTP 403")
    assert [r.name for r in rolled.rolled_out] == ["web"]
    waiting = planner.judge_roll(view, spec=spec, roll=planner.Roll(None, [rollout("late")]), outcomes={}, world=cache)
    assert waiting.verdict.ok
    assert "1 roll once the other servicelink ConfigMaps" in waiting.verdict.message
    assert [r.name for r in waiting.rolled_out] == ["before"]  # nothing rolled now: the last ones stay


@pytest.mark.parametrize(
    ("outcomes", "reason"),
    [({("Deployment", NS, "web"): "cannot patch: HTTP 422"}, c.ROLLOUT_FAILED), ({}, c.WAITING_FOR_CONFIGMAPS)],
    ids=["refused", "waiting"],
)
def test_a_rollout_held_back_is_recorded_in_the_status_and_rolled_once_after_a_restart(
    outcomes: dict[tuple[str, str, str], str | None], reason: str
) -> None:
    """Memory is lost with the process: the status must say a rollout is owed to a consumer with no entry yet."""
    sl = body(status={"values": {"AUTH_URL": "old"}, "hash": render_hash({"AUTH_URL": "old"})})
    cache = world(sl)
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("web", reads="gw"))
    current = configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",), owner="uid-gateway")
    view, values, written = written_for(sl, cache, current)
    spec = parse_spec(sl["spec"])
    roll = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache)
    assert [r.name for r in roll.rollouts] == ["web"]
    rolled = planner.judge_roll(view, spec=spec, roll=roll, outcomes=outcomes, world=cache)
    assert [(d.key, d.previous, d.reason) for d in rolled.deferred] == [("AUTH_URL", "old", reason)]
    status = planner.plan_status(view, values=values, written=written, rolled=rolled, now="t")
    assert status is not None
    assert status.patch["deferred"] == [
        {"key": "AUTH_URL", "service": f"{NS}/auth-service", "previous": "old", "reason": reason}
    ]
    # The operator dies here; the one after it reads the status back, and the ConfigMap already holds the value.
    after = body(status={**sl["status"], **status.patch})
    written_now = configmap({"AUTH_URL": AUTH}, ours=("AUTH_URL",), owner="uid-gateway")
    view, values, written = written_for(after, cache, written_now)
    roll = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache)
    assert [(r.name, r.changed_keys) for r in roll.rollouts] == [("web", ("AUTH_URL",))]
    done = planner.judge_roll(view, spec=spec, roll=roll, outcomes={("Deployment", NS, "web"): None}, world=cache)
    assert done.deferred == []
    # Patched: it carries its entry, so the next reconcile finds nothing due even if the status lagged.
    patched = deployment("web", reads="gw", config_hash=roll.rollouts[0].hash)
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], patched)
    again = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache)
    assert again.rollouts == []


def rolled_at(name: str, at: str, *, cooldown: str | None = None) -> dict[str, Any]:
    """Deployment ``name`` reading gw, last rolled by servicelink at ``at`` (with its own cooldown, if given)."""
    workload = deployment(name, reads="gw", config_hash=render_hash({"AUTH_URL": "old"}))
    workload["metadata"]["annotations"] = {ROLLED_AT_ANNOTATION: at} | (
        {COOLDOWN_ANNOTATION: cooldown} if cooldown is not None else {}
    )
    return workload


def test_a_consumer_rolled_less_than_its_cooldown_ago_waits_until_it_passes_then_rolls_once() -> None:
    sl = body(status={"values": {"AUTH_URL": "old"}, "hash": render_hash({"AUTH_URL": "old"})})
    sl["spec"]["cooldownSeconds"] = 300
    cache = world(sl)
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], rolled_at("web", "2026-12-07T10:00:00Z"))
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], rolled_at("own", "2026-12-07T10:00:00Z", cooldown="60"))
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], rolled_at("long-ago", "2026-12-07T09:00:00Z"))
    current = configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",), owner="uid-gateway")
    view, values, written = written_for(sl, cache, current)
    spec = parse_spec(sl["spec"])
    at = "2026-12-07T10:02:00Z"  # two minutes after web and own were rolled
    roll = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache, now=at)
    assert [r.name for r in roll.rollouts] == ["long-ago", "own"]  # own's 60 s passed; long-ago's 300 s too
    assert [(h.rollout.name, h.due, h.reason) for h in roll.held] == [("web", "2026-12-07T10:05:00Z", c.COOLING_DOWN)]
    outcomes = {("Deployment", NS, r.name): None for r in roll.rollouts}
    rolled = planner.judge_roll(view, spec=spec, roll=roll, outcomes=outcomes, world=cache)
    assert rolled.verdict == Verdict(
        False,
        c.COOLING_DOWN,
        f"held back: Deployment {NS}/web rolls at 2026-12-07T10:05:00Z (300 s after its last rollout)",
    )
    assert [(d.key, d.reason, d.due) for d in rolled.deferred] == [("AUTH_URL", c.COOLING_DOWN, "2026-12-07T10:05:00Z")]
    assert planner.plan_recheck(written, rolled, now=at) == 181.0  # at the due time, a second late
    (event,) = planner.plan_change_events(view, written=written, rolled=rolled).events
    assert event.message.endswith(f"held back Deployment {NS}/web until 2026-12-07T10:05:00Z (CoolingDown)")
    # The status says what is owed; another change meanwhile is planned from it, and still makes one rollout.
    status = planner.plan_status(view, values=values, written=written, rolled=rolled, now=at)
    assert status is not None
    after = body(status={**sl["status"], **status.patch})
    after["spec"]["cooldownSeconds"] = 300
    view = planner.parse_servicelink(after)
    view, values, written = written_for(
        after, cache, configmap({"AUTH_URL": AUTH}, ours=("AUTH_URL",), owner="uid-gateway")
    )
    later = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache, now="2026-12-07T10:04:59Z")
    assert [h.rollout.name for h in later.held] == ["web"]
    due = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache, now="2026-12-07T10:05:00Z")
    assert [(r.name, r.changed_keys) for r in due.rollouts if r.name == "web"] == [("web", ("AUTH_URL",))]
    assert due.held == []


def test_a_consumer_outside_its_rollout_windows_waits_for_the_next_one_and_its_own_windows_win() -> None:
    sl = body(status={"values": {"AUTH_URL": "old"}, "hash": render_hash({"AUTH_URL": "old"})})
    sl["spec"]["rolloutWindows"] = [{"schedule": "0 2 * * *", "duration": "2h", "timeZone": "Europe/Berlin"}]
    cache = world(sl)
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("web", reads="gw"))
    anytime = deployment("anytime", reads="gw")
    anytime["metadata"]["annotations"] = {ROLLOUT_WINDOWS_ANNOTATION: "always"}
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], anytime)
    unreadable = deployment("typo", reads="gw")
    unreadable["metadata"]["annotations"] = {ROLLOUT_WINDOWS_ANNOTATION: "nightly"}  # ignored: the spec's apply
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], unreadable)
    current = configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",), owner="uid-gateway")
    view, values, written = written_for(sl, cache, current)
    spec = parse_spec(sl["spec"])
    noon = "2026-12-07T12:00:00Z"
    roll = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache, now=noon)
    assert [r.name for r in roll.rollouts] == ["anytime"]
    next_night = "2026-12-08T01:00:00Z"  # 02:00 in Berlin
    assert [(h.rollout.name, h.due, h.reason) for h in roll.held] == [
        ("typo", next_night, c.OUTSIDE_WINDOW),
        ("web", next_night, c.OUTSIDE_WINDOW),
    ]
    rolled = planner.judge_roll(view, spec=spec, roll=roll, outcomes={("Deployment", NS, "anytime"): None}, world=cache)
    assert rolled.verdict.reason == c.OUTSIDE_WINDOW
    assert f"Deployment {NS}/web rolls at {next_night} (when its next rollout window opens)" in rolled.verdict.message
    assert [(d.key, d.reason, d.due) for d in rolled.deferred] == [("AUTH_URL", c.OUTSIDE_WINDOW, next_night)]
    assert planner.plan_recheck(written, rolled, now=noon) == 13 * 3600 + 1.0
    night = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache, now="2026-12-08T02:30:00Z")
    assert [r.name for r in night.rollouts] == ["anytime", "typo", "web"]


def test_a_window_the_spec_cannot_use_is_refused_naming_it() -> None:
    spec = body()["spec"] | {"rolloutWindows": [{"schedule": "0 25 * * *", "duration": "2h"}]}
    with pytest.raises(ValidationError, match="hour field"):
        parse_spec(spec)
    spec["rolloutWindows"] = [{"schedule": "0 2 * * *", "duration": "2h", "timeZone": "Mars/Olympus"}]
    with pytest.raises(ValidationError, match="time zone"):
        parse_spec(spec)


def cronjob(name: str, *, reads: str) -> dict[str, Any]:
    """A CronJob whose Jobs' pods read ConfigMap ``reads``: the pod template is its jobTemplate's."""
    template = deployment(name, reads=reads)["spec"]["template"]
    return {
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "5"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}},
    }


def test_a_cronjob_is_patched_like_any_consumer_and_rolled_out_waits_only_for_the_others() -> None:
    sl = body(status={"values": {"AUTH_URL": "old"}, "hash": render_hash({"AUTH_URL": "old"})})
    cache = world(sl)
    cache.put_workload(WORKLOAD_RESOURCES["CronJob"], cronjob("report", reads="gw"))
    cache.put_workload(WORKLOAD_RESOURCES["CronJob"], cronjob("unrelated", reads="elsewhere"))
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("web", reads="gw"))
    view, values, written = written_for(
        sl, cache, configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",), owner="uid-gateway")
    )
    spec = parse_spec(sl["spec"])
    roll = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache)
    assert [(r.kind, r.name) for r in roll.rollouts] == [("CronJob", "report"), ("Deployment", "web")]
    outcomes = {(r.kind, NS, r.name): None for r in roll.rollouts}
    rolled = planner.judge_roll(view, spec=spec, roll=roll, outcomes=outcomes, world=cache)
    # Both are listed; only the Deployment's new pods are waited for.
    assert [(r.kind, r.name) for r in rolled.rolled_out] == [("CronJob", "report"), ("Deployment", "web")]
    assert rolled.verdict == Verdict(False, c.ROLLOUT_IN_PROGRESS, f"Deployment {NS}/web: new pods not yet available")
    (event,) = planner.plan_change_events(view, written=written, rolled=rolled).events
    assert event.message.endswith(f"rolled CronJob {NS}/report (its next Jobs), Deployment {NS}/web")
    only_cronjob = planner.Roll(None, roll.rollouts[:1], baseline=roll.baseline)
    alone = planner.judge_roll(view, spec=spec, roll=only_cronjob, outcomes=outcomes, world=cache)
    assert alone.verdict.ok
    assert alone.verdict.reason == c.WORKLOADS_UPDATED


def test_a_consumer_opted_out_or_of_an_ignored_kind_is_skipped_named_as_not_rolled_and_changes_nothing_else() -> None:
    before = {"values": {"AUTH_URL": "old"}, "hash": render_hash({"AUTH_URL": "old"})}
    sl = body(status=before)
    cache = world(sl)
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("web", reads="gw"))
    current = configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",), owner="uid-gateway")
    spec = parse_spec(sl["spec"])
    view, values, written = written_for(sl, cache, current)
    alone = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache)
    held = deployment("held", reads="gw")
    held["metadata"]["annotations"] = {ROLLOUT_ANNOTATION: "never"}
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], held)
    cache.put_workload(WORKLOAD_RESOURCES["CronJob"], cronjob("report", reads="gw"))
    view, values, written = written_for(sl, cache, current)
    ignored = frozenset({"CronJob"})
    roll = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache, ignored_kinds=ignored)
    assert roll.rollouts == alone.rollouts
    assert [(r.kind, r.name) for r in roll.rollouts] == [("Deployment", "web")]
    assert [(s.kind, s.name, s.reason, s.keys) for s in roll.skipped] == [
        ("CronJob", "report", c.KIND_IGNORED, ("AUTH_URL",)),
        ("Deployment", "held", c.WORKLOAD_OPTED_OUT, ("AUTH_URL",)),
    ]
    rolled = planner.judge_roll(view, spec=spec, roll=roll, outcomes={("Deployment", NS, "web"): None}, world=cache)
    assert rolled.verdict.reason == c.ROLLOUT_IN_PROGRESS  # web's new pods; the two held out fail nothing
    (event,) = planner.plan_change_events(view, written=written, rolled=rolled).events
    assert event.message.endswith(
        f"rolled Deployment {NS}/web; not rolled CronJob {NS}/report (KindIgnored), Deployment {NS}/held"
        " (WorkloadOptedOut)"
    )
    status = planner.plan_status(view, values=values, written=written, rolled=rolled, now=T0)
    assert status is not None
    assert [(e["kind"], e["name"], e["reason"]) for e in status.patch["skipped"]] == [
        ("CronJob", "report", c.KIND_IGNORED),
        ("Deployment", "held", c.WORKLOAD_OPTED_OUT),
    ]
    # Once the change is in the status, the next reconcile holds nothing back: no Event names them again.
    after = body(status={"values": {"AUTH_URL": AUTH}, "hash": render_hash({"AUTH_URL": AUTH})})
    view, values, written = written_for(
        after, cache, configmap({"AUTH_URL": AUTH}, ours=("AUTH_URL",), owner="uid-gateway")
    )
    again = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache, ignored_kinds=ignored)
    assert [(s.name, s.reason, s.keys) for s in again.skipped] == [
        ("report", c.KIND_IGNORED, ()),
        ("held", c.WORKLOAD_OPTED_OUT, ()),
    ]


def rollout_by_ref(name: str, deployment: str, **status: str) -> dict[str, Any]:
    """An Argo Rollout with no template of its own: its ``spec.workloadRef`` names the Deployment that holds it."""
    return {
        "metadata": {"name": name, "namespace": NS, "generation": 1, "resourceVersion": "9"},
        "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment}},
        "status": {"observedGeneration": "1", "phase": "Healthy", **status},
    }


def test_a_deployment_an_argo_rollout_runs_the_template_of_is_named_with_it_and_rolled_out_waits_for_it() -> None:
    sl = body(status={"values": {"AUTH_URL": "old"}, "hash": render_hash({"AUTH_URL": "old"})})
    cache = world(sl)
    template = deployment("by-ref-template", reads="gw")
    template["metadata"]["generation"] = 4
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], template)
    cache.put_workload(
        WORKLOAD_RESOURCES["Rollout"], rollout_by_ref("by-ref", "by-ref-template", workloadObservedGeneration="4")
    )
    view, values, written = written_for(
        sl, cache, configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",), owner="uid-gateway")
    )
    spec = parse_spec(sl["spec"])
    roll = planner.plan_roll(view, spec=spec, values=values, written=written, world=cache)
    assert [(r.kind, r.name) for r in roll.rollouts] == [("Deployment", "by-ref-template")]  # the Rollout: never
    outcomes = {(r.kind, NS, r.name): None for r in roll.rollouts}
    rolled = planner.judge_roll(view, spec=spec, roll=roll, outcomes=outcomes, world=cache)
    named = f"Deployment {NS}/by-ref-template (the template of Rollout {NS}/by-ref)"
    unseen = f"Rollout {NS}/by-ref: Argo Rollouts has not yet seen the new template of Deployment {NS}/by-ref-template"
    # status.rolledOut keeps what was patched; the Event names the Rollout too, and RolledOut waits for the Rollout.
    assert [(r.kind, r.name) for r in rolled.rolled_out] == [("Deployment", "by-ref-template")]
    assert rolled.verdict == Verdict(False, c.ROLLOUT_IN_PROGRESS, unseen)
    (event,) = planner.plan_change_events(view, written=written, rolled=rolled).events
    assert event.reason == "ValueChanged"
    assert event.message.endswith(f"rolled {named}")
    # Argo Rollouts keeps the Deployment at zero replicas: it is done at once, but the Rollout has not seen it.
    template["metadata"]["generation"] = 5
    template["spec"]["replicas"] = 0
    template["status"] = {"observedGeneration": 5}
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], template)
    later = planner.parse_servicelink(body(status={"rolledOut": [r.model_dump() for r in rolled.rolled_out]}))

    def judged() -> Verdict:
        return planner.judge_roll(later, spec=spec, roll=planner.Roll(None), outcomes={}, world=cache).verdict

    assert judged() == Verdict(False, c.ROLLOUT_IN_PROGRESS, unseen)
    # Seen, the new revision is at a pause step; then aborted; then healthy.
    seen = rollout_by_ref("by-ref", "by-ref-template", workloadObservedGeneration="5", phase="Paused")
    cache.put_workload(WORKLOAD_RESOURCES["Rollout"], seen)
    paused = f"Rollout {NS}/by-ref: paused; its steps go on once promoted or resumed"
    assert judged() == Verdict(False, c.ROLLOUT_IN_PROGRESS, paused)
    cache.put_workload(WORKLOAD_RESOURCES["Rollout"], {**seen, "status": {**seen["status"], "phase": "Degraded"}})
    assert judged() == Verdict(False, c.ROLLOUT_STALLED, f"Rollout {NS}/by-ref: degraded")
    cache.put_workload(WORKLOAD_RESOURCES["Rollout"], {**seen, "status": {**seen["status"], "phase": "Healthy"}})
    done = judged()
    assert done.reason == c.WORKLOADS_UPDATED
    assert "waited" not in done.message
    # Gone, the Rollout is no longer named nor followed: the Deployment is.
    cache.drop_workload("Rollout", NS, "by-ref")
    alone = judged()
    assert alone.reason == c.WORKLOADS_UPDATED
    assert "Rollout" not in alone.message


# --- Jobs ----------------------------------------------------------------------------------------


def job(name: str, *, reads: str, config_hash: str | None = None, complete: bool = False) -> dict[str, Any]:
    """A Job whose pods read ConfigMap ``reads``; running unless ``complete``."""
    template = deployment(name, reads=reads, config_hash=config_hash)["spec"]["template"]
    status = {"conditions": [{"type": "Complete", "status": "True"}]} if complete else {"active": 1}
    return {
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "9"},
        "spec": {"template": template},
        "status": status,
    }


def stale_after(sl: dict[str, Any], cache: Cache, current: dict[str, Any] | None) -> list[planner.StaleJob]:
    view, _, written = written_for(sl, cache, current)
    return planner.plan_stale_jobs(view, spec=parse_spec(sl["spec"]), written=written, world=cache)


def test_a_change_lists_the_running_jobs_on_old_values_with_one_warning_and_a_resync_nothing_new() -> None:
    sl = body(status={"values": {"AUTH_URL": "old"}, "hash": render_hash({"AUTH_URL": "old"})})
    cache = world(sl)
    cache.put_job(job("migrate", reads="gw"))
    cache.put_job(job("elsewhere", reads="other"))
    cache.put_job(job("done", reads="gw", complete=True))
    cache.put_job(job("fresh", reads="gw", config_hash=render_hash({"AUTH_URL": AUTH})))  # from an annotated CronJob
    current = configmap({"AUTH_URL": "old"}, ours=("AUTH_URL",), owner="uid-gateway")
    stale = stale_after(sl, cache, current)
    assert [(j.name, j.hash, j.keys) for j in stale] == [("migrate", "unknown", ["AUTH_URL"])]
    view = planner.parse_servicelink(sl)
    (event,) = planner.plan_stale_job_events(view, stale)
    assert (event.reason, event.warning) == ("StaleJobs", True)
    assert event.message.startswith(f"Job {NS}/migrate runs on old values of AUTH_URL (started on config hash unknown)")
    # The status now lists it; the next reconcile (nothing written) keeps it and says nothing.
    listed = {
        "values": {"AUTH_URL": AUTH},
        "hash": render_hash({"AUTH_URL": AUTH}),
        "staleJobs": [s.model_dump() for s in stale],
    }
    after = body(status=listed)
    again = stale_after(after, cache, configmap({"AUTH_URL": AUTH}, ours=("AUTH_URL",), owner="uid-gateway"))
    assert again == stale
    assert planner.plan_stale_job_events(planner.parse_servicelink(after), again) == []
    # Once it finishes, it leaves the list.
    cache.put_job(job("migrate", reads="gw", complete=True))
    assert stale_after(after, cache, None) == []


def test_no_job_is_stale_when_the_configmap_is_created_or_not_written() -> None:
    sl = body()
    cache = world(sl)
    cache.put_job(job("migrate", reads="gw"))
    assert stale_after(sl, cache, None) == []  # its pods waited for the ConfigMap, or started without it
    refused = body(status={"values": {"AUTH_URL": "old"}, "hash": "h"})
    not_shared = configmap({"AUTH_URL": "old"})  # nothing written: no change reached the Job
    assert stale_after(refused, cache, not_shared) == []


# --- Events --------------------------------------------------------------------------------------


def rolled_web(view: planner.ServiceLinkView, sl: dict[str, Any]) -> planner.Rolled:
    """What the rollout step achieved when it patched Deployment web."""
    return planner.judge_roll(
        view,
        spec=parse_spec(sl["spec"]),
        roll=planner.Roll(None, [rollout("web")]),
        outcomes={("Deployment", NS, "web"): None},
        world=world(sl),
    )


def test_a_write_is_one_event_naming_values_and_consumers_and_drift_is_a_warning() -> None:
    sl = body(
        "gateway", AUTH_LINK, {"key": "MONGO_HOST", "service": "auth-service"}, status={"values": {"MONGO_HOST": "x"}}
    )
    view, _, written = written_for(
        sl, world(sl), configmap({"MONGO_HOST": "edited"}, owner="uid-gateway", MONGO_HOST="kubectl")
    )
    rolled = rolled_web(view, sl)
    changes = planner.plan_change_events(view, written=written, rolled=rolled)
    assert changes.values_changed == 2
    assert [(e.reason, e.warning) for e in changes.events] == [("ValueChanged", False), ("DriftRepaired", True)]
    assert changes.events[0].message.endswith("rolled Deployment gallery/web")
    assert "MONGO_HOST: edited -> " in changes.events[0].message


def test_a_rollout_alone_is_a_rolled_out_event_and_no_change_is_none() -> None:
    sl = body(status={"values": {"AUTH_URL": AUTH}})
    view, _, written = written_for(
        sl, world(sl), configmap({"AUTH_URL": AUTH}, ours=("AUTH_URL",), owner="uid-gateway")
    )
    nothing = planner.judge_roll(
        view, spec=parse_spec(sl["spec"]), roll=planner.Roll(None), outcomes={}, world=world(sl)
    )
    assert planner.plan_change_events(view, written=written, rolled=nothing).events == []
    rolled = rolled_web(view, sl)
    events = planner.plan_change_events(view, written=written, rolled=rolled).events
    assert events == [planner.Event("RolledOut", "rolled Deployment gallery/web onto the ConfigMap's current values")]


def condition(kind: str, reason: str, status: str = "False", message: str = "m") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def test_problems_new_since_the_last_status_are_warnings() -> None:
    link = {"key": "A", "reason": c.SERVICE_NOT_FOUND, "message": "gone"}
    conflict = {"key": "B", "reason": c.KEY_CONFLICT, "message": "taken"}
    before = {"links": [link], "conditions": [condition(c.SYNCED, c.WRITE_FAILED)]}
    after = {
        "links": [link, conflict, {"key": "C", "resolved": True}],
        "conditions": [
            condition(c.SYNCED, c.WRITE_FAILED),  # not new
            condition(c.SYNCED, c.KEY_CONFLICT),  # told by its link
            condition(c.ROLLED_OUT, c.ROLLOUT_STALLED),
            condition(c.READY, c.ROLLOUT_STALLED),  # Ready repeats another condition
        ],
    }
    assert planner.plan_problem_events(before, after) == [
        planner.Event(c.KEY_CONFLICT, "taken", warning=True),
        planner.Event(c.ROLLOUT_STALLED, "m", warning=True),
    ]


@pytest.mark.parametrize("reason", [c.ROLLOUT_IN_PROGRESS, c.WAITING_FOR_ENDPOINTS, c.NO_CHANGE])
def test_a_rollout_that_passes_is_no_problem(reason: str) -> None:
    assert planner.plan_problem_events({}, {"conditions": [condition(c.ROLLED_OUT, reason)]}) == []


# --- Status --------------------------------------------------------------------------------------


def test_the_status_is_written_once_and_an_unchanged_one_not_at_all() -> None:
    sl = body()
    view, values, written = written_for(sl, world(sl), None)
    rolled = planner.judge_roll(
        view, spec=parse_spec(sl["spec"]), roll=planner.Roll(None), outcomes={}, world=world(sl)
    )
    write = planner.plan_status(view, values=values, written=written, rolled=rolled, now=T0)
    assert write is not None
    assert write.patch["values"] == {"AUTH_URL": AUTH}
    assert write.events == []
    assert "staleJobs" not in write.patch  # only when there are some
    entry = planner.StaleJob(name="migrate", hash="unknown", keys=["AUTH_URL"])
    listed = planner.plan_status(view, values=values, written=written, rolled=rolled, now=T0, stale_jobs=[entry])
    assert listed is not None
    assert listed.patch["staleJobs"] == [{"name": "migrate", "hash": "unknown", "keys": ["AUTH_URL"]}]
    again = planner.parse_servicelink(body(status=write.patch))
    assert planner.plan_status(again, values=values, written=written, rolled=rolled, now="2030-01-01T00:00:00Z") is None


def test_a_removed_key_is_nulled_in_the_status_patch() -> None:
    sl = body(status={"values": {"AUTH_URL": AUTH, "GONE": "x"}, "skipped": [{"kind": "Deployment"}]})
    view, values, written = written_for(sl, world(sl), None)
    rolled = planner.judge_roll(
        view, spec=parse_spec(sl["spec"]), roll=planner.Roll(None), outcomes={}, world=world(sl)
    )
    write = planner.plan_status(view, values=values, written=written, rolled=rolled, now=T0)
    assert write is not None
    assert write.patch["values"] == {"GONE": None, "AUTH_URL": AUTH}
    assert write.patch["skipped"] is None


def test_an_invalid_spec_is_one_warning_and_keeps_the_values() -> None:
    view = planner.parse_servicelink(body(status={"values": {"A": "1"}}))
    write = planner.plan_invalid_status(view, "spec.links: too short", now=T0)
    assert write is not None
    assert "values" not in write.patch
    assert [c["reason"] for c in write.patch["conditions"]] == [c.INVALID_SPEC]
    assert write.events == [planner.Event(c.INVALID_SPEC, "spec.links: too short", warning=True)]
    again = planner.parse_servicelink(body(status={"values": {"A": "1"}, **write.patch}))
    assert planner.plan_invalid_status(again, "spec.links: too short", now="2030-01-01T00:00:00Z") is None


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies a merge patch."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


statuses = st.fixed_dictionaries(
    {},
    optional={
        "values": st.dictionaries(st.sampled_from("ABCDE"), st.text(max_size=3)),
        "hash": st.text(max_size=3),
        "observedGeneration": st.integers(0, 3),
        "links": st.lists(st.fixed_dictionaries({"key": st.sampled_from("AB")}), max_size=2),
    },
)


@given(current=statuses, new=statuses)
def test_the_status_patch_turns_the_old_status_into_the_new(current: dict[str, Any], new: dict[str, Any]) -> None:
    assert apply_merge_patch(current, planner.render_merge_patch(current, new)) == new


# --- Deletion ------------------------------------------------------------------------------------


def test_deletion_withdraws_our_keys_from_a_shared_configmap_and_then_the_finalizer() -> None:
    sl = body(finalizers=["other", FINALIZER], deletionTimestamp=T0)
    view = planner.parse_servicelink(sl)
    assert planner.plan_release_finalizers(view) == ["other"]
    assert planner.plan_release_finalizers(planner.parse_servicelink(body())) is None
    sibling = body("sibling", {"key": "KEPT", "service": "auth-service"})
    cache = world(sibling)
    shared = configmap({"AUTH_URL": AUTH, "KEPT": "k", "X": "1"}, ours=("AUTH_URL", "KEPT"), shared=True)
    apply = planner.plan_release(view, configmap_name="gw", configmap=shared, claims=cache.claims(NS, "gw")).apply
    assert apply is not None
    assert apply["data"] == {"KEPT": "k"}
    assert apply["metadata"]["resourceVersion"] == "41"
    assert planner.plan_release(view, configmap_name="gw", configmap=None, claims=[]) == planner.Release(None)
    owned = configmap({"AUTH_URL": AUTH}, ours=("AUTH_URL",), owner="uid-gateway")
    assert planner.plan_release(view, configmap_name="gw", configmap=owned, claims=[]) == planner.Release(
        None
    )  # it goes with its owner
    withdrawn = planner.plan_release(
        view, configmap_name="gw", configmap=configmap({"AUTH_URL": AUTH}, ours=("AUTH_URL",)), claims=[]
    )
    assert withdrawn.apply is None
    assert "no longer shared" in withdrawn.kept


# --- The Secret ----------------------------------------------------------------------------------------

PASSWORD = "p@ss:w/rd"
DB_LINK = {"key": "DATABASE_URL", "service": "auth-service", "scheme": "postgres", "credentials": {"secretName": "pg"}}


def with_secret(*links: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    sl = body("app", AUTH_LINK, *links, status=status)
    sl["spec"]["secretName"] = "app-secrets"
    return sl


def shared_secret(password: str, *, version: str = "5") -> dict[str, Any]:
    return {
        "metadata": {
            "name": "pg",
            "namespace": NS,
            "resourceVersion": version,
            "labels": {"servicelink.dev/shared": "true"},
            "annotations": {"servicelink.dev/readable-by": "app"},
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in {"username": "u", "password": password}.items()},
    }


def secret_world(sl: dict[str, Any], password: str = PASSWORD) -> Cache:
    cache = world(sl)
    cache.keep_secrets()
    cache.put_secret(shared_secret(password))
    return cache


def written_secret(data: dict[str, str], *, ours: tuple[str, ...] = ()) -> dict[str, Any]:
    """The Secret spec.secretName names as the API returns it, owned by the ServiceLink app."""
    found = configmap({k: base64.b64encode(v.encode()).decode() for k, v in data.items()}, ours=ours, owner="uid-app")
    found["metadata"]["name"] = "app-secrets"
    return found


def secret_step(sl: dict[str, Any], cache: Cache, secret: dict[str, Any] | None) -> planner.SecretWrite:
    view, values = values_of(sl, cache)
    write = planner.plan_secret_write(
        view, spec=parse_spec(sl["spec"]), values=values, secret=secret, writers=cache.secret_writers(NS, "app-secrets")
    )
    assert write is not None
    return write


def test_a_value_with_credentials_is_applied_to_the_secret_alone_and_the_new_secret_rolls_nothing() -> None:
    sl = with_secret(DB_LINK)
    cache = secret_world(sl)
    assert "DATABASE_URL" not in values_of(sl, cache)[1].desired
    write = secret_step(sl, cache, None)
    assert write.apply is not None
    assert write.apply["kind"] == "Secret"
    assert "type" not in write.apply
    assert write.apply["metadata"]["ownerReferences"][0]["uid"] == "uid-app"
    url = base64.b64decode(write.apply["data"]["DATABASE_URL"]).decode()
    assert url == "postgres://u:p%40ss%3Aw%2Frd@auth-service:3001"
    assert write.outcome.before == write.outcome.after  # created: the pods waiting for it start with it
    assert write.outcome.changed == []
    assert PASSWORD not in repr(write.outcome)


def test_a_rotated_password_changes_the_digest_and_is_told_as_changed_only() -> None:
    sl = with_secret(DB_LINK)
    old = secret_step(sl, secret_world(sl), None).apply
    assert old is not None
    current = written_secret(
        {"DATABASE_URL": base64.b64decode(old["data"]["DATABASE_URL"]).decode()}, ours=("DATABASE_URL",)
    )
    unchanged = secret_step(sl, secret_world(sl), current)
    assert (unchanged.apply, unchanged.outcome.changed) == (None, [])
    rotated = secret_step(sl, secret_world(sl, "other"), current)
    assert rotated.apply is not None
    assert rotated.outcome.changed == ["DATABASE_URL"]
    written = planner.join_written(
        planner.Written({}, Verdict(True, c.CONFIGMAP_UP_TO_DATE, "ok"), None, {}), rotated.outcome
    )
    assert written.digests["DATABASE_URL"].startswith("sha256:")
    assert planner.describe_change("DATABASE_URL", "a", "b", secret=True) == "DATABASE_URL: changed (in the Secret)"


def test_a_secret_another_owner_did_not_share_is_not_written() -> None:
    sl = with_secret(DB_LINK)
    foreign = written_secret({"OTHER": "x"})
    foreign["metadata"].pop("ownerReferences")
    write = secret_step(sl, secret_world(sl), foreign)
    assert write.apply is None
    assert write.outcome.verdict is not None
    assert write.outcome.verdict.reason == c.SECRET_NOT_WRITABLE
    assert "kubectl annotate secret app-secrets" in write.outcome.verdict.message


def test_a_secret_two_servicelinks_name_is_written_by_the_first_by_name_only() -> None:
    first, second = with_secret(DB_LINK), with_secret(DB_LINK)
    second["metadata"].update(name="zz", uid="uid-zz")
    cache = secret_world(first)
    cache.put_servicelink(second)
    assert secret_step(first, cache, None).apply is not None
    refused = secret_step(second, cache, None)
    assert refused.apply is None
    assert refused.outcome.verdict is not None
    assert "also spec.secretName of ServiceLink gallery/app" in refused.outcome.verdict.message


def test_a_key_whose_secret_went_unshared_keeps_its_value_in_the_secret() -> None:
    status = {"links": [{"key": "DATABASE_URL", "credentials": {"secretName": "pg"}}]}
    sl = with_secret(DB_LINK, status=status)
    cache = world(sl)
    cache.keep_secrets()  # the Secret pg is not shared (any more)
    current = written_secret({"DATABASE_URL": "postgres://u:old@auth-service:3001"}, ours=("DATABASE_URL",))
    write = secret_step(sl, cache, current)
    assert write.apply is None  # nothing to change: the key keeps its last value
    assert write.outcome.changed == []


def test_deletion_withdraws_our_keys_from_a_shared_secret_and_leaves_an_owned_one_to_the_collector() -> None:
    status = {"links": [{"key": "DATABASE_URL", "credentials": {"secretName": "pg"}}]}
    view = planner.parse_servicelink(with_secret(DB_LINK, status=status))
    shared = written_secret({"DATABASE_URL": "x", "OTHER": "y"}, ours=("DATABASE_URL",))
    shared["metadata"].pop("ownerReferences")
    shared["metadata"]["annotations"] = {WRITABLE_BY_ANNOTATION: "app"}
    release = planner.plan_secret_release(view, secret_name="app-secrets", secret=shared)
    assert release.apply is not None
    assert (release.apply["kind"], release.apply["data"]) == ("Secret", {})
    owned = written_secret({"DATABASE_URL": "x"}, ours=("DATABASE_URL",))
    assert planner.plan_secret_release(view, secret_name="app-secrets", secret=owned).apply is None
    shared["metadata"]["annotations"] = {}
    assert "no longer shared" in planner.plan_secret_release(view, secret_name="app-secrets", secret=shared).kept


def test_a_servicelink_created_again_finds_the_same_digests_and_rolls_nothing() -> None:
    sl = with_secret(DB_LINK)
    created = secret_step(sl, secret_world(sl), None)
    assert created.apply is not None
    url = base64.b64decode(created.apply["data"]["DATABASE_URL"]).decode()
    again = with_secret(DB_LINK)
    again["metadata"]["uid"] = "uid-app-2"  # deleted and applied again: a new uid
    current = written_secret({"DATABASE_URL": url}, ours=("DATABASE_URL",))
    current["metadata"]["ownerReferences"] = [{"uid": "uid-app-2"}]
    step = secret_step(again, secret_world(again), current)
    assert step.outcome.after == created.outcome.after
    assert step.outcome.changed == []


def test_no_empty_secret_is_created_while_no_value_resolves() -> None:
    sl = with_secret(DB_LINK)
    cache = world(sl)
    cache.keep_secrets()  # the Secret pg is not shared: nothing resolves
    step = secret_step(sl, cache, None)
    assert (step.apply, step.outcome.changed, step.outcome.verdict) == (None, [], None)


def test_a_deployment_whose_template_rollouts_run_is_restarted_through_them_when_each_asks_for_it() -> None:
    cache = Cache()
    template = {"metadata": {"annotations": {"servicelink.dev/config-hash": "11111111"}}, "spec": {"containers": []}}
    cache.put_workload(
        WORKLOAD_RESOURCES["Deployment"],
        {
            "metadata": {"name": "web", "namespace": "ns", "annotations": {"servicelink.dev/config-hash": "22222222"}},
            "spec": {"template": template},
        },
    )

    def rollout(name: str, mode: str) -> None:
        body = {
            "metadata": {"name": name, "namespace": "ns", "annotations": {"servicelink.dev/rollout": mode}},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
        }
        cache.put_workload(WORKLOAD_RESOURCES["Rollout"], body)

    rollout("canary", "restart")
    web = cache.workload("Deployment", "ns", "web")
    assert web is not None
    assert web.config_hash == "11111111"
    restarted = planner.with_restarts(web, cache)
    assert (restarted.restart, restarted.restarts, restarted.config_hash) == (True, ("canary",), "22222222")
    # One Rollout of it that wants new revisions: its template is patched, as before.
    rollout("blue-green", "")
    assert planner.with_restarts(web, cache) == web
