"""mapping.py: which mapped kinds are followed, and what each WorkloadMapping's status says."""

from __future__ import annotations

from servicelink import conditions as c
from servicelink.mapping import (
    Followed,
    Served,
    parse_or_refuse,
    plan_followed,
    plan_mapping,
    plan_mapping_event,
    plan_mapping_status,
    plan_watch_failed,
)
from servicelink.model import Condition, WorkloadResource
from servicelink.views import WorkloadView

CLONESET = {"kind": "CloneSet", "version": "v1alpha1", "template": ".spec.template"}
NAME = "clonesets.apps.kruise.io"
NOW = "2026-12-07T01:00:00Z"


def cloneset() -> WorkloadResource:
    parsed = parse_or_refuse(NAME, CLONESET, generation=1)
    assert isinstance(parsed, WorkloadResource)
    return parsed


def test_a_served_and_granted_kind_is_followed_under_its_kind_dot_group_name() -> None:
    resource = cloneset()
    assert resource.kind == "CloneSet.apps.kruise.io"
    assert plan_mapping(resource, served=Served("CloneSet"), generation=1) == resource


def test_a_built_in_kind_and_a_bad_spec_are_refused_with_their_reasons() -> None:
    built_in = parse_or_refuse("deployments.apps", {**CLONESET, "kind": "Deployment", "version": "v1"}, generation=2)
    assert isinstance(built_in, Condition)
    assert (built_in.status, built_in.reason, built_in.observed_generation) == ("False", c.BUILT_IN_KIND, 2)
    assert "servicelink follows it already" in built_in.message
    bad = parse_or_refuse(NAME, {**CLONESET, "template": "spec.template"}, generation=1)
    assert isinstance(bad, Condition)
    assert bad.reason == c.INVALID_SPEC
    assert "spec.template" in bad.message


def test_a_kind_not_served_names_the_crd_or_the_version_to_fix() -> None:
    ready = plan_mapping(cloneset(), served=Served(None), generation=1)
    assert isinstance(ready, Condition)
    assert (ready.status, ready.reason) == ("False", c.KIND_NOT_SERVED)
    assert "serves no clonesets in apps.kruise.io/v1alpha1" in ready.message
    assert "install the CRD of CloneSet" in ready.message


def test_a_plural_served_as_another_kind_asks_to_fix_spec_kind() -> None:
    ready = plan_mapping(cloneset(), served=Served("AdvancedCloneSet"), generation=1)
    assert isinstance(ready, Condition)
    assert ready.reason == c.KIND_NOT_SERVED
    assert "set spec.kind to AdvancedCloneSet" in ready.message


def test_a_kind_the_operator_may_not_use_is_forbidden_naming_the_verbs_and_the_grant() -> None:
    ready = plan_mapping(cloneset(), served=Served("CloneSet", denied=("watch", "patch")), generation=1)
    assert isinstance(ready, Condition)
    assert ready.reason == c.FORBIDDEN
    assert "may not watch, patch clonesets.apps.kruise.io" in ready.message
    assert "workloadMappings" in ready.message


def test_a_followed_kind_is_ready_and_counts_its_objects() -> None:
    ready = plan_followed(cloneset(), ".spec.template", followed=Followed(3), generation=4)
    assert (ready.status, ready.reason, ready.observed_generation) == ("True", c.WATCHING, 4)
    assert ready.message == "following 3 CloneSets; ServiceLinks name the kind CloneSet.apps.kruise.io"


def test_a_kind_whose_watch_fails_is_not_ready_naming_the_failure_until_events_flow() -> None:
    failure = "clonesets.apps.kruise.io in shop: HTTP 403 Forbidden"
    ready = plan_watch_failed(cloneset(), failure, generation=2)
    assert (ready.status, ready.reason, ready.observed_generation) == ("False", c.WATCH_FAILED, 2)
    assert ready.message.startswith(f"cannot watch clonesets.apps.kruise.io: {failure}; servicelink tries again")
    assert plan_mapping_event({}, ready) is not None  # a Warning Event, once


def test_objects_without_a_template_at_the_path_are_named_a_few_at_a_time() -> None:
    missing = [f"team/web-{i}" for i in range(5)]
    ready = plan_followed(cloneset(), ".spec.podTemplate", followed=Followed(5, missing), generation=1)
    assert (ready.status, ready.reason) == ("False", c.TEMPLATE_NOT_FOUND)
    assert "no pod template at .spec.podTemplate in CloneSet team/web-0, CloneSet team/web-1, CloneSet team/web-2" in (
        ready.message
    )
    assert "and 2 more" in ready.message


