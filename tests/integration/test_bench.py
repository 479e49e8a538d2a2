"""The benchmark runs end to end at a tiny size; its counts (not its timings) are checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bench`` from the repository root; fail with its output unless it succeeds."""
    done = subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


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
    done = _bench("--quick", *tiny, "--output", str(output))
    assert "propagation to pod template" in done.stdout
    figures = json.loads(output.read_text())
    assert figures["propagation_missed"] == {"configmap": 0, "pod_template": 0}
    assert figures["writes_per_change"]["configmaps"] == 1
    assert figures["writes_per_change"]["deployments"] == 1
    assert figures["writes_per_change"]["servicelinks"] <= 1
    assert figures["burst"]["updated"] == figures["burst"]["consumers"] == 2
    assert figures["burst"]["rollouts_per_consumer_max"] == 1
    assert figures["idle_writes"] == {"configmaps": 0, "deployments": 0, "servicelinks": 0, "events": 0}


def test_compare_with_reloader_runs_and_counts(tmp_path: Path) -> None:
    """``--compare reloader``, tiny: every change arrives; bursts, storms and restarts roll what they should."""
    if os.environ.get("SERVICELINK_TEST_KUBECONFIG"):
        pytest.skip("the comparison starts its own local control plane")
    # Where bench.compare.find_reloader looks (bench is not importable from here).
    cache = Path(os.environ.get("SERVICELINK_CACHE", Path.home() / ".cache" / "servicelink"))
    anchors = REPO.parent / "shared" / "anchors"
    if not (cache / "anchors" / "reloader").exists() and not (anchors / "reloader-v1.4.21-linux-amd64.gz").exists():
        pytest.skip(f"no Reloader binary: neither {cache}/anchors/reloader nor {anchors}/ exists")
    output = tmp_path / "compare.json"
    tiny = ["--services", "20", "--deployments", "4", "--namespaces", "2", "--changes", "3", "--idle-seconds", "3"]
    tiny += ["--restart-settle-seconds", "4", "--storm-changes", "40", "--storm-seconds", "2", "--output", str(output)]
    done = _bench("--compare", "reloader", "--quick", *tiny)
    assert "to pod template" in done.stdout
    sides = json.loads(output.read_text())["sides"]
    assert list(sides) == ["servicelink", "servicelink-0s", "reloader"]
    for name, side in sides.items():
        assert side["missed"] == {"configmap": 0, "pod_template": 0}, name
        assert side["requests_per_change"]["PATCH deployments"] == 1, name
        assert side["burst_100"]["rolled"] == side["burst_100"]["consumers"] == 4, name
        assert side["restart"]["rollouts_with_nothing_changed"] == 0, name
        assert side["storm"]["reached"] == side["storm"]["consumers"] == 4, name
    for name in ("servicelink", "servicelink-0s"):
        assert sides[name]["requests_per_change"]["PATCH configmaps"] == 1
        assert sides[name]["idle_write_requests"] == {}
        assert sides[name]["restart"]["changes_at_start_reached"] == 2
    # At the default window a burst rolls each consumer once.
    assert sides["servicelink"]["burst_5"]["rollouts_per_consumer_max"] == 1
    assert sides["servicelink"]["burst_100"]["rollouts_per_consumer_max"] == 1
    assert sides["reloader"]["requests_per_change"]["LIST deployments"] == 1
