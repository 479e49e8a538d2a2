"""The harness itself: a real etcd, kube-apiserver and kube-controller-manager, driven by the real kubectl."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from servicelink.testing.fixtures import Cluster, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_objects_round_trip_through_the_api_server(cluster: Cluster, namespace: str) -> None:
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "auth-service", "namespace": namespace},
            "spec": {"selector": {"app": "auth-service"}, "ports": [{"port": 3001, "targetPort": 3001}]},
        }
    )
    service = cluster.get("service", "auth-service", "-n", namespace)
    assert service["spec"]["ports"][0]["port"] == 3001
    assert service["spec"]["clusterIP"]  # allocated by the real apiserver


def test_controller_manager_creates_a_replicaset(cluster: Cluster, namespace: str) -> None:
    if cluster.plane is None:
        pytest.skip("an external cluster always runs its own controllers")
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        }
    )
    replicasets = wait_for(
        lambda: cluster.get("replicasets", "-n", namespace, "-l", "app=web")["items"],
        what="a ReplicaSet of deployment web",
    )
    assert replicasets[0]["metadata"]["ownerReferences"][0]["name"] == "web"


def test_garbage_collector_deletes_owned_configmap(cluster: Cluster, namespace: str) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": namespace}})
    owner = cluster.get("configmap", "owner", "-n", namespace)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "owned",
                "namespace": namespace,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
                ],
            },
            "data": {"A": "1"},
        }
    )
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(lambda: cluster.get("configmap", "owned", "-n", namespace) is None, what="owned ConfigMap collected")


def test_namespace_deletion_completes(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "t-deleted")
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "t-deleted"}})
    cluster.kubectl("delete", "namespace", "t-deleted", "--timeout=60s")
    assert cluster.get("namespace", "t-deleted") is None


def test_kubectl_reports_the_pinned_release(cluster: Cluster) -> None:
    from servicelink.testing.assets import KUBERNETES_VERSION

    version = cluster.kubectl("version", "-o", "json").stdout
    assert f'"gitVersion": "{KUBERNETES_VERSION}"' in version


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def test_a_failing_session_leaves_no_process_behind(tmp_path: Path) -> None:
    if os.environ.get("SERVICELINK_TEST_KUBECONFIG"):
        pytest.skip("only the local control plane starts processes")
    workdir_file = tmp_path / "workdir.txt"
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["servicelink.testing.fixtures"]\n')
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(f"""
        def test_fails(cluster):
            open({str(workdir_file)!r}, "w").write(str(cluster.plane.workdir))
            assert False, "this inner session fails on purpose"
    """)
    )
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
    )
    assert inner.returncode == 1, inner.stdout + inner.stderr
    workdir = workdir_file.read_text()
    assert workdir
    assert _processes_mentioning(workdir) == []