def test_the_status_is_written_once_and_an_unchanged_mapping_writes_nothing() -> None:
    ready = plan_followed(cloneset(), ".spec.template", followed=Followed(2), generation=1)
    written = plan_mapping_status({}, ready, followed=2, generation=1, now=NOW)
    assert written is not None
    assert written["observedGeneration"] == 1
    assert written["workloads"] == 2
    assert written["conditions"][0]["lastTransitionTime"] == NOW
    again = plan_followed(cloneset(), ".spec.template", followed=Followed(2), generation=1)
    assert plan_mapping_status(written, again, followed=2, generation=1, now="2026-12-07T02:00:00Z") is None


def test_a_flip_moves_the_transition_time_and_a_count_change_keeps_it() -> None:
    ready = plan_followed(cloneset(), ".spec.template", followed=Followed(2), generation=1)
    first = plan_mapping_status({}, ready, followed=2, generation=1, now=NOW)
    assert first is not None
    more = plan_followed(cloneset(), ".spec.template", followed=Followed(3), generation=1)
    counted = plan_mapping_status(first, more, followed=3, generation=1, now="2026-12-07T02:00:00Z")
    assert counted is not None
    assert counted["conditions"][0]["lastTransitionTime"] == NOW
    gone = plan_mapping(cloneset(), served=Served(None), generation=1)
    assert isinstance(gone, Condition)
    flipped = plan_mapping_status(counted, gone, followed=None, generation=1, now="2026-12-07T03:00:00Z")
    assert flipped is not None
    assert "workloads" not in flipped
    assert flipped["conditions"][0]["lastTransitionTime"] == "2026-12-07T03:00:00Z"


def test_a_mapped_object_is_viewed_through_its_template_path_and_rolls_by_its_replica_counts() -> None:
    resource = parse_or_refuse(NAME, {**CLONESET, "template": ".spec.podTemplate"}, generation=1)
    assert isinstance(resource, WorkloadResource)
    container = {"name": "app", "image": "x", "envFrom": [{"configMapRef": {"name": "gw"}}]}
    body = {
        "metadata": {"name": "web", "namespace": "team", "generation": 3},
        "spec": {"replicas": 2, "podTemplate": {"spec": {"containers": [container]}}},
        "status": {"observedGeneration": 3, "updatedReplicas": 1, "readyReplicas": 2},
    }
    view = WorkloadView.from_body(resource, body)
    assert (view.kind, set(view.reads)) == ("CloneSet.apps.kruise.io", {"gw"})
    assert view.progress.state == "Progressing"
    done = WorkloadView.from_body(resource, {**body, "status": {**body["status"], "updatedReplicas": 2}})
    assert done.progress.state == "Complete"
    unseen = WorkloadView.from_body(resource, {**body, "metadata": {**body["metadata"], "generation": 4}})
    assert unseen.progress.state == "Progressing"


def test_a_mapped_object_reads_secrets_through_its_template_path_apart_from_configmaps() -> None:
    resource = parse_or_refuse(NAME, {**CLONESET, "template": ".spec.podTemplate"}, generation=1)
    assert isinstance(resource, WorkloadResource)
    env = [
        {"name": "HOST", "valueFrom": {"configMapKeyRef": {"name": "db", "key": "HOST"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "PASSWORD"}}},
    ]
    pod_spec = {"containers": [{"name": "app", "image": "x", "env": env, "envFrom": [{"secretRef": {"name": "api"}}]}]}
    body = {"metadata": {"name": "web", "namespace": "team"}, "spec": {"podTemplate": {"spec": pod_spec}}}
    view = WorkloadView.from_body(resource, body)
    assert view.reads == {"db": frozenset({"HOST"})}
    assert view.secret_reads == {"db": frozenset({"PASSWORD"}), "api": None}


def test_a_mapped_kind_with_a_ready_condition_waits_for_it_and_one_without_status_has_nothing_to_wait_for() -> None:
    resource = cloneset()
    body = {"metadata": {"name": "svc", "namespace": "team", "generation": 1}, "spec": {"template": {}}}
    not_ready = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "Unknown"}]}
    assert WorkloadView.from_body(resource, {**body, "status": not_ready}).progress.state == "Progressing"
    ready = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}
    assert WorkloadView.from_body(resource, {**body, "status": ready}).progress.state == "Complete"
    assert WorkloadView.from_body(resource, body).progress.state == "Complete"


def test_an_event_is_recorded_when_the_reason_changes_and_not_while_it_holds() -> None:
    gone = plan_mapping(cloneset(), served=Served(None), generation=1)
    assert isinstance(gone, Condition)
    event = plan_mapping_event({}, gone)
    assert event is not None
    assert (event.reason, event.warning) == (c.KIND_NOT_SERVED, True)
    written = plan_mapping_status({}, gone, followed=None, generation=1, now=NOW)
    assert written is not None
    assert plan_mapping_event(written, gone) is None
    watching = plan_followed(cloneset(), ".spec.template", followed=Followed(1), generation=1)
    back = plan_mapping_event(written, watching)
    assert back is not None
    assert (back.reason, back.warning) == (c.WATCHING, False)
