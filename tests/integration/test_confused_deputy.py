"""Consent inside one namespace: who may create ServiceLinks cannot write others' ConfigMaps or roll their workloads."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from objects import (
    condition,
    data,
    deployment,
    events,
    service,
    servicelink,
    servicelinks_only,
    set_port,
    sl,
    template_hash,
    wait_condition,
)

from servicelink.reconcile import CONSENT_RECHECK_SECONDS
from servicelink.testing.fixtures import Cluster, OperatorProcess, running_operator, wait_for

MALLORY = "mallory"
WRITABLE_BY = "servicelink.dev/writable-by"


def run_command(cluster: Cluster, command: str) -> None:
    """Run a ``kubectl ...`` command line exactly as a message tells a user to."""
    args = shlex.split(command)
    assert args[0] == "kubectl", command
    cluster.kubectl(*args[1:])


def innocent(namespace: str, template: str) -> dict[str, Any]:
    """The issue's ServiceLink: a key of someone else's ConfigMap, with literal text in the template."""
    return servicelink(
        "innocent",
        namespace,
        "victim-config",
        {"key": "NODE_OPTIONS", "service": "auth-service", "template": template},
    )


@pytest.fixture
def operator_default_resync(kubeconfig_env: Path, crd: Path, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator with the default 300 s resync: consent given must be found without a resync."""
    with running_operator(kubeconfig_env, tmp_path / "operator.log", SERVICELINK_RESYNC_SECONDS="300") as process:
        yield process


def test_a_servicelink_writes_into_an_existing_configmap_only_while_its_owner_shares_it(
    cluster: Cluster, namespace: str, operator_default_resync: OperatorProcess
) -> None:
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "victim-config", "namespace": namespace},
                "data": {"GREETING": "hi"},
            },
            service("auth-service", namespace, 3001),
            deployment("victim", namespace, env_from="victim-config"),
            # The user: ServiceLinks, and nothing else.
            *servicelinks_only(
                namespace,
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": MALLORY},
                verbs=("get", "list", "create", "update", "patch"),
            ),
        ]
    )

    def mallory(*args: str, input: str | None = None) -> str:
        done = cluster.kubectl(*args, f"--as={MALLORY}", input=input, check=False)
        return done.stdout.strip() or done.stderr.strip()

    assert mallory("auth", "can-i", "patch", "configmaps", "-n", namespace) == "no"
    assert mallory("auth", "can-i", "create", "servicelinks.servicelink.dev", "-n", namespace) == "yes"
    untouched = cluster.get("configmap", "victim-config", "-n", namespace)

    # Without consent: nothing written, the reason and the command to share it reported.
    applied = mallory("apply", "-f", "-", input=json.dumps(innocent(namespace, "--require=/tmp/evil.js #{host}")))
    assert "created" in applied, applied
    refused = wait_condition(cluster, namespace, "innocent", "Synced", "False", "ConfigMapNotShared")
    share = f"kubectl annotate configmap victim-config -n {namespace} {WRITABLE_BY}=innocent"
    assert refused["message"].endswith(f"To share it: {share}")
    assert condition(sl(cluster, namespace, "innocent"), "Ready")["reason"] == "ConfigMapNotShared"
    warning = wait_for(lambda: events(cluster, namespace, "ConfigMapNotShared"), what="a ConfigMapNotShared Event")
    assert (warning[0]["type"], warning[0]["involvedObject"]["name"]) == ("Warning", "innocent")
    still = cluster.get("configmap", "victim-config", "-n", namespace)
    assert still["data"] == {"GREETING": "hi"}
    assert still["metadata"]["resourceVersion"] == untouched["metadata"]["resourceVersion"]
    assert template_hash(cluster, namespace, "victim") is None

    # With consent, given by the owner with the command the status named: the key is written,
    # found by the refused ServiceLink's recheck (ConfigMaps are not watched; the resync is 300 s).
    run_command(cluster, share)
    shared_at = time.monotonic()
    written = {"GREETING": "hi", "NODE_OPTIONS": "--require=/tmp/evil.js #auth-service"}
    wait_for(lambda: data(cluster, namespace, "victim-config") == written, what="the key written once shared")
    assert time.monotonic() - shared_at < CONSENT_RECHECK_SECONDS + 5
    wait_condition(cluster, namespace, "innocent", "Synced", "True", "ConfigMapUpToDate")
    shared = cluster.get("configmap", "victim-config", "-n", namespace)
    assert not shared["metadata"].get("ownerReferences"), "a shared ConfigMap stays its owner's"

    # Revoked: no further writes; the key written before stays as it is.
    cluster.kubectl("annotate", "configmap", "victim-config", "-n", namespace, f"{WRITABLE_BY}-")
    revoked = cluster.get("configmap", "victim-config", "-n", namespace)["metadata"]["resourceVersion"]
    mallory("apply", "-f", "-", input=json.dumps(innocent(namespace, "--require=/tmp/worse.js #{host}")))

    def refused_again() -> bool:
        synced = condition(sl(cluster, namespace, "innocent"), "Synced")
        return synced.get("reason") == "ConfigMapNotShared" and synced.get("observedGeneration") == 2

    wait_for(refused_again, what="generation 2 refused")
    after = cluster.get("configmap", "victim-config", "-n", namespace)
    assert after["data"] == written
    assert after["metadata"]["resourceVersion"] == revoked


def test_a_named_workload_that_does_not_read_the_configmap_rolls_only_once_it_opts_in(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            deployment("reader", namespace, env_from="links-config"),
            deployment("bystander", namespace),
            servicelink(
                "links",
                namespace,
                "links-config",
                {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
                workloads={"names": [{"kind": "Deployment", "name": "bystander"}]},
            ),
        ]
    )
    skipped = wait_condition(cluster, namespace, "links", "RolledOut", "False", "WorkloadNotOptedIn")
    opt_in = f"kubectl annotate deployment bystander -n {namespace} servicelink.dev/rollable-by=links"
    assert skipped["message"].startswith(f"Deployment {namespace}/bystander does not read ConfigMap")
    assert skipped["message"].endswith(opt_in)
    assert sl(cluster, namespace, "links")["status"]["skipped"] == [
        {"kind": "Deployment", "name": "bystander", "reason": "WorkloadNotOptedIn", "message": skipped["message"]}
    ]
    wait_for(lambda: events(cluster, namespace, "WorkloadNotOptedIn"), what="a WorkloadNotOptedIn Event")

    # A change rolls the reader, which trusts whoever writes its ConfigMap, and not the bystander.
    set_port(cluster, namespace, "auth-service", 3002)
    wait_for(lambda: template_hash(cluster, namespace, "reader"), what="the reader rolled")
    assert template_hash(cluster, namespace, "bystander") is None
    assert cluster.get("deployment", "bystander", "-n", namespace)["metadata"]["generation"] == 1

    # Opted in by its owner: the next change rolls it too.
    run_command(cluster, opt_in)
    wait_condition(cluster, namespace, "links", "RolledOut", "True", "WorkloadsUpdated")
    assert "skipped" not in sl(cluster, namespace, "links")["status"]
    set_port(cluster, namespace, "auth-service", 3003)
    wait_for(
        lambda: data(cluster, namespace, "links-config") == {"AUTH_SERVICE_URL": "http://auth-service:3003"},
        what="the ConfigMap updated",
    )
    rolled = wait_for(lambda: template_hash(cluster, namespace, "bystander"), what="the bystander rolled")
    wait_for(lambda: template_hash(cluster, namespace, "reader") == rolled, what="the reader on the same hash")
