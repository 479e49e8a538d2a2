"""Builders of the objects the integration tests apply (plain dicts, as a user writes them), and readers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from servicelink.testing.fixtures import SEED_CONFIG, Cluster, wait_for

GALLERY_SERVICELINKS = ("gateway-service", "app-service", "worker-service")


def service(
    name: str,
    namespace: str,
    *ports: int | tuple[str, int],
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ClusterIP Service; a port is a number or (name, number)."""
    spec_ports = [
        {"name": p[0], "port": p[1], "targetPort": p[1]} if isinstance(p, tuple) else {"port": p, "targetPort": p}
        for p in ports
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}, "labels": labels or {}},
        "spec": {"selector": {"app": name}, "ports": spec_ports},
    }


def external_service(name: str, namespace: str, external_name: str) -> dict[str, Any]:
    """A Service of type ExternalName."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "ExternalName", "externalName": external_name},
    }


def shared_configmap(name: str, namespace: str, writable_by: str, data: dict[str, str]) -> dict[str, Any]:
    """A ConfigMap whose owner lets ServiceLink ``writable_by`` write into it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "annotations": {"servicelink.dev/writable-by": writable_by}},
        "data": data,
    }


def servicelink(name: str, namespace: str, configmap: str, *links: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A ServiceLink writing ``links`` into ``configmap``."""
    return {
        "apiVersion": "servicelink.dev/v1alpha1",
        "kind": "ServiceLink",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"configMapName": configmap, "links": list(links), **spec},
    }


def deployment(
    name: str,
    namespace: str,
    *,
    env_from: str | None = None,
    key_refs: dict[str, tuple[str, str]] | None = None,
    labels: dict[str, str] | None = None,
    kind: str = "Deployment",
    replicas: int = 0,
) -> dict[str, Any]:
    """A Deployment (or StatefulSet, DaemonSet) whose container reads a ConfigMap.

    ``env_from`` reads a whole ConfigMap; ``key_refs`` maps an env var to (configmap, key).
    No replicas by default: the control plane has no node, so a pod never becomes
    available, and a rollout of zero replicas completes as soon as its controller
    sees it (a DaemonSet has no node to run on, so none either).
    """
    container: dict[str, Any] = {"name": "app", "image": "busybox:1.36", "command": ["sleep", "infinity"]}
    if env_from:
        container["envFrom"] = [{"configMapRef": {"name": env_from}}]
    if key_refs:
        container["env"] = [
            {"name": var, "valueFrom": {"configMapKeyRef": {"name": cm, "key": key}}}
            for var, (cm, key) in key_refs.items()
        ]
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
    }
    if kind != "DaemonSet":
        spec["replicas"] = replicas
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": spec,
    }


def cronjob(
    name: str,
    namespace: str,
    *,
    env_from: str | None = None,
    key_refs: dict[str, tuple[str, str]] | None = None,
    schedule: str = "0 0 1 1 *",
) -> dict[str, Any]:
    """A CronJob whose Jobs' container reads a ConfigMap, as ``deployment`` reads it.

    The test control plane runs no CronJob controller, and the default schedule
    (once a year) would start nothing soon anyway: only servicelink writes it.
    """
    template = deployment(name, namespace, env_from=env_from, key_refs=key_refs)["spec"]["template"]
    template["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": template}}},
    }


def argo_rollout(
    name: str,
    namespace: str,
    *,
    key_refs: dict[str, tuple[str, str]] | None = None,
    workload_ref: str | None = None,
) -> dict[str, Any]:
    """An Argo Rollout (canary: 20%, then a pause) with an inline template reading a ConfigMap as ``deployment``
    reads it, or, given ``workload_ref``, no template and a ``spec.workloadRef`` to that Deployment.

    No Argo controller runs in the tests: only servicelink writes its spec, and its status is set by hand.
    """
    spec: dict[str, Any] = {
        "replicas": 0,
        "selector": {"matchLabels": {"app": name}},
        "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
    }
    if workload_ref:
        spec["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload_ref}
    else:
        spec["template"] = deployment(name, namespace, key_refs=key_refs)["spec"]["template"]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": spec,
    }


def job(
    name: str,
    namespace: str,
    *,
    env_from: str | None = None,
    key_refs: dict[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """A Job whose container reads a ConfigMap, as ``deployment`` reads it.

    The test control plane runs no Job controller: it never starts a pod nor
    sets a status, so only the test (through the status subresource) and
    servicelink could write it.
    """
    template = deployment(name, namespace, env_from=env_from, key_refs=key_refs)["spec"]["template"]
    template["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": template},
    }


def servicelinks_only(namespace: str, subject: dict[str, str], *, verbs: tuple[str, ...]) -> list[dict[str, Any]]:
    """A Role allowing only ``verbs`` on ServiceLinks, and its binding to ``subject``: a user limited to them."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "servicelinks-only", "namespace": namespace},
            "rules": [{"apiGroups": ["servicelink.dev"], "resources": ["servicelinks"], "verbs": list(verbs)}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "servicelinks-only", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "servicelinks-only"},
            "subjects": [subject],
        },
    ]


