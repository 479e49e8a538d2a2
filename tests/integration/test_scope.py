"""Scope: the operator reads, reconciles and writes nothing in a namespace it is told to ignore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from objects import data, events, service, servicelink, set_port, sl, wait_condition, wait_until_acted

from servicelink.testing.fixtures import Cluster, OperatorProcess, fresh_namespace, running_operator, wait_for

LINK = {"key": "AUTH_URL", "service": "auth-service"}


@pytest.fixture
def ignored(cluster: Cluster) -> Iterator[str]:
    """A second fresh namespace, the one the operator ignores."""
    with fresh_namespace(cluster) as name:
        yield name


@pytest.fixture
def operator_ignoring(kubeconfig_env: Path, crd: Path, tmp_path: Path, ignored: str) -> Iterator[OperatorProcess]:
    """The installed operator, watching every namespace, told by its variable to ignore one."""
    with running_operator(kubeconfig_env, tmp_path / "operator.log", SERVICELINK_IGNORE_NAMESPACES=ignored) as process:
        yield process


def test_a_servicelink_in_an_ignored_namespace_is_never_reconciled(
    cluster: Cluster, namespace: str, ignored: str, operator_ignoring: OperatorProcess
) -> None:
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
