"""A rollout held back survives the operator's death: the ServiceLink's status says it is owed, not memory.

Each test holds a rollout back, SIGKILLs the operator, lets the cause go while
no operator runs, starts a new one, and counts the consumer's rollouts by its
``metadata.generation`` (the API server raises it on each change of its spec):
exactly one, and none more once the new operator has reconciled again.
"""

from __future__ import annotations

import json
import signal
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from objects import (
    admission_refused,
    deployment,
    external_service,
    service,
    servicelink,
    set_port,
    sl,
    template_hash,
    wait_condition,
    wait_until_acted,
)

from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for


def generation(cluster: Cluster, namespace: str, name: str) -> int:
    return int(cluster.get("deployment", name, "-n", namespace)["metadata"]["generation"])


def template_patch_refused(cluster: Cluster, namespace: str, name: str) -> bool:
    """Whether the API server refuses a change of the Deployment's pod template now (a dry run: nothing is kept)."""
    patch = json.dumps({"spec": {"template": {"metadata": {"annotations": {"probe": "1"}}}}})
    done = cluster.kubectl("patch", "deployment", name, "-n", namespace, "--dry-run=server", "-p", patch, check=False)
    return done.returncode != 0


def templates_frozen(cluster: Cluster, namespace: str) -> AbstractContextManager[None]:
    """A ValidatingAdmissionPolicy that refuses any change of a Deployment's pod template in ``namespace``."""
    rule = {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["deployments"]}
    unchanged = "object.spec.template == oldObject.spec.template"
    return admission_refused(
        cluster, f"freeze-templates-{namespace}", rule, unchanged, "templates are frozen", namespace=namespace
    )


def consumer_of_auth(cluster: Cluster, namespace: str, **spec: Any) -> None:
    """A Deployment that reads gateway-config, which a ServiceLink fills from auth-service; never rolled yet."""
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            deployment("gateway", namespace, env_from="gateway-config"),
            servicelink(
                "gateway", namespace, "gateway-config", {"key": "AUTH_SERVICE_URL", "service": "auth-service"}, **spec
            ),
        ]
    )
    wait_condition(cluster, namespace, "gateway", "Ready", "True", "Reconciled")
    assert template_hash(cluster, namespace, "gateway") is None  # no entry: only the status can say it is owed


def deferred(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return list(sl(cluster, namespace, "gateway").get("status", {}).get("deferred") or [])


def rolled_once_by_a_new_operator(
    cluster: Cluster, namespace: str, *, before: int, tmp_path: Path, linked: str
) -> None:
    """Start an operator; the consumer rolls exactly once, then once for the next change, and no more.

    ``linked``: a Service the ServiceLink links, poked for the positive sign that it was reconciled again.
    """
    again = start_operator_process(cluster.kubeconfig, tmp_path / "again.log")
    try:
        wait_for(lambda: template_hash(cluster, namespace, "gateway"), timeout=30, what="the owed rollout")
        assert generation(cluster, namespace, "gateway") == before + 1
        wait_for(lambda: not deferred(cluster, namespace), timeout=30, what="status.deferred emptied")
        assert template_hash(cluster, namespace, "gateway") == sl(cluster, namespace, "gateway")["status"]["hash"]
        # Then a later change, as a positive sign that this operator reconciled the ServiceLink again: it rolls the
        # consumer once more, and only once, so the owed rollout was not sent twice.
        cluster.apply(external_service("billing", namespace, "billing.invalid"))  # never waited for: no endpoints
        link = {"key": "BILLING_URL", "service": "billing", "port": 5001}
        patch = [{"op": "add", "path": "/spec/links/-", "value": link}]
        cluster.kubectl("patch", "sl", "gateway", "-n", namespace, "--type=json", "-p", json.dumps(patch))
        wait_for(
            lambda: generation(cluster, namespace, "gateway") == before + 2, timeout=30, what="the next change rolled"
        )
        assert "BILLING_URL" in sl(cluster, namespace, "gateway")["status"]["values"]
        wait_until_acted(cluster, namespace, "gateway", linked)
        assert generation(cluster, namespace, "gateway") == before + 2  # one per change: the owed one, then this
    finally:
        again.stop()


def test_a_refused_patch_is_owed_across_a_sigkill_and_rolled_once_after(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, tmp_path: Path
) -> None:
    consumer_of_auth(cluster, namespace)
    before = generation(cluster, namespace, "gateway")
    with templates_frozen(cluster, namespace):
        wait_for(lambda: template_patch_refused(cluster, namespace, "gateway"), what="the policy in force")
        set_port(cluster, namespace, "auth-service", 4001)
        wait_condition(cluster, namespace, "gateway", "RolledOut", "False", "RolloutFailed")
        assert [(d["key"], d["reason"]) for d in deferred(cluster, namespace)] == [
            ("AUTH_SERVICE_URL", "RolloutFailed")
        ]
        operator_process.stop(signal.SIGKILL)
    wait_for(lambda: not template_patch_refused(cluster, namespace, "gateway"), what="the policy gone")
    assert generation(cluster, namespace, "gateway") == before
    rolled_once_by_a_new_operator(cluster, namespace, before=before, tmp_path=tmp_path, linked="auth-service")


def test_a_rollout_waiting_for_endpoints_is_owed_across_a_sigkill_and_rolled_once_after(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, tmp_path: Path
) -> None:
    consumer_of_auth(cluster, namespace, waitForEndpoints=True)
    before = generation(cluster, namespace, "gateway")
    auth_v2 = service("auth-v2", namespace, 3001)
    del auth_v2["spec"]["selector"]  # its EndpointSlices are ours to write, standing in for its pods
    cluster.apply(auth_v2)
    patch = [{"op": "replace", "path": "/spec/links/0/service", "value": "auth-v2"}]
    cluster.kubectl("patch", "sl", "gateway", "-n", namespace, "--type=json", "-p", json.dumps(patch))
    wait_condition(cluster, namespace, "gateway", "RolledOut", "False", "WaitingForEndpoints")
    assert [(d["key"], d["reason"]) for d in deferred(cluster, namespace)] == [
        ("AUTH_SERVICE_URL", "WaitingForEndpoints")
    ]
    operator_process.stop(signal.SIGKILL)
    cluster.apply(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "auth-v2-1",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": "auth-v2"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "", "port": 3001, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": True}}],
        }
    )  # ready while no operator runs
    assert generation(cluster, namespace, "gateway") == before
    rolled_once_by_a_new_operator(cluster, namespace, before=before, tmp_path=tmp_path, linked="auth-v2")


