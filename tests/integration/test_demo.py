"""The README's first command, end to end on its own local control plane: it prints what demo.md shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from transcripts import assert_shows, transcript

PAGE = Path(__file__).resolve().parents[2] / "docs" / "getting-started" / "demo.md"


def test_demo_shows_the_new_url_and_the_new_replicaset() -> None:
    if os.environ.get("SERVICELINK_TEST_KUBECONFIG"):
        pytest.skip("the demo's default run starts its own local control plane")
    demo = subprocess.run(
        [str(Path(sys.executable).with_name("servicelink")), "demo"], capture_output=True, text=True, timeout=240
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "gateway-service   gateway-service-config   True    2/2" in out
    assert "AUTH_SERVICE_URL=http://auth-service:3001" in out
    assert "MONGODB_HOST=mongodb" in out
    assert "REDIS_URL=redis://redis:6379" in out
    assert "  http://auth-service:4001" in out
    replicasets = out.split("kubectl get replicasets", 1)[1].split("$ kubectl get events", 1)[0]
    revisions = [line.split()[1] for line in replicasets.splitlines()[2:] if line.strip()]
    assert sorted(revisions) == ["1", "2"]
    assert "rolled Deployment gallery/gateway-service" in out
    assert "stopped the operator and the control plane" in out
    assert_shows(transcript(PAGE, "What the demo prints (a real run"), out, "servicelink demo")
