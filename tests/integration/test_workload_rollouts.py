"""Rollouts: each consumer of a changed value rolls once, nothing else rolls (real kube-controller-manager).

Rollouts are counted by ``metadata.generation`` (objects.generation), and a check that nothing
(else) rolled waits first for a reconcile made after the change (objects.wait_until_acted).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from objects import condition, deployment, generations, service, servicelink, wait_until_acted

from servicelink.render import render_hash
from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for

pytestmark = pytest.mark.controller_manager
HASH = "servicelink.dev/config-hash"
GATEWAY_LINKS = (
    {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
    {"key": "APP_SERVICE_URL", "service": "app-service"},
)
GATEWAY_APPS = ("gateway-service", "app-reader", "unrelated")


def replicasets(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get("replicasets", "-n", namespace, "-l", f"app={app}")["items"]
    return items


def template_hash(cluster: Cluster, kind: str, namespace: str, name: str) -> str | None:
    body = cluster.get(kind, name, "-n", namespace)
    annotations = body["spec"]["template"]["metadata"].get("annotations") or {}
    value: str | None = annotations.get(HASH)
    return value


def settle(cluster: Cluster, namespace: str, name: str) -> None:
    """Wait until the ServiceLink is Ready."""
    wait_for(
        lambda: condition(cluster.get("sl", name, "-n", namespace), "Ready").get("status") == "True",
        what=f"{name} Ready",
    )


def wait_hashes(cluster: Cluster, namespace: str, want: dict[str, str | None], kind: str = "deployment") -> None:
    """Wait until each named workload's pod template carries its hash (None: none)."""
    wait_for(
        lambda: all(template_hash(cluster, kind, namespace, name) == h for name, h in want.items()),
        what=f"pod templates at {want}",
    )


def gateway_values(auth: int, app: int) -> dict[str, str]:
    return {"AUTH_SERVICE_URL": f"http://auth-service:{auth}", "APP_SERVICE_URL": f"http://app-service:{app}"}


def gateway(cluster: Cluster, namespace: str) -> dict[str, int]:
    """Apply the gateway (two Services, three Deployments, one ServiceLink); return the Deployments' generations."""
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            service("app-service", namespace, 3002),
            deployment("gateway-service", namespace, env_from="gateway-service-config"),
            deployment("app-reader", namespace, key_refs={"APP_URL": ("gateway-service-config", "APP_SERVICE_URL")}),
            deployment("unrelated", namespace, env_from="some-other-config"),
            servicelink("gateway-service", namespace, "gateway-service-config", *GATEWAY_LINKS),
        ]
    )
    settle(cluster, namespace, "gateway-service")
    return generations(cluster, namespace, *GATEWAY_APPS)


def raised(before: dict[str, int], *rolled: str) -> dict[str, int]:
    """``before`` with the generation of each workload in ``rolled`` raised by one (named twice: by two)."""
    return {name: gen + rolled.count(name) for name, gen in before.items()}


