"""The chart's namespaced mode (rbac.namespaced) against the real API server: Roles in the watched namespace and
for the Lease, no ClusterRole, and the operator, run as the release's ServiceAccount with the settings the chart
gives it, serving a ServiceLink with those grants alone.

No node runs pods here, so the operator is `servicelink run` started as the chart's ServiceAccount, with the
environment of the Deployment the chart renders.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from objects import data, deployment, service, service_account_kubeconfig, servicelink, set_port, template_hash

from servicelink.testing.assets import ensure_helm
from servicelink.testing.fixtures import Cluster, fresh_namespace, running_operator, wait_for

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "servicelink"
RELEASE = "ns-test"  # its objects are named ns-test-servicelink, beside other tests' releases
OPERATOR = f"{RELEASE}-servicelink"
# start_operator_process picks free ports of its own; the pod's would clash between tests.
PORTS = ("SERVICELINK_HEALTH_PORT", "SERVICELINK_METRICS_PORT")
# What the operator or kopf log when the API server refuses them something.
# What a refused call leaves in the log: whole words, so a port such as 40367 in the settings line is no refusal.
REFUSALS = re.compile(r"\b(forbidden|403|not enough permissions|permissions?)\b", re.IGNORECASE)


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real helm against the session's cluster; on failure, raise with its stderr."""
    command = [ensure_helm(), "--kubeconfig", str(cluster.kubeconfig), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


@pytest.fixture
def release(cluster: Cluster, crd: Path) -> Iterator[tuple[str, str]]:
    """`helm install` in namespaced mode into a fresh namespace, watching another; (release's, watched)."""
    with fresh_namespace(cluster) as release_namespace, fresh_namespace(cluster) as watched:
        values = ["--set", "rbac.namespaced=true", "--set", f"watchNamespaces={{{watched}}}"]
        helm(cluster, "install", RELEASE, str(CHART), "--namespace", release_namespace, *values)
        try:
            yield release_namespace, watched
        finally:
            helm(cluster, "uninstall", RELEASE, "--namespace", release_namespace, check=False)


def may(cluster: Cluster, release_namespace: str, *args: str) -> str:
    """What `kubectl auth can-i` answers for the release's ServiceAccount."""
    account = f"--as=system:serviceaccount:{release_namespace}:{OPERATOR}"
    return cluster.kubectl("auth", "can-i", *args, account, check=False).stdout.strip()


def chart_env(cluster: Cluster, release_namespace: str) -> dict[str, str]:
    """The settings the release's Deployment gives its pod, and the namespace the pod would run in."""
    body: dict[str, Any] = cluster.get("deployment", OPERATOR, "-n", release_namespace)
    (container,) = body["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    return {**{k: v for k, v in env.items() if k not in PORTS}, "POD_NAMESPACE": release_namespace}


def test_a_namespaced_release_grants_roles_only_and_its_operator_serves_a_servicelink_with_them(
    cluster: Cluster, release: tuple[str, str], tmp_path: Path
) -> None:
    release_namespace, watched = release
    # Nothing cluster-wide: no ClusterRole, no binding to one.
    assert cluster.get("clusterrolebinding", OPERATOR) is None
    for name in (OPERATOR, f"{OPERATOR}-edit", f"{OPERATOR}-view"):
        assert cluster.get("clusterrole", name) is None, name
    assert cluster.get("role", OPERATOR, "-n", watched) is not None
    assert cluster.get("role", f"{OPERATOR}-lease", "-n", release_namespace) is not None
    assert may(cluster, release_namespace, "patch", "deployments", "-n", watched) == "yes"
    assert may(cluster, release_namespace, "update", "leases", "-n", release_namespace) == "yes"
    assert may(cluster, release_namespace, "list", "services", "--all-namespaces") == "no"
    assert may(cluster, release_namespace, "list", "workloadmappings.servicelink.dev") == "no"
    assert may(cluster, release_namespace, "list", "namespaces") == "no"
    env = chart_env(cluster, release_namespace)
    assert env["SERVICELINK_WORKLOAD_MAPPINGS"] == "false"

    cluster.apply(
        [
            service("auth", watched, 3001),
            deployment("gateway", watched, env_from="gateway-config"),
            servicelink("gateway", watched, "gateway-config", {"key": "AUTH_URL", "service": "auth"}),
        ]
    )
    kubeconfig = service_account_kubeconfig(cluster, release_namespace, OPERATOR, tmp_path / "kubeconfig")
    with running_operator(kubeconfig, tmp_path / "operator.log", **env) as process:
        wait_for(
            lambda: data(cluster, watched, "gateway-config") == {"AUTH_URL": "http://auth:3001"},
            timeout=30,
            what="the ConfigMap",
        )
        set_port(cluster, watched, "auth", 4001)
        wait_for(lambda: template_hash(cluster, watched, "gateway"), timeout=30, what="the gateway rolled")
        assert data(cluster, watched, "gateway-config") == {"AUTH_URL": "http://auth:4001"}
        log = process.log()
    refused = [line for line in log.splitlines() if REFUSALS.search(line)]
    assert refused == [], "\n".join(refused)
