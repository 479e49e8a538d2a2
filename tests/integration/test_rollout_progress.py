"""RolledOut follows the consumers' rollouts, and waitForEndpoints holds them (real kube-controller-manager).

The control plane has no node, so a pod never becomes available: a Deployment of
one replica rolls forever and passes its progress deadline; one of zero completes
at once. An EndpointSlice written by hand stands in for a pod becoming ready.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from objects import (
    condition,
    deployment,
    events,
    link_endpoints,
    service,
    servicelink,
    servicelink_state,
    set_port,
    sl,
    template_hash,
    wait_condition,
    wait_until_acted,
)

from servicelink.testing.fixtures import Cluster, wait_for

pytestmark = pytest.mark.controller_manager


def test_a_rollout_in_progress_then_stalled_then_fixed(cluster: Cluster, namespace: str, operator: Any) -> None:
    consumer = deployment("gateway", namespace, env_from="gateway-config", replicas=1)
    consumer["spec"]["progressDeadlineSeconds"] = 3
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            consumer,
            servicelink("gateway", namespace, "gateway-config", {"key": "AUTH_SERVICE_URL", "service": "auth-service"}),
        ]
    )
    # Never rolled: nothing to wait for, though the Deployment's own pod never starts.
    wait_condition(cluster, namespace, "gateway", "Ready", "True", "Reconciled")

    set_port(cluster, namespace, "auth-service", 4001)
    rolling = wait_condition(cluster, namespace, "gateway", "RolledOut", "False", "RolloutInProgress")
    assert rolling["message"] == f"Deployment {namespace}/gateway: new pods not yet available"
    assert condition(sl(cluster, namespace, "gateway"), "Ready")["reason"] == "RolloutInProgress"

    stalled = wait_condition(cluster, namespace, "gateway", "RolledOut", "False", "RolloutStalled", timeout=60)
    progressing = next(
        c for c in cluster.get("deployment", "gateway", "-n", namespace)["status"]["conditions"]
        if c["type"] == "Progressing"
    )  # fmt: skip
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    assert stalled["message"] == f"Deployment {namespace}/gateway: {progressing['message']}"
    warning = wait_for(lambda: events(cluster, namespace, "RolloutStalled"), what="a RolloutStalled Event")
    assert warning[0]["type"] == "Warning"
    assert warning[0]["message"] == stalled["message"]
    wide = cluster.kubectl("get", "sl", "gateway", "-n", namespace, "-o", "wide").stdout
    print(wide)
    assert wide.splitlines()[0].split()[5:7] == ["REASON", "ROLLOUT"]
    assert wide.splitlines()[1].split()[5:7] == ["RolloutStalled", "RolloutStalled"]

    # Nothing changes while it stays stalled: no status write, however often the Deployment reports.
    before = servicelink_state(sl(cluster, namespace, "gateway"))
    time.sleep(3)  # a resync (3 s) falls in here, then a reconcile after it
    wait_until_acted(cluster, namespace, "gateway", "auth-service")
    assert servicelink_state(sl(cluster, namespace, "gateway")) == before

    # Fixed (here by scaling to zero, which completes the rollout): RolledOut is True again.
    cluster.kubectl("scale", "deployment", "gateway", "-n", namespace, "--replicas=0")
    done = wait_condition(cluster, namespace, "gateway", "RolledOut", "True", "WorkloadsUpdated")
    assert "rollouts are complete" in done["message"]
    wait_condition(cluster, namespace, "gateway", "Ready", "True", "Reconciled")


def endpoint_slice(name: str, namespace: str, *, ready: bool) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-1", "namespace": namespace, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "", "port": 3001, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": ready}}],
    }


def test_wait_for_endpoints_holds_the_rollout_until_the_new_service_answers(
    cluster: Cluster, namespace: str, operator: Any
) -> None:
    auth_v2 = service("auth-v2", namespace, 3001)
    del auth_v2["spec"]["selector"]  # its EndpointSlices are ours to write, standing in for its pods
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            auth_v2,
            deployment("gateway", namespace, env_from="gateway-config"),
            servicelink(
                "gateway",
                namespace,
                "gateway-config",
                {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
                waitForEndpoints=True,
            ),
        ]
    )
    wait_condition(cluster, namespace, "gateway", "Ready", "True", "Reconciled")
    patch = [{"op": "replace", "path": "/spec/links/0/service", "value": "auth-v2"}]
    cluster.kubectl("patch", "sl", "gateway", "-n", namespace, "--type=json", "-p", json.dumps(patch))

    waiting = wait_condition(cluster, namespace, "gateway", "RolledOut", "False", "WaitingForEndpoints")
    assert waiting["message"] == (
        f"consumers of ConfigMap {namespace}/gateway-config roll once these Services have a ready endpoint: "
        f"{namespace}/auth-v2 (AUTH_SERVICE_URL)"
    )
    # The ConfigMap is written at once; the consumer is not rolled.
    assert cluster.get("configmap", "gateway-config", "-n", namespace)["data"] == {
        "AUTH_SERVICE_URL": "http://auth-v2:3001"
    }
    assert sl(cluster, namespace, "gateway")["status"]["deferred"] == [
        {
            "key": "AUTH_SERVICE_URL",
            "service": f"{namespace}/auth-v2",
            "previous": "http://auth-service:3001",
            "reason": "WaitingForEndpoints",
        }
    ]
    cluster.apply(endpoint_slice("auth-v2", namespace, ready=False))  # an endpoint, not ready yet
    wait_for(lambda: link_endpoints(sl(cluster, namespace, "gateway"), "auth-v2") == 1, what="the endpoint seen")
    assert template_hash(cluster, namespace, "gateway") is None
    assert cluster.get("deployment", "gateway", "-n", namespace)["metadata"]["generation"] == 1

    # Its endpoint becomes ready: the consumer rolls once, onto the new value.
    cluster.apply(endpoint_slice("auth-v2", namespace, ready=True))
    wait_for(lambda: template_hash(cluster, namespace, "gateway"), what="the consumer rolled")
    assert template_hash(cluster, namespace, "gateway") == sl(cluster, namespace, "gateway")["status"]["hash"]
    wait_condition(cluster, namespace, "gateway", "RolledOut", "True", "WorkloadsUpdated")
    assert "deferred" not in sl(cluster, namespace, "gateway")["status"]
    # The value changed before the rollout: the rollout, once it happens, is its own Event.
    rolled = [e["message"] for e in events(cluster, namespace, "RolledOut")]
    assert rolled == [f"rolled Deployment {namespace}/gateway onto the ConfigMap's current values"]
    wait_until_acted(cluster, namespace, "gateway", "auth-v2")  # one more ready endpoint: no second rollout
    assert cluster.get("deployment", "gateway", "-n", namespace)["metadata"]["generation"] == 2


def test_kubectl_explain_describes_wait_for_endpoints_and_the_deferred_keys(cluster: Cluster, crd: Any) -> None:
    def explain(field: str) -> str:
        # Right after the CRD is applied the API server may not publish its schema yet.
        return str(
            wait_for(
                lambda: (out := cluster.kubectl("explain", field, check=False)).returncode == 0 and out.stdout,
                what=f"kubectl explain {field}",
            )
        )

    assert "a ready endpoint" in " ".join(explain("servicelink.spec.waitForEndpoints").split())
    assert "Default false" in explain("servicelink.spec.waitForEndpoints")
    assert "previous" in explain("servicelink.status.deferred")