def test_a_port_change_rolls_the_consumer_once_and_nothing_else_rolls(
    cluster: Cluster, namespace: str, operator: Any, tmp_path: Any
) -> None:
    before = gateway(cluster, namespace)
    # Creating the ConfigMap rolled nothing: the pods start with it. Ready=True came from that very reconcile.
    assert template_hash(cluster, "deployment", namespace, "gateway-service") is None

    cluster.apply(service("auth-service", namespace, 4001))
    new_hash = render_hash(gateway_values(4001, 3002))
    wait_hashes(cluster, namespace, {"gateway-service": new_hash})
    wait_for(
        lambda: cluster.get("sl", "gateway-service", "-n", namespace)["status"]["hash"] == new_hash,
        what="the status at the new hash",
    )
    newest = wait_for(
        lambda: [
            rs
            for rs in replicasets(cluster, namespace, "gateway-service")
            if (rs["spec"]["template"]["metadata"].get("annotations") or {}).get(HASH) == new_hash
        ],
        what="the ReplicaSet of the new hash",
    )
    assert len(newest) == 1
    # One Event per change, on the ServiceLink: the value and the consumers it rolled.
    reported = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.kind=ServiceLink,involvedObject.name=gateway-service,reason=ValueChanged",
    ).stdout
    assert (
        "AUTH_SERVICE_URL: http://auth-service:3001 -> http://auth-service:4001; "
        f"rolled Deployment {namespace}/gateway-service"
    ) in reported
    status = cluster.get("sl", "gateway-service", "-n", namespace)["status"]
    assert {"kind": "Deployment", "name": "gateway-service", "hash": new_hash} in status["rolledOut"]
    # True once the Deployment's new (zero) replicas are all available.
    wait_for(
        lambda: condition(cluster.get("sl", "gateway-service", "-n", namespace), "RolledOut").get("status") == "True",
        what="RolledOut=True once the rollout completed",
    )

    # A label on the Service changes no value: no rollout. Only APP_SERVICE_URL is read by
    # app-reader, and another ConfigMap by unrelated: one rollout in all, of gateway-service.
    cluster.kubectl("label", "service", "auth-service", "-n", namespace, "tier=identity")
    wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
    assert generations(cluster, namespace, *GATEWAY_APPS) == raised(before, "gateway-service")
    assert template_hash(cluster, "deployment", namespace, "unrelated") is None


def test_operator_restart_rolls_nothing(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, tmp_path: Any
) -> None:
    before = gateway(cluster, namespace)
    cluster.apply(service("auth-service", namespace, 4001))
    wait_hashes(cluster, namespace, {"gateway-service": render_hash(gateway_values(4001, 3002)), "app-reader": None})
    operator_process.stop()
    again = start_operator_process(cluster.kubeconfig, tmp_path / "again.log")
    try:
        wait_until_acted(cluster, namespace, "gateway-service", "auth-service")  # by the new process
        assert generations(cluster, namespace, *GATEWAY_APPS) == raised(before, "gateway-service")
    finally:
        again.stop()


def test_key_level_precision(cluster: Cluster, namespace: str, operator: Any) -> None:
    before = gateway(cluster, namespace)
    cluster.apply(service("auth-service", namespace, 4001))
    wait_hashes(cluster, namespace, {"gateway-service": render_hash(gateway_values(4001, 3002))})
    # app-reader reads only APP_SERVICE_URL; the reconcile that rolled gateway-service passed it by.
    assert generations(cluster, namespace, *GATEWAY_APPS) == raised(before, "gateway-service")

    cluster.apply(service("app-service", namespace, 4002))
    want = {
        "gateway-service": render_hash(gateway_values(4001, 4002)),
        "app-reader": render_hash({"APP_SERVICE_URL": "http://app-service:4002"}),
    }
    wait_hashes(cluster, namespace, want)
    wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
    assert generations(cluster, namespace, *GATEWAY_APPS) == raised(
        before, "gateway-service", "gateway-service", "app-reader"
    )


@contextmanager
def cpu_hog() -> Iterator[None]:
    """Keep every core busy: one process spinning per CPU, at the tests' own priority."""
    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for process in spinning:
            process.kill()
            process.wait()


BURST_TRIES = 10


