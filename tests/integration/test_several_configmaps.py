"""Workloads that read several servicelink ConfigMaps: one rollout per change, none otherwise (issue 11).

A rollout is counted as the workload's ``metadata.generation``: each pod-template
patch raises it by one, for Deployments, StatefulSets and DaemonSets alike.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from objects import data, service, servicelink, set_port, wait_condition, wait_until_acted

from servicelink.render import render_hash
from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for

HASH = "servicelink.dev/config-hash"
KINDS = ("Deployment", "StatefulSet", "DaemonSet")
RESYNC = 3  # seconds; operator_env's resync of the test operators


def config(i: int) -> str:
    return f"cfg-{i}"


def reading_pod(count: int) -> dict[str, Any]:
    """A pod spec reading ``count`` ConfigMaps, each a different way, in containers and init containers.

    cfg-0 whole by envFrom; cfg-1 only URL_1 (and SHARED_URL), by keyRef in an init container;
    cfg-2 a configMap volume; cfg-3 only URL_3, by a projected volume; cfg-4 whole by envFrom
    in the init container.
    """
    app: dict[str, Any] = {"name": "app", "image": "busybox:1.36", "command": ["sleep", "infinity"]}
    init: dict[str, Any] = {"name": "init", "image": "busybox:1.36", "command": ["true"]}
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for i in range(count):
        name = config(i)
        if i == 0:
            app["envFrom"] = [{"configMapRef": {"name": name}}]
        elif i == 1:
            init["env"] = [
                {"name": var, "valueFrom": {"configMapKeyRef": {"name": name, "key": var}}}
                for var in ("URL_1", "SHARED_URL")
            ]
        elif i == 2:
            volumes.append({"name": "whole", "configMap": {"name": name}})
            mounts.append({"name": "whole", "mountPath": "/etc/whole"})
        elif i == 3:
            items = [{"key": "URL_3", "path": "url"}]
            volumes.append({"name": "some", "projected": {"sources": [{"configMap": {"name": name, "items": items}}]}})
            mounts.append({"name": "some", "mountPath": "/etc/some"})
        else:
            init["envFrom"] = [{"configMapRef": {"name": name}}]
    app["volumeMounts"] = mounts
    return {"initContainers": [init], "containers": [app], "volumes": volumes}


def reader(kind: str, namespace: str, count: int) -> dict[str, Any]:
    name = f"reader-{kind.lower()}"
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": reading_pod(count)},
    }
    if kind != "DaemonSet":
        spec["replicas"] = 1
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def landscape(namespace: str, count: int) -> list[dict[str, Any]]:
    """``count`` ServiceLinks, cfg-i linking svc-i as URL_i and the one Service shared as SHARED_URL
    (cfg-1 also aux as AUX_URL, which no reader reads), and a reader of every kind."""
    objects: list[dict[str, Any]] = [service("shared", namespace, 7000), service("aux", namespace, 7100)]
    for i in range(count):
        links = [{"key": f"URL_{i}", "service": f"svc-{i}"}, {"key": "SHARED_URL", "service": "shared"}]
        if i == 1:
            links.append({"key": "AUX_URL", "service": "aux"})
        objects += [service(f"svc-{i}", namespace, 8000 + i), servicelink(f"link-{i}", namespace, config(i), *links)]
    return objects + [reader(kind, namespace, count) for kind in KINDS]


def rollouts(cluster: Cluster, namespace: str) -> dict[str, int]:
    """Pod-template changes of each reader since it was created."""
    return {
        kind: cluster.get(kind.lower(), f"reader-{kind.lower()}", "-n", namespace)["metadata"]["generation"] - 1
        for kind in KINDS
    }


def config_hashes(cluster: Cluster, namespace: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for kind in KINDS:
        template = cluster.get(kind.lower(), f"reader-{kind.lower()}", "-n", namespace)["spec"]["template"]
        found[kind] = (template["metadata"].get("annotations") or {}).get(HASH)
    return found


def acted(cluster: Cluster, namespace: str) -> None:
    """Wait until every ServiceLink of the namespace has been reconciled after everything done so far
    (objects.wait_until_acted, through the Service all of them link)."""
    names = tuple(item["metadata"]["name"] for item in cluster.get("servicelinks", "-n", namespace)["items"])
    wait_until_acted(cluster, namespace, names, "shared")


def wait_rollouts(cluster: Cluster, namespace: str, count: int, what: str) -> None:
    """Wait until every reader rolled ``count`` times; after a later reconcile of every ServiceLink, still so."""
    wait_for(lambda: set(rollouts(cluster, namespace).values()) == {count}, timeout=30, interval=0.2, what=what)
    acted(cluster, namespace)
    assert rollouts(cluster, namespace) == dict.fromkeys(KINDS, count), what


def set_up(cluster: Cluster, namespace: str, count: int, objects: list[dict[str, Any]] | None = None) -> None:
    cluster.apply(objects or landscape(namespace, count))
    for i in range(count):
        wait_condition(cluster, namespace, f"link-{i}", "Ready", "True")
    acted(cluster, namespace)
    assert rollouts(cluster, namespace) == dict.fromkeys(KINDS, 0)  # writing the ConfigMaps rolled nothing


@pytest.mark.parametrize("count", [2, 5])
def test_readers_of_several_configmaps_roll_once_per_change_and_never_on_resync(
    cluster: Cluster, namespace: str, operator: Any, count: int
) -> None:
    set_up(cluster, namespace, count)

    set_port(cluster, namespace, "svc-0", 9000)
    wait_rollouts(cluster, namespace, 1, "one rollout for a change of one ConfigMap")

    # One Service linked from every ServiceLink: a change of all the ConfigMaps at once.
    set_port(cluster, namespace, "shared", 7001)
    wait_rollouts(cluster, namespace, 2, f"one rollout for a burst across {count} ServiceLinks")
    entries = {config(i) for i in range(count) if i != 3}  # cfg-3 is read for URL_3 only: nothing to roll for
    for value in config_hashes(cluster, namespace).values():
        assert value is not None
        assert {entry.split("=")[0] for entry in value.split(",")} == entries

    # Key-level precision: cfg-1 is read only for URL_1 and SHARED_URL.
    set_port(cluster, namespace, "aux", 7101)
    wait_for(lambda: (data(cluster, namespace, config(1)) or {}).get("AUX_URL") == "http://aux:7101", what="AUX_URL")
    acted(cluster, namespace)
    assert rollouts(cluster, namespace) == dict.fromkeys(KINDS, 2)
    time.sleep(RESYNC)  # a resync falls in here, then a reconcile of every ServiceLink after it
    acted(cluster, namespace)
    assert rollouts(cluster, namespace) == dict.fromkeys(KINDS, 2)


def test_an_upgrade_from_the_single_bare_hash_rolls_nothing_up_to_date(
    cluster: Cluster, namespace: str, operator: Any
) -> None:
    # What 0.1.0 left on a reader of cfg-0 and cfg-1: the bare hash of what it reads of the one
    # written last (it then flipped at each resync).
    written_last = render_hash({"SHARED_URL": "http://shared:7000", "URL_0": "http://svc-0:8000"})
    objects = landscape(namespace, 2)
    for body in objects[-len(KINDS) :]:
        body["spec"]["template"]["metadata"]["annotations"] = {HASH: written_last}
    set_up(cluster, namespace, 2, objects)
    acted(cluster, namespace)  # each ServiceLink once more: the old bare hash flipped at each reconcile
    assert rollouts(cluster, namespace) == dict.fromkeys(KINDS, 0)

    set_port(cluster, namespace, "svc-1", 9001)
    wait_rollouts(cluster, namespace, 1, "one rollout for the first change after the upgrade")


def test_readers_of_several_configmaps_stay_put_across_a_hand_over_and_a_restart(
    cluster: Cluster, crd: Path, namespace: str, tmp_path: Path
) -> None:
    election = {"SERVICELINK_LEADER_ELECT": "1", "SERVICELINK_LEASE_NAMESPACE": namespace}
    replicas = [start_operator_process(cluster.kubeconfig, tmp_path / f"replica-{i}.log", **election) for i in (1, 2)]
    again: OperatorProcess | None = None
    try:
        set_up(cluster, namespace, 2)
        set_port(cluster, namespace, "shared", 7001)
        wait_rollouts(cluster, namespace, 1, "one rollout for a burst across two ServiceLinks")

        holder = cluster.get("lease", "servicelink", "-n", namespace)["spec"]["holderIdentity"]
        leader, follower = replicas if holder.endswith(f"-{replicas[0].popen.pid}") else replicas[::-1]
        leader.stop(signal.SIGKILL)
        wait_for(lambda: "leading as" in follower.log(), timeout=40, interval=0.5, what="the follower leading")
        acted(cluster, namespace)  # reconciles of the new leader
        assert rollouts(cluster, namespace) == dict.fromkeys(KINDS, 1)

        set_port(cluster, namespace, "svc-1", 9001)
        wait_rollouts(cluster, namespace, 2, "one rollout for a change after the hand-over")

        follower.stop()
        again = start_operator_process(cluster.kubeconfig, tmp_path / "restarted.log")
        acted(cluster, namespace)  # reconciles of the restarted operator
        assert rollouts(cluster, namespace) == dict.fromkeys(KINDS, 2)
    finally:
        for process in [*replicas, *([again] if again else [])]:
            process.stop()
