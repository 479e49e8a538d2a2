"""The servicelink CLI against the real API server: render agrees with the operator, graph reads the cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from objects import data, sl

from servicelink.testing.fixtures import REPO, Cluster, wait_for
from servicelink.tools.manifests import read_manifests
from servicelink.tools.offline import build_world, link_servicelinks

SERVICELINK = str(Path(sys.executable).with_name("servicelink"))
GALLERY = REPO / "examples" / "gallery"


def servicelink_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``servicelink`` console script."""
    return subprocess.run([SERVICELINK, *args], capture_output=True, text=True, timeout=60)


def in_namespace(objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """The objects moved into ``namespace``."""
    return [{**o, "metadata": {**o["metadata"], "namespace": namespace}} for o in objects]


def without_endpoints(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``status.links`` without the endpoint counts, which only a cluster knows."""
    return [{k: v for k, v in entry.items() if k != "endpoints"} for entry in entries]


def assert_operator_agrees_with_render(
    cluster: Cluster, namespace: str, objects: list[dict[str, Any]], tmp: Path
) -> None:
    """Apply ``objects``; the operator's ConfigMaps and ``status.links`` become what ``servicelink render`` says."""
    manifest = tmp / f"{namespace}.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    rendered = servicelink_cli("render", "-f", str(manifest), "-o", "json")
    assert rendered.returncode in (0, 1), rendered.stderr
    expected_data = {item["metadata"]["name"]: item.get("data", {}) for item in json.loads(rendered.stdout)["items"]}
    linked = link_servicelinks(build_world(objects, namespace=namespace), cluster_domain="cluster.local")
    expected_links = {sl_.name: sl_.status_links() for sl_ in linked}
    assert rendered.returncode == (0 if all(sl_.ok for sl_ in linked) else 1)

    cluster.apply(objects)

    def agrees() -> bool:
        for name, entries in expected_links.items():
            status = sl(cluster, namespace, name).get("status") or {}
            if without_endpoints(status.get("links") or []) != entries:
                return False
        return all(data(cluster, namespace, cm) == values for cm, values in expected_data.items())

    wait_for(agrees, timeout=45, interval=0.3, what=f"operator and render to agree in {namespace}")


def test_render_agrees_with_the_operator_on_the_gallery(
    cluster: Cluster, namespace: str, operator: Any, tmp_path: Path
) -> None:
    objects = [m.body for m in read_manifests([str(GALLERY)]).of("Service", "ServiceLink", "Deployment")]
    assert_operator_agrees_with_render(cluster, namespace, in_namespace(objects, namespace), tmp_path)
    assert data(cluster, namespace, "gateway-service-config") == {
        "AUTH_SERVICE_URL": "http://auth-service:3001",
        "APP_SERVICE_URL": "http://app-service:3002",
    }


SERVICE_NAMES = ("alpha", "beta", "gamma")
PORT_NAMES = ("http", "grpc", "metrics")


@st.composite
def services(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Services of every shape resolution tells apart: one port, several named ports, ExternalName."""
    found: list[dict[str, Any]] = []
    for name in draw(st.lists(st.sampled_from(SERVICE_NAMES), unique=True, max_size=3)):
        if draw(st.booleans()) and name == "gamma":
            found.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name},
                    "spec": {"type": "ExternalName", "externalName": "db.example.com"},
                }
            )
            continue
        numbers = draw(st.lists(st.integers(1000, 1004), unique=True, min_size=1, max_size=3))
        named = len(numbers) > 1 or draw(st.booleans())
        ports = [{"port": n, **({"name": PORT_NAMES[i]} if named else {})} for i, n in enumerate(numbers)]
        found.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": ports}})
    return found


LINKS = st.fixed_dictionaries(
    {"service": st.sampled_from((*SERVICE_NAMES, "missing"))},
    optional={
        "port": st.one_of(st.integers(1000, 1005), st.sampled_from((*PORT_NAMES, "nope"))),
        "scheme": st.sampled_from(("https", "redis")),
        "path": st.sampled_from(("/v1", "/")),
        "template": st.sampled_from(("{host}", "{host}:{port}", "{scheme}://{fqdn}:{port}{path}", "{service}")),
    },
)


@st.composite
def servicelinks(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One to three ServiceLinks; two may share a ConfigMap and a key (the first by name keeps it)."""
    found: list[dict[str, Any]] = []
    for name in ("sl-a", "sl-b", "sl-c")[: draw(st.integers(1, 3))]:
        keys = draw(st.lists(st.sampled_from(("A", "B", "C")), unique=True, min_size=1, max_size=3))
        links = [{"key": key, **draw(LINKS)} for key in keys]
        found.append(
            {
                "apiVersion": "servicelink.dev/v1alpha1",
                "kind": "ServiceLink",
                "metadata": {"name": name},
                "spec": {"configMapName": draw(st.sampled_from(("cm-1", "cm-2"))), "links": links},
            }
        )
    return found


def _servicelink(name: str, *links: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "servicelink.dev/v1alpha1",
        "kind": "ServiceLink",
        "metadata": {"name": name},
        "spec": {"configMapName": "cm-2", "links": list(links)},
    }


def _service(name: str, *ports: tuple[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"name": port, "port": number} for port, number in ports]},
    }


# Issue 15: a three-way conflict on C, and A claimed first by sl-b for a Service that does not exist.
THREE_WAY_CONFLICT = {
    "services": [
        _service("alpha", ("http", 1000), ("grpc", 1003), ("metrics", 1001)),
        _service("gamma", ("http", 1000)),
        _service("beta", ("http", 1000)),
    ],
    "links": [
        _servicelink(
            "sl-a",
            {
                "key": "C",
                "service": "alpha",
                "port": 1000,
                "scheme": "redis",
                "path": "/",
                "template": "{scheme}://{fqdn}:{port}{path}",
            },
        ),
        _servicelink(
            "sl-b",
            {"key": "A", "service": "missing", "template": "{host}:{port}", "scheme": "redis"},
            {"key": "C", "service": "gamma", "template": "{service}"},
        ),
        _servicelink(
            "sl-c",
            {"key": "C", "service": "alpha", "port": "grpc", "template": "{service}"},
            {"key": "A", "service": "gamma"},
            {"key": "B", "service": "gamma", "template": "{host}:{port}"},
        ),
    ],
}


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(services=services(), links=servicelinks())
@example(**THREE_WAY_CONFLICT)
def test_render_agrees_with_the_operator_on_generated_servicelinks(
    cluster: Cluster, operator: Any, tmp_path: Path, services: list[dict[str, Any]], links: list[dict[str, Any]]
) -> None:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        # In name order, so the first by name is also the oldest, as render assumes of new objects.
        assert_operator_agrees_with_render(cluster, namespace, in_namespace(services + links, namespace), tmp_path)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_kubectl_runs_servicelink_as_a_plugin(cluster: Cluster, namespace: str, crd: Path) -> None:
    objects = [m.body for m in read_manifests([str(GALLERY)]).of("Service", "ServiceLink", "Deployment")]
    cluster.apply(in_namespace(objects, namespace))
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{Path(SERVICELINK).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    listed = subprocess.run([cluster.kubectl_path, "plugin", "list"], env=env, capture_output=True, text=True)
    assert str(Path(SERVICELINK).with_name("kubectl-servicelink")) in listed.stdout
    through_kubectl = subprocess.run(
        [cluster.kubectl_path, "servicelink", "graph", "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert through_kubectl.returncode == 0, through_kubectl.stderr
    direct = servicelink_cli("graph", "-n", namespace, "--kubeconfig", str(cluster.kubeconfig))
    assert through_kubectl.stdout == direct.stdout
    # Read from the cluster: no pod is ready on a control plane without nodes.
    assert (
        f'Deployment_{namespace.replace("-", "_")}_gateway_service -->|"AUTH_SERVICE_URL: no endpoints"|'
        in direct.stdout
    )
