"""The CHANGELOG's upgrade from 0.1.0, on the API server: 0.1.0's CRD and operator from git, then today's.

The old operator's code is taken from the commit tagged v0.1.0 and runs with
today's dependencies; the upgrade applies today's CRDs and starts today's
operator over the objects the old one wrote. Nothing may be rewritten or rolled.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

from objects import data, deployment, service, servicelink, set_port, template_hash, wait_condition, wait_until_acted

from servicelink.testing.fixtures import (
    CRD_FILE,
    Cluster,
    operator_env,
    start_operator_process,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
V0_1_0 = "c1776c24c5f101f7f09afdbae3c3378d062f3981"  # the last commit of 0.1.0, tagged v0.1.0


def release(commit: str, into: Path) -> Path:
    """Extract ``operator/`` and ``crds/`` of ``commit`` from this repository's history into ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "operator", "crds"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def generations(cluster: Cluster, namespace: str) -> dict[str, int]:
    items = cluster.get("deployments", "-n", namespace)["items"]
    return {d["metadata"]["name"]: int(d["metadata"]["generation"]) for d in items}


def test_upgrading_from_0_1_0_rewrites_and_rolls_nothing(
    cluster: Cluster, crd: Path, namespace: str, kubeconfig_env: Path, tmp_path: Path
) -> None:
    old = release(V0_1_0, tmp_path / "v0.1.0")
    cluster.kubectl("apply", "-f", str(old / "crds" / "servicelink.yaml"))  # 0.1.0 had one CRD
    try:
        reader = deployment("reads-key", namespace, key_refs={"AUTH": ("gw-config", "AUTH_URL")})
        cluster.apply(
            [
                service("auth", namespace, 3001),
                servicelink("gw", namespace, "gw-config", {"key": "AUTH_URL", "service": "auth"}),
                deployment("reads-all", namespace, env_from="gw-config"),
                reader,
            ]
        )
        env = operator_env(kubeconfig_env, PYTHONPATH=str(old / "operator"))
        command = [sys.executable, "-m", "servicelink.cli", "run"]
        with (tmp_path / "old.log").open("ab") as log:
            before_upgrade = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: data(cluster, namespace, "gw-config") == {"AUTH_URL": "http://auth:3001"}, timeout=60)
            # A real change, rolled by 0.1.0: both readers carry its hash.
            set_port(cluster, namespace, "auth", 4001)
            wait_for(
                lambda: (
                    template_hash(cluster, namespace, "reads-all") and template_hash(cluster, namespace, "reads-key")
                ),
                timeout=60,
                what="0.1.0 rolling both readers",
            )
            wait_condition(cluster, namespace, "gw", "Synced", "True")
        finally:
            before_upgrade.terminate()
            before_upgrade.wait(30)
        rolled = generations(cluster, namespace)
        written = cluster.get("configmap", "gw-config", "-n", namespace)["metadata"]["resourceVersion"]

        # The upgrade, as the CHANGELOG says: today's CRDs, then today's operator.
        cluster.kubectl("apply", "-f", str(CRD_FILE))
        after_upgrade = start_operator_process(kubeconfig_env, tmp_path / "new.log")
        try:
            wait_condition(cluster, namespace, "gw", "Synced", "True", "ConfigMapUpToDate")
            wait_until_acted(cluster, namespace, "gw", "auth")  # a reconcile of today's operator
            assert generations(cluster, namespace) == rolled, "the upgrade rolled a consumer"
            after = cluster.get("configmap", "gw-config", "-n", namespace)["metadata"]["resourceVersion"]
            assert after == written, "the upgrade rewrote the ConfigMap"
            # And the next real change rolls each reader once, as before.
            set_port(cluster, namespace, "auth", 5001)
            wait_for(
                lambda: generations(cluster, namespace) == {name: g + 1 for name, g in rolled.items()},
                timeout=60,
                what="one rollout of each reader after the upgrade",
            )
            wait_until_acted(cluster, namespace, "gw", "auth")  # a second rollout would show by now
            assert generations(cluster, namespace) == {name: g + 1 for name, g in rolled.items()}
        finally:
            after_upgrade.stop()
    finally:
        cluster.kubectl("apply", "-f", str(CRD_FILE))