def reader_of_two(cluster: Cluster, namespace: str) -> None:
    """Deployment ``reader`` reads SHARED_URL of ConfigMap cfg-a (ServiceLink ``a``) and B_URL of cfg-b (``b``).

    ``b`` links ``shared`` too, under a key ``reader`` does not read: a change of ``shared`` writes both
    ConfigMaps, so ``a`` leaves its rollout to ``b``'s patch, and ``b`` itself has nothing to roll.
    """
    shared = {"key": "SHARED_URL", "service": "shared"}
    cluster.apply(
        [
            service("shared", namespace, 3001),
            service("b-only", namespace, 3002),
            deployment("reader", namespace, key_refs={"A": ("cfg-a", "SHARED_URL"), "B": ("cfg-b", "B_URL")}),
            servicelink("a", namespace, "cfg-a", shared),
            servicelink("b", namespace, "cfg-b", shared, {"key": "B_URL", "service": "b-only"}),
        ]
    )
    for name in ("a", "b"):
        wait_condition(cluster, namespace, name, "Ready", "True", "Reconciled")


def poke(cluster: Cluster, namespace: str, service_name: str, count: int) -> None:
    """Give ``service_name`` ``count`` ready endpoints: a trigger of its ServiceLinks that changes no value."""
    cluster.apply(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"poke-{service_name}",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": service_name},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.255.0.{i}"], "conditions": {"ready": True}} for i in range(1, count + 1)],
        }
    )


def test_a_rollout_waiting_for_another_servicelink_is_owed_across_a_sigkill_and_rolled_once_after(
    cluster: Cluster, crd: Path, namespace: str, tmp_path: Path
) -> None:
    """One Service change reaches both ConfigMaps of ``reader``: ``a`` leaves its share to ``b``, still queued.

    ``b`` is kept queued by triggers that keep coming (within the 20-window cap of a 1 s window), so the
    operator is killed while ``a``'s share waits, deterministically. After the restart ``b`` rolls nothing
    (``reader`` does not read the key it changed): only ``a``'s status can say that ``reader`` is owed one.
    """
    first = start_operator_process(cluster.kubeconfig, tmp_path / "operator.log", SERVICELINK_COALESCE_SECONDS="1")
    try:
        reader_of_two(cluster, namespace)
        before = generation(cluster, namespace, "reader")
        set_port(cluster, namespace, "shared", 4001)
        owed = [{"key": "SHARED_URL", "reason": "WaitingForConfigMaps"}]
        for count in range(1, 40):  # 0.4 s apart: b stays queued; a is reconciled after its 1 s window
            poke(cluster, namespace, "b-only", count)
            held = sl(cluster, namespace, "a").get("status", {}).get("deferred") or []
            if [{"key": d["key"], "reason": d["reason"]} for d in held] == owed:
                break
        else:
            raise AssertionError("a's share was never held for b")
        first.stop(signal.SIGKILL)
    finally:
        first.stop()
    assert generation(cluster, namespace, "reader") == before
    assert (cluster.get("configmap", "cfg-b", "-n", namespace)["data"]["SHARED_URL"]) == "http://shared:3001"

    again = start_operator_process(cluster.kubeconfig, tmp_path / "again.log")
    try:
        wait_for(lambda: generation(cluster, namespace, "reader") > before, timeout=30, what="the owed rollout")
        wait_for(lambda: not sl(cluster, namespace, "a")["status"].get("deferred"), timeout=30, what="a caught up")
        assert generation(cluster, namespace, "reader") == before + 1
        set_port(cluster, namespace, "shared", 5001)  # the next change: a sign this operator acted since, once
        wait_for(lambda: generation(cluster, namespace, "reader") > before + 1, timeout=30, what="the next change")
        wait_until_acted(cluster, namespace, ("a", "b"), "shared")
        assert generation(cluster, namespace, "reader") == before + 2
    finally:
        again.stop()
