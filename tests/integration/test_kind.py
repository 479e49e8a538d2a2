"""On a machine with kind and a Docker engine, the operator also runs against a pytest-kind cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from servicelink.testing.fixtures import CRD_FILE, start_operator_process

pytestmark = pytest.mark.kind


def docker_engine_runs() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def test_gateway_on_a_kind_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    have_kind, have_engine = shutil.which("kind") is not None, docker_engine_runs()
    if not (have_kind and have_engine):
        pytest.skip(
            f"needs kind ({'found' if have_kind else 'missing'}) and a running Docker engine "
            f"({'running' if have_engine else 'none'})"
        )
    kind: Any = request.getfixturevalue("kind_cluster")
    kind.kubectl("apply", "-f", str(CRD_FILE))
    kind.kubectl("wait", "--for=condition=Established", "crd/servicelinks.servicelink.dev")
    kind.kubectl("create", "namespace", "kind-gallery")
    operator = start_operator_process(Path(kind.kubeconfig_path), tmp_path / "operator.log")
    try:
        kind.kubectl("create", "service", "clusterip", "auth-service", "--tcp=3001:3001", "-n", "kind-gallery")
        link = {
            "apiVersion": "servicelink.dev/v1alpha1",
            "kind": "ServiceLink",
            "metadata": {"name": "gateway", "namespace": "kind-gallery"},
            "spec": {"configMapName": "gateway-config", "links": [{"key": "A", "service": "auth-service"}]},
        }
        (tmp_path / "sl.json").write_text(json.dumps(link))
        kind.kubectl("apply", "-f", str(tmp_path / "sl.json"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = subprocess.run(
                [
                    str(kind.kubectl_path),
                    "--kubeconfig",
                    str(kind.kubeconfig_path),
                    "get",
                    "configmap",
                    "gateway-config",
                    "-n",
                    "kind-gallery",
                    "-o",
                    "json",
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode == 0 and json.loads(done.stdout).get("data") == {"A": "http://auth-service:3001"}:
                return
            time.sleep(0.5)
        raise AssertionError(f"no ConfigMap on the kind cluster:\n{operator.log()}")
    finally:
        operator.stop()
