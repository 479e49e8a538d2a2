"""consent.py: writes only where the ConfigMap's owner agreed, rolls only readers or opted-in workloads, never
those opted out or of an ignored kind."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from servicelink import conditions as c
from servicelink.consent import judge_configmap_write, render_consent_command, split_consumers
from servicelink.model import WORKLOAD_RESOURCES, WorkloadKind
from servicelink.views import WorkloadView

UID = "0b5c1f7e-0000-4000-8000-000000000001"


def configmap(*, annotations: dict[str, str] | None = None, owner_uids: tuple[str, ...] = ()) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "victim-config", "namespace": "team", "resourceVersion": "42"}
    if annotations is not None:
        metadata["annotations"] = annotations
    if owner_uids:
        metadata["ownerReferences"] = [
            {"apiVersion": "servicelink.dev/v1alpha1", "kind": "ServiceLink", "name": "x", "uid": uid}
            for uid in owner_uids
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"GREETING": "hi"}}


# --- judge_configmap_write --------------------------------------------------------------------------------


def test_a_configmap_that_does_not_exist_is_ours_to_create() -> None:
    assert judge_configmap_write(None, servicelink="innocent", uid=UID) is None


def test_a_configmap_created_for_this_servicelink_is_writable() -> None:
    assert judge_configmap_write(configmap(owner_uids=(UID,)), servicelink="innocent", uid=UID) is None


def test_a_configmap_created_for_another_servicelink_is_not() -> None:
    refusal = judge_configmap_write(configmap(owner_uids=("someone-else",)), servicelink="innocent", uid=UID)
    assert refusal is not None


@pytest.mark.parametrize("value", ["innocent", "gateway,innocent", " gateway , innocent ", "gateway innocent", "*"])
def test_the_owner_shares_a_configmap_by_name_or_with_everyone(value: str) -> None:
    shared = configmap(annotations={"servicelink.dev/writable-by": value})
    assert judge_configmap_write(shared, servicelink="innocent", uid=UID) is None


@pytest.mark.parametrize(
    "annotations", [None, {}, {"servicelink.dev/writable-by": ""}, {"servicelink.dev/writable-by": "innocent-2"}]
)
def test_without_the_owners_consent_nothing_is_written(annotations: dict[str, str] | None) -> None:
    refusal = judge_configmap_write(configmap(annotations=annotations), servicelink="innocent", uid=UID)
    assert refusal is not None
    assert refusal.startswith("ConfigMap team/victim-config was not created by this ServiceLink")
    assert "servicelink.dev/writable-by" in refusal
    assert "nothing is written" in refusal


def test_the_refusal_names_the_command_that_gives_consent() -> None:
    refusal = judge_configmap_write(configmap(), servicelink="innocent", uid=UID)
    assert refusal is not None
    assert refusal.endswith(
        "To share it: kubectl annotate configmap victim-config -n team servicelink.dev/writable-by=innocent"
    )


def test_the_command_keeps_the_names_already_granted() -> None:
    refusal = judge_configmap_write(
        configmap(annotations={"servicelink.dev/writable-by": "gateway"}), servicelink="innocent", uid=UID
    )
    assert refusal is not None
    command = refusal.split("To share it: ")[1]
    assert shlex.split(command) == [
        "kubectl",
        "annotate",
        "configmap",
        "victim-config",
        "-n",
        "team",
        "--overwrite",
        "servicelink.dev/writable-by=gateway,innocent",
    ]


def test_render_consent_command_for_a_workload() -> None:
    command = render_consent_command(
        resource="statefulset",
        name="db",
        namespace="team",
        annotation="servicelink.dev/rollable-by",
        granted=frozenset(),
        servicelink="links",
    )
    assert command == "kubectl annotate statefulset db -n team servicelink.dev/rollable-by=links"


# --- split_consumers ----------------------------------------------------------------------------------------


def workload(
    name: str,
    *,
    reads: tuple[str, ...] = (),
    rollable_by: str | None = None,
    rollout: str | None = None,
    kind: WorkloadKind = "Deployment",
) -> WorkloadView:
    metadata: dict[str, Any] = {"name": name, "namespace": "team", "annotations": {}}
    if rollable_by is not None:
        metadata["annotations"]["servicelink.dev/rollable-by"] = rollable_by
    if rollout is not None:
        metadata["annotations"]["servicelink.dev/rollout"] = rollout
    container = {"name": "app", "image": "x", "envFrom": [{"configMapRef": {"name": cm}} for cm in reads]}
    resource = WORKLOAD_RESOURCES[kind]
    spec: dict[str, Any] = {"template": {"spec": {"containers": [container]}}}
    for key in reversed(resource.template[1:-1]):  # a CronJob's sits in spec.jobTemplate.spec.template
        spec = {key: spec}
    return WorkloadView.from_body(resource, {"metadata": metadata, "spec": spec})


def test_a_workload_that_reads_the_configmap_is_rolled_without_asking() -> None:
    reader = workload("reader", reads=("cfg",))
    allowed, skipped = split_consumers([(reader, None)], configmap="cfg", servicelink="links")
    assert allowed == [(reader, None)]
    assert skipped == []


@pytest.mark.parametrize("value", ["links", "other,links", "*"])
def test_a_non_reader_that_opted_in_is_rolled(value: str) -> None:
    opted = workload("bystander", reads=("unrelated",), rollable_by=value)
    allowed, skipped = split_consumers([(opted, None)], configmap="cfg", servicelink="links")
    assert allowed == [(opted, None)]
    assert skipped == []


@pytest.mark.parametrize(
    ("value", "grant"),
    [
        (None, "servicelink.dev/rollable-by=links"),
        ("", "servicelink.dev/rollable-by=links"),
        ("other", "--overwrite servicelink.dev/rollable-by=links,other"),
        ("links-2", "--overwrite servicelink.dev/rollable-by=links,links-2"),
    ],
)
def test_a_non_reader_without_opt_in_is_skipped_and_named(value: str | None, grant: str) -> None:
    reader = workload("reader", reads=("cfg",))
    bystander = workload("bystander", reads=("unrelated",), rollable_by=value)
    allowed, skipped = split_consumers([(reader, None), (bystander, None)], configmap="cfg", servicelink="links")
    assert allowed == [(reader, None)]
    assert [(s.kind, s.name) for s in skipped] == [("Deployment", "bystander")]
    message = skipped[0].message
    assert message.startswith("Deployment team/bystander does not read ConfigMap team/cfg and has not opted in")
    assert message.endswith(f"To let this ServiceLink roll it: kubectl annotate deployment bystander -n team {grant}")


@pytest.mark.parametrize("value", ["never", "Never", " never "])
def test_a_reader_opted_out_is_skipped_with_its_reason_and_the_way_back(value: str) -> None:
    reader = workload("reader", reads=("cfg",))
    held = workload("held", reads=("cfg",), rollout=value, rollable_by="links")
    allowed, skipped = split_consumers([(reader, None), (held, None)], configmap="cfg", servicelink="links")
    assert allowed == [(reader, None)]
    assert [(s.kind, s.name, s.reason) for s in skipped] == [("Deployment", "held", c.WORKLOAD_OPTED_OUT)]
    assert skipped[0].message.startswith("Deployment team/held carries servicelink.dev/rollout: never; never rolled")
    assert skipped[0].message.endswith("kubectl annotate deployment held -n team servicelink.dev/rollout-")


@pytest.mark.parametrize("value", ["", "always", "nevermore", "false"])
def test_any_other_rollout_value_opts_nothing_out(value: str) -> None:
    reader = workload("reader", reads=("cfg",), rollout=value)
    assert split_consumers([(reader, None)], configmap="cfg", servicelink="links") == ([(reader, None)], [])


def test_a_workload_of_an_ignored_kind_is_skipped_and_the_others_are_as_before() -> None:
    cron = workload("nightly", reads=("cfg",), kind="CronJob")
    daemon = workload("agent", reads=("cfg",), kind="DaemonSet")
    bystander = workload("bystander", reads=("unrelated",))
    allowed, skipped = split_consumers(
        [(cron, None), (daemon, frozenset({"A"})), (bystander, None)],
        configmap="cfg",
        servicelink="links",
        ignored_kinds=frozenset({"CronJob", "StatefulSet"}),
    )
    assert allowed == [(daemon, frozenset({"A"}))]
    assert [(s.kind, s.name, s.reason) for s in skipped] == [
        ("CronJob", "nightly", c.KIND_IGNORED),
        ("Deployment", "bystander", c.WORKLOAD_NOT_OPTED_IN),
    ]
    assert "a kind the operator ignores (--ignore-kinds, SERVICELINK_IGNORE_KINDS)" in skipped[0].message


def test_the_owners_opt_out_is_named_before_an_ignored_kind() -> None:
    both = workload("both", reads=("cfg",), rollout="never")
    _, skipped = split_consumers(
        [(both, None)], configmap="cfg", servicelink="links", ignored_kinds=frozenset({"Deployment"})
    )
    assert [s.reason for s in skipped] == [c.WORKLOAD_OPTED_OUT]
