"""Scope: the operator reads, reconciles and writes nothing in a namespace it is told to ignore, and serves a
namespace only while its labels match --namespace-selector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from objects import data, events, service, servicelink, set_port, sl, wait_condition, wait_until_acted

from servicelink.testing.fixtures import Cluster, OperatorProcess, fresh_namespace, running_operator, wait_for

LINK = {"key": "AUTH_URL", "service": "auth-service"}


@pytest.fixture
def other(cluster: Cluster) -> Iterator[str]:
    """A second fresh namespace."""
    with fresh_namespace(cluster) as name:
        yield name


@pytest.fixture
def operator_ignoring(kubeconfig_env: Path, crd: Path, tmp_path: Path, other: str) -> Iterator[OperatorProcess]:
    """The installed operator, watching every namespace, told by its variable to ignore one."""
    with running_operator(kubeconfig_env, tmp_path / "operator.log", SERVICELINK_IGNORE_NAMESPACES=other) as process:
        yield process


def test_a_servicelink_in_an_ignored_namespace_is_never_reconciled(
    cluster: Cluster, namespace: str, other: str, operator_ignoring: OperatorProcess
) -> None:
    ignored = other
    # The ignored namespace's objects first: by the time the served one is Ready, the operator has seen them.
    for ns in (ignored, namespace):
        cluster.apply([service("auth-service", ns, 3001), servicelink("links", ns, "links-config", LINK)])
    wait_condition(cluster, namespace, "links", "Ready", "True")
    for ns in (ignored, namespace):
        set_port(cluster, ns, "auth-service", 4001)
    wait_for(
        lambda: data(cluster, namespace, "links-config") == {"AUTH_URL": "http://auth-service:4001"},
        what="the served ConfigMap holds the new port",
    )
    wait_until_acted(cluster, namespace, "links", "auth-service")  # a late write in the ignored one shows by now

    left_alone = sl(cluster, ignored, "links")
    assert "status" not in left_alone
    assert not left_alone["metadata"].get("finalizers")
    assert data(cluster, ignored, "links-config") is None
    assert [e for e in events(cluster, ignored) if e.get("source", {}).get("component") != "kubelet"] == []


@pytest.fixture
def selecting_operator(kubeconfig_env: Path, crd: Path, tmp_path: Path, namespace: str) -> Iterator[OperatorProcess]:
    """The installed operator, serving only the namespaces labelled with this test's own label."""
    selector = f"scope-test={namespace}"
    with running_operator(
        kubeconfig_env, tmp_path / "operator.log", SERVICELINK_NAMESPACE_SELECTOR=selector
    ) as process:
        yield process


def test_a_namespace_is_served_while_its_labels_match_the_selector(
    cluster: Cluster, namespace: str, other: str, selecting_operator: OperatorProcess
) -> None:
    control, target = namespace, other  # control matches from the start; target comes and goes
    cluster.kubectl("label", "namespace", control, f"scope-test={control}")
    for ns in (target, control):
        cluster.apply([service("auth-service", ns, 3001), servicelink("links", ns, "links-config", LINK)])
    wait_condition(cluster, control, "links", "Ready", "True")
    wait_until_acted(cluster, control, "links", "auth-service")
    assert "status" not in sl(cluster, target, "links")

    cluster.kubectl("label", "namespace", target, f"scope-test={control}")
    wait_condition(cluster, target, "links", "Ready", "True")
    assert data(cluster, target, "links-config") == {"AUTH_URL": "http://auth-service:3001"}

    cluster.kubectl("label", "namespace", target, "scope-test-")
    wait_for(
        lambda: f"namespace {target} no longer matches" in selecting_operator.log(),
        what="the operator saw the label go",
    )
    status_before = sl(cluster, target, "links")["status"]
    for ns in (target, control):  # the target's Service first: one watch delivers them in that order
        set_port(cluster, ns, "auth-service", 4001)
    wait_for(
        lambda: data(cluster, control, "links-config") == {"AUTH_URL": "http://auth-service:4001"},
        what="the control ConfigMap holds the new port",
    )
    wait_until_acted(cluster, control, "links", "auth-service")
    assert data(cluster, target, "links-config") == {"AUTH_URL": "http://auth-service:3001"}  # kept, not deleted
    assert sl(cluster, target, "links")["status"] == status_before