def set_port(cluster: Cluster, namespace: str, name: str, port: int) -> None:
    """Change the first port of a Service."""
    patch = json.dumps([{"op": "replace", "path": "/spec/ports/0/port", "value": port}])
    cluster.kubectl("patch", "service", name, "-n", namespace, "--type=json", "-p", patch)


def events(cluster: Cluster, namespace: str, reason: str | None = None) -> list[dict[str, Any]]:
    """The Events of a namespace, of one reason if given."""
    args = ["events", "-n", namespace]
    if reason:
        args += ["--field-selector", f"reason={reason}"]
    items: list[dict[str, Any]] = cluster.get(*args)["items"]
    return items


def template_hash(cluster: Cluster, namespace: str, name: str) -> str | None:
    """The servicelink.dev/config-hash on a Deployment's pod template: set once servicelink rolled it."""
    body = cluster.get("deployment", name, "-n", namespace)
    value: str | None = (body["spec"]["template"]["metadata"].get("annotations") or {}).get(
        "servicelink.dev/config-hash"
    )
    return value


def condition(servicelink_body: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """The condition of type ``kind`` in a ServiceLink's status, or an empty dict."""
    for entry in ((servicelink_body or {}).get("status") or {}).get("conditions") or ():
        if entry.get("type") == kind:
            return dict(entry)
    return {}


def data(cluster: Cluster, namespace: str, name: str) -> dict[str, str] | None:
    """A ConfigMap's data, or None when it does not exist."""
    configmap = cluster.get("configmap", name, "-n", namespace)
    return None if configmap is None else dict(configmap.get("data") or {})


def sl(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """A ServiceLink as the API server holds it."""
    body: dict[str, Any] = cluster.get("servicelink", name, "-n", namespace)
    return body


def wait_condition(
    cluster: Cluster, namespace: str, name: str, kind: str, status: str, reason: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    """Wait until a ServiceLink's condition ``kind`` has ``status`` (and ``reason``); return it."""

    def check() -> dict[str, Any] | None:
        found = condition(sl(cluster, namespace, name), kind)
        return found if found.get("status") == status and reason in (None, found.get("reason")) else None

    result: dict[str, Any] = wait_for(
        check, timeout=timeout, interval=0.2, what=f"{kind}={status} {reason or ''} on {name}"
    )
    return result


def gallery_configmaps(cluster: Cluster, namespace: str) -> dict[str, dict[str, str] | None]:
    """The data of each of the seed's ConfigMaps; None for one that does not exist."""
    found = {}
    for name in SEED_CONFIG:
        body = cluster.get("configmap", name, "-n", namespace)
        found[name] = None if body is None else body.get("data")
    return found


def gallery_conditions(cluster: Cluster, namespace: str) -> dict[str, dict[str, str]]:
    """Each gallery ServiceLink's conditions, type -> status."""
    found = {}
    for name in GALLERY_SERVICELINKS:
        status = cluster.get("servicelink", name, "-n", namespace).get("status") or {}
        found[name] = {c["type"]: c["status"] for c in status.get("conditions", ())}
    return found


def service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    """Write to ``path`` a kubeconfig holding a token of ServiceAccount ``account``, as its pod would have."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def generation(cluster: Cluster, namespace: str, name: str, kind: str = "deployment") -> int:
    """A workload's ``metadata.generation``: it moves by one for each change of its spec, a rollout among them.

    Count rollouts by it, not by ReplicaSets: a ReplicaSet appears only once kube-controller-manager
    has acted, so a spurious rollout still on its way passes a count of ReplicaSets.
    """
    found: int = cluster.get(kind, name, "-n", namespace)["metadata"]["generation"]
    return found


def generations(cluster: Cluster, namespace: str, *names: str, kind: str = "deployment") -> dict[str, int]:
    """The ``generation`` of each named workload."""
    return {name: generation(cluster, namespace, name, kind) for name in names}


def link_endpoints(servicelink_body: dict[str, Any] | None, service_name: str) -> int | None:
    """The endpoints total a ServiceLink's status shows for its link to ``service_name``; None when it shows none."""
    for entry in ((servicelink_body or {}).get("status") or {}).get("links") or ():
        if entry.get("service", "").rsplit("/", 1)[-1] == service_name:  # "namespace/name"
            return int((entry.get("endpoints") or {}).get("total", 0)) if entry.get("endpoints") else None
    return None


def servicelink_state(servicelink_body: dict[str, Any]) -> dict[str, Any]:
    """A ServiceLink as written, but what moves on every write (resourceVersion, managedFields) and what the poke of
    ``wait_until_acted`` changes on purpose (the endpoint counts): equal before and after a reconcile that wrote
    nothing else."""
    metadata = {k: v for k, v in servicelink_body["metadata"].items() if k not in ("resourceVersion", "managedFields")}
    status = {k: v for k, v in (servicelink_body.get("status") or {}).items() if k != "endpointSummary"}
    status["links"] = [{k: v for k, v in link.items() if k != "endpoints"} for link in status.get("links", ())]
    return {"metadata": metadata, "spec": servicelink_body.get("spec"), "status": status}


def wait_until_acted(
    cluster: Cluster, namespace: str, link: str | tuple[str, ...], service_name: str, timeout: float = 60
) -> None:
    """Poke ServiceLink ``link`` (or each of several) with a change that writes only its status; wait until it shows.

    The poke is one more ready endpoint for ``service_name`` (a Service every one of them links), in an
    EndpointSlice of the test's own that kube-controller-manager leaves alone: no value changes, so
    the reconcile it triggers may roll nothing and write nothing but ``status.links[].endpoints``.
    Once that shows, ``link`` has been reconciled after every change made before the call (the
    operator never reconciles one ServiceLink twice at once, and a trigger that arrives during a
    reconcile runs another one afterwards). That is the positive sign a check that nothing
    (else) rolled or was written must wait for; a sleep is not.
    """
    links = (link,) if isinstance(link, str) else link
    name = f"poke-{service_name}"
    before = {each: link_endpoints(sl(cluster, namespace, each), service_name) or 0 for each in links}
    slice_body = cluster.get("endpointslice", name, "-n", namespace)
    count = len((slice_body or {}).get("endpoints") or ()) + 1
    cluster.apply(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "kubernetes.io/service-name": service_name,
                    "endpointslice.kubernetes.io/managed-by": "test",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.255.0.{i}"], "conditions": {"ready": True}} for i in range(1, count + 1)],
        }
    )
    wait_for(
        lambda: all(link_endpoints(sl(cluster, namespace, each), service_name) == before[each] + 1 for each in links),
        timeout=timeout,
        interval=0.2,
        what=f"{', '.join(links)} reconciled: one more endpoint of {service_name} in the status",
    )


@contextmanager
def admission_refused(
    cluster: Cluster,
    name: str,
    rule: dict[str, Any],
    expression: str,
    message: str,
    *,
    namespace: str | None = None,
) -> Iterator[None]:
    """A ValidatingAdmissionPolicy ``name`` denying the requests ``rule`` matches unless ``expression`` holds.

    ``namespace``: only there (a cluster-scoped object is matched wherever ``rule`` matches it). The
    policy and its binding are deleted on leaving. The API server takes a moment to enforce a new
    policy: probe it (a dry run) before relying on it.
    """
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [rule]},
            "validations": [{"expression": expression, "message": message}],
        },
    }
    binding: dict[str, Any] = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    if namespace is not None:
        selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        binding["spec"]["matchResources"] = {"namespaceSelector": selector}
    cluster.apply([policy, binding])
    try:
        yield
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name)
