"""Opt-out: a workload annotated servicelink.dev/rollout: never, or of a kind the operator ignores, keeps its pod
template while a sibling reading the same ConfigMap rolls once (real kube-controller-manager)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from objects import (
    cronjob,
    data,
    deployment,
    events,
    generation,
    service,
    servicelink,
    sl,
    template_hash,
    wait_condition,
    wait_until_acted,
)

from servicelink.render import render_hash
from servicelink.testing.fixtures import Cluster, OperatorProcess, running_operator, wait_for

pytestmark = pytest.mark.controller_manager
LINK = {"key": "AUTH_URL", "service": "auth-service"}


@pytest.fixture
def operator_ignoring_cronjobs(kubeconfig_env: Path, crd: Path, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The installed operator, told by its variable to ignore CronJobs."""
    with running_operator(kubeconfig_env, tmp_path / "operator.log", SERVICELINK_IGNORE_KINDS="CronJob") as process:
        yield process


def test_an_opted_out_deployment_keeps_its_pod_template_while_its_sibling_rolls_once(
    cluster: Cluster, namespace: str, operator_ignoring_cronjobs: OperatorProcess
) -> None:
    held = deployment("held", namespace, env_from="links-config")
    held["metadata"]["annotations"] = {"servicelink.dev/rollout": "never"}
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            deployment("sibling", namespace, env_from="links-config"),
            held,
            cronjob("nightly", namespace, env_from="links-config"),
            servicelink("links", namespace, "links-config", LINK),
        ]
    )
    wait_condition(cluster, namespace, "links", "Ready", "True")
    sibling_before = generation(cluster, namespace, "sibling")
    held_before = cluster.get("deployment", "held", "-n", namespace)
    nightly_before = cluster.get("cronjob", "nightly", "-n", namespace)

    cluster.apply(service("auth-service", namespace, 4001))
    rolled = render_hash({"AUTH_URL": "http://auth-service:4001"})
    wait_for(lambda: template_hash(cluster, namespace, "sibling") == rolled, what="the sibling rolled")
    # The ConfigMap is written all the same.
    assert data(cluster, namespace, "links-config") == {"AUTH_URL": "http://auth-service:4001"}
    wait_condition(cluster, namespace, "links", "RolledOut", "True")  # the two held out fail nothing
    wait_until_acted(cluster, namespace, "links", "auth-service")  # a late patch would show by now
    assert generation(cluster, namespace, "sibling") == sibling_before + 1  # once
    held_after = cluster.get("deployment", "held", "-n", namespace)
    assert held_after["spec"]["template"] == held_before["spec"]["template"]
    assert held_after["metadata"]["generation"] == held_before["metadata"]["generation"]
    nightly_after = cluster.get("cronjob", "nightly", "-n", namespace)
    assert nightly_after["spec"]["jobTemplate"] == nightly_before["spec"]["jobTemplate"]

    skipped = sl(cluster, namespace, "links")["status"]["skipped"]
    assert [(s["kind"], s["name"], s["reason"]) for s in skipped] == [
        ("CronJob", "nightly", "KindIgnored"),
        ("Deployment", "held", "WorkloadOptedOut"),
    ]
    assert skipped[1]["message"].endswith(f"kubectl annotate deployment held -n {namespace} servicelink.dev/rollout-")
    (changed,) = [e for e in events(cluster, namespace, "ValueChanged") if "4001" in e["message"]]
    assert changed["message"] == (
        "AUTH_URL: http://auth-service:3001 -> http://auth-service:4001; "
        f"rolled Deployment {namespace}/sibling; "
        f"not rolled CronJob {namespace}/nightly (KindIgnored), Deployment {namespace}/held (WorkloadOptedOut)"
    )
    assert "not rolled CronJob" in operator_ignoring_cronjobs.log()