def test_a_burst_rolls_each_consumer_once_at_the_default_window_on_a_busy_machine(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    """One `kubectl apply` of five Services is one change for their consumers, 10 times of 10, with every core busy."""
    names = [f"svc-{i}" for i in range(5)]
    links = [{"key": f"SVC_{i}_URL", "service": name} for i, name in enumerate(names)]
    consumers = ("consumer-a", "consumer-b")
    cluster.apply(
        [
            *(service(name, namespace, 8000 + i) for i, name in enumerate(names)),
            *(deployment(name, namespace, env_from="burst-config") for name in consumers),
            servicelink("burst", namespace, "burst-config", *links),
        ]
    )
    settle(cluster, namespace, "burst")
    rolled: list[dict[str, int]] = []
    with cpu_hog():
        for attempt in range(1, BURST_TRIES + 1):
            before = generations(cluster, namespace, *consumers)
            base = 8000 + 10 * attempt
            cluster.apply([service(name, namespace, base + i) for i, name in enumerate(names)])
            final = {f"SVC_{i}_URL": f"http://{name}:{base + i}" for i, name in enumerate(names)}
            wait_hashes(cluster, namespace, dict.fromkeys(consumers, render_hash(final)))
            wait_until_acted(cluster, namespace, "burst", "svc-0")
            after = generations(cluster, namespace, *consumers)
            rolled.append({name: after[name] - before[name] for name in consumers})
    print(f"\n[burst] rollouts per consumer, per try: {rolled}")
    assert rolled == [dict.fromkeys(consumers, 1)] * BURST_TRIES, "rollouts per consumer, per try"


def test_statefulsets_and_daemonsets_roll_and_other_namespaces_do_not(
    cluster: Cluster, namespace: str, operator: Any
) -> None:
    other = f"{namespace}-b"
    cluster.kubectl("create", "namespace", other)
    try:
        cluster.apply(
            [
                service("auth-service", namespace, 3001),
                deployment("db", namespace, env_from="cfg", kind="StatefulSet"),
                deployment("agent", namespace, env_from="cfg", kind="DaemonSet"),
                deployment("gateway-service", other, env_from="cfg"),
                servicelink("links", namespace, "cfg", GATEWAY_LINKS[0]),
            ]
        )
        settle(cluster, namespace, "links")
        kinds = {"db": "statefulset", "agent": "daemonset"}
        before = {name: generations(cluster, namespace, name, kind=kind)[name] for name, kind in kinds.items()}
        cluster.apply(service("auth-service", namespace, 4001))
        new_hash = render_hash({"AUTH_SERVICE_URL": "http://auth-service:4001"})
        for name, kind in kinds.items():
            wait_hashes(cluster, namespace, {name: new_hash}, kind=kind)
        wait_until_acted(cluster, namespace, "links", "auth-service")
        after = {name: generations(cluster, namespace, name, kind=kind)[name] for name, kind in kinds.items()}
        assert after == raised(before, *kinds)
        assert generations(cluster, other, "gateway-service") == {"gateway-service": 1}
        assert template_hash(cluster, "deployment", other, "gateway-service") is None
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_rollout_none_rolls_nothing(cluster: Cluster, namespace: str, operator: Any) -> None:
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            deployment("gateway-service", namespace, env_from="cfg"),
            servicelink("links", namespace, "cfg", GATEWAY_LINKS[0], rollout="None"),
        ]
    )
    settle(cluster, namespace, "links")
    before = generations(cluster, namespace, "gateway-service")
    cluster.apply(service("auth-service", namespace, 4001))
    wait_for(
        lambda: (
            cluster.get("configmap", "cfg", "-n", namespace)["data"]["AUTH_SERVICE_URL"] == "http://auth-service:4001"
        ),
        what="value written",
    )
    wait_until_acted(cluster, namespace, "links", "auth-service")
    assert generations(cluster, namespace, "gateway-service") == before
    assert template_hash(cluster, "deployment", namespace, "gateway-service") is None
    assert condition(cluster.get("sl", "links", "-n", namespace), "RolledOut")["reason"] == "RolloutDisabled"


def test_a_consumer_created_after_the_fact_is_not_rolled(cluster: Cluster, namespace: str, operator: Any) -> None:
    before = gateway(cluster, namespace)
    cluster.apply(service("auth-service", namespace, 4001))
    wait_hashes(cluster, namespace, {"gateway-service": render_hash(gateway_values(4001, 3002))})
    cluster.apply(deployment("latecomer", namespace, env_from="gateway-service-config"))
    wait_for(lambda: len(replicasets(cluster, namespace, "latecomer")) == 1, what="latecomer's first ReplicaSet")
    wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
    assert generations(cluster, namespace, "latecomer") == {"latecomer": 1}
    assert template_hash(cluster, "deployment", namespace, "latecomer") is None
    # It is a consumer all the same: the next change rolls it, once.
    cluster.apply(service("app-service", namespace, 4002))
    latest = render_hash(gateway_values(4001, 4002))
    wait_hashes(cluster, namespace, {"gateway-service": latest, "latecomer": latest})
    wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
    assert generations(cluster, namespace, *GATEWAY_APPS, "latecomer") == {
        **raised(before, "gateway-service", "gateway-service", "app-reader"),
        "latecomer": 2,
    }


