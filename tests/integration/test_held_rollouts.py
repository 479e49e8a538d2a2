"""A rollout held back survives the operator's death: the ServiceLink's status says it is owed, not memory.

Each test holds a rollout back, SIGKILLs the operator, lets the cause go while
no operator runs, starts a new one, and counts the consumer's rollouts by its
``metadata.generation`` (the API server raises it on each change of its spec):
exactly one, and none more once the new operator has reconciled again.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from objects import deployment, external_service, service, servicelink, set_port, sl, template_hash, wait_condition

from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for


def generation(cluster: Cluster, namespace: str, name: str) -> int:
    return int(cluster.get("deployment", name, "-n", namespace)["metadata"]["generation"])


def template_patch_refused(cluster: Cluster, namespace: str, name: str) -> bool:
    """Whether the API server refuses a change of the Deployment's pod template now (a dry run: nothing is kept)."""
    patch = json.dumps({"spec": {"template": {"metadata": {"annotations": {"probe": "1"}}}}})
    done = cluster.kubectl("patch", "deployment", name, "-n", namespace, "--dry-run=server", "-p", patch, check=False)
    return done.returncode != 0


@contextmanager
def templates_frozen(cluster: Cluster, namespace: str) -> Iterator[None]:
    """A ValidatingAdmissionPolicy that refuses any change of a Deployment's pod template in ``namespace``."""
    name = f"freeze-templates-{namespace}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["UPDATE"],
                        "resources": ["deployments"],
                    }
                ]
            },
            "validations": [
                {"expression": "object.spec.template == oldObject.spec.template", "message": "templates are frozen"}
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }
    cluster.apply([policy, binding])
    try:
        yield
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name)


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


def rolled_once_by_a_new_operator(cluster: Cluster, namespace: str, *, before: int, tmp_path: Path) -> None:
    """Start an operator; the consumer rolls exactly once; a later reconcile of the same ServiceLink rolls nothing."""
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
    rolled_once_by_a_new_operator(cluster, namespace, before=before, tmp_path=tmp_path)


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
    rolled_once_by_a_new_operator(cluster, namespace, before=before, tmp_path=tmp_path)
