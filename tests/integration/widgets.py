"""The test kind Widget (CRD ``widgets.test.servicelink.dev``), its WorkloadMappings, and readers of both.

A Widget is namespaced and holds a pod template at ``.spec.template``, as a
Deployment does; no controller runs for it, so only servicelink writes its spec
(its generation). The ``widgets`` fixture (conftest.py) serves the CRD for a test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from objects import condition, deployment

from servicelink.testing.fixtures import Cluster, wait_for

HASH = "servicelink.dev/config-hash"
GROUP = "test.servicelink.dev"
MAPPING = f"widgets.{GROUP}"
KIND = f"Widget.{GROUP}"
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": MAPPING},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


@contextmanager
def served_widgets(cluster: Cluster) -> Iterator[None]:
    """The Widget CRD, served; it and every WorkloadMapping deleted on leaving (both are cluster-scoped)."""
    cluster.apply(WIDGET_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{MAPPING}")
    wait_for(lambda: cluster.kubectl("get", "widgets", "-A", check=False).returncode == 0, what="widgets served")
    try:
        yield
    finally:
        cluster.kubectl("delete", "workloadmappings", "--all", "--wait=true")
        cluster.kubectl("delete", "crd", MAPPING, "--wait=true")


def mapping(name: str = MAPPING, **spec: Any) -> dict[str, Any]:
    """A WorkloadMapping of Widgets (v1, template at .spec.template), ``spec`` overriding any field."""
    return {
        "apiVersion": "servicelink.dev/v1alpha1",
        "kind": "WorkloadMapping",
        "metadata": {"name": name},
        "spec": {"kind": "Widget", "version": "v1", "template": ".spec.template", **spec},
    }


def widget(name: str, namespace: str, key_refs: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A Widget whose pod template reads keys of a ConfigMap, where a Deployment holds its own."""
    body = deployment(name, namespace, key_refs=key_refs)
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": body["metadata"], "spec": body["spec"]}


def widget_meta(cluster: Cluster, namespace: str, name: str) -> tuple[str, int, str | None]:
    """(resourceVersion, generation, config hash) of a Widget."""
    body = cluster.get("widget", name, "-n", namespace)
    annotations = (body["spec"]["template"].get("metadata") or {}).get("annotations") or {}
    return body["metadata"]["resourceVersion"], body["metadata"]["generation"], annotations.get(HASH)


def wait_ready(cluster: Cluster, reason: str, name: str = MAPPING, timeout: float = 30) -> dict[str, Any]:
    """Wait until a WorkloadMapping's Ready condition has ``reason``; return the condition."""

    def found() -> dict[str, Any] | None:
        body = cluster.get("workloadmapping", name) or {}
        got = condition(body, "Ready")
        return got if got.get("reason") == reason else None

    result: dict[str, Any] = wait_for(found, timeout=timeout, what=f"{name}: Ready {reason}")
    return result