def wait_replicaset(cluster: Cluster, namespace: str, app: str, config_hash: str) -> None:
    """Wait until kube-controller-manager made the ReplicaSet of the pod template with ``config_hash``."""
    wait_for(
        lambda: any(
            (rs["spec"]["template"]["metadata"].get("annotations") or {}).get(HASH) == config_hash
            for rs in replicasets(cluster, namespace, app)
        ),
        what=f"the ReplicaSet of {app} at {config_hash}",
    )


def test_kubectl_rollout_undo_is_kept_until_a_value_the_workload_reads_changes(
    cluster: Cluster, namespace: str, operator: Any
) -> None:
    before = gateway(cluster, namespace)
    second, third = render_hash(gateway_values(4001, 3002)), render_hash(gateway_values(5001, 3002))
    for port, config_hash in ((4001, second), (5001, third)):
        cluster.apply(service("auth-service", namespace, port))
        wait_hashes(cluster, namespace, {"gateway-service": config_hash})
        wait_replicaset(cluster, namespace, "gateway-service", config_hash)
    labels = cluster.get("deployment", "gateway-service", "-n", namespace)["metadata"]["labels"]
    assert len(labels["servicelink.dev/rolled-template"]) == 8  # the record that tells an undo from a rollout
    undo = ("rollout", "undo", "deployment/gateway-service", "-n", namespace)
    # Back to the template of the second hash; the pods it starts read the ConfigMap as it is now.
    cluster.kubectl(*undo)
    wait_hashes(cluster, namespace, {"gateway-service": second})
    wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
    assert generations(cluster, namespace, *GATEWAY_APPS) == raised(before, *["gateway-service"] * 3)
    assert template_hash(cluster, "deployment", namespace, "gateway-service") == second
    # Back to the template from before servicelink rolled it, which carries no hash: kept too.
    cluster.kubectl(*undo, "--to-revision=1")
    wait_hashes(cluster, namespace, {"gateway-service": None})
    wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
    assert generations(cluster, namespace, *GATEWAY_APPS) == raised(before, *["gateway-service"] * 4)
    # The next change of a value it reads rolls it once, onto every current value.
    cluster.apply(service("app-service", namespace, 4002))
    latest = render_hash(gateway_values(5001, 4002))
    wait_hashes(
        cluster,
        namespace,
        {"gateway-service": latest, "app-reader": render_hash({"APP_SERVICE_URL": "http://app-service:4002"})},
    )
    wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
    assert generations(cluster, namespace, *GATEWAY_APPS) == raised(before, *["gateway-service"] * 5, "app-reader")


def test_a_paused_deployment_is_patched_not_resumed(cluster: Cluster, namespace: str, operator: Any) -> None:
    gateway(cluster, namespace)
    wait_for(lambda: len(replicasets(cluster, namespace, "gateway-service")) == 1, what="the first ReplicaSet")
    cluster.kubectl("rollout", "pause", "deployment/gateway-service", "-n", namespace)
    paused = generations(cluster, namespace, "gateway-service")  # pausing is a change of spec too
    cluster.apply(service("auth-service", namespace, 4001))
    new_hash = render_hash(gateway_values(4001, 3002))
    wait_hashes(cluster, namespace, {"gateway-service": new_hash})
    wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
    assert new_hash == cluster.get("sl", "gateway-service", "-n", namespace)["status"]["hash"]
    body = cluster.get("deployment", "gateway-service", "-n", namespace)
    assert body["spec"]["paused"] is True
    assert body["metadata"]["generation"] == paused["gateway-service"] + 1
    # Paused, kube-controller-manager observes the new generation and makes no ReplicaSet for it.
    wait_for(
        lambda: (
            (d := cluster.get("deployment", "gateway-service", "-n", namespace))["status"].get("observedGeneration")
            == d["metadata"]["generation"]
        ),
        what="kube-controller-manager saw the patch",
    )
    assert len(replicasets(cluster, namespace, "gateway-service")) == 1
