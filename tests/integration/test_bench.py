"""The benchmark runs end to end at a tiny size; its counts (not its timings) are checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_bench_runs_and_counts_one_write_per_change(tmp_path: Path) -> None:
    if os.environ.get("SERVICELINK_TEST_KUBECONFIG"):
        pytest.skip("the benchmark's default run starts its own local control plane")
    output = tmp_path / "bench.json"
    tiny = [
        "--services",
        "20",
        "--servicelinks",
        "4",
        "--deployments",
        "4",
        "--namespaces",
        "2",
        "--changes",
        "4",
        "--burst",
        "10",
        "--idle-seconds",
        "3",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *tiny, "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "propagation to pod template" in done.stdout
    figures = json.loads(output.read_text())
    assert figures["propagation_missed"] == {"configmap": 0, "pod_template": 0}
    assert figures["writes_per_change"]["configmaps"] == 1
    assert figures["writes_per_change"]["deployments"] == 1
    assert figures["writes_per_change"]["servicelinks"] <= 1
    assert figures["burst"]["updated"] == figures["burst"]["consumers"] == 2
    assert figures["burst"]["rollouts_per_consumer_max"] == 1
    assert figures["idle_writes"] == {"configmaps": 0, "deployments": 0, "servicelinks": 0, "events": 0}
