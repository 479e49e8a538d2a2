"""docs/getting-started/first-servicelink.md, run: its bash blocks in order, each shown output checked.

The page is read as a user reads it: every fenced ```bash block runs in bash, in
order, against the session's cluster with the operator running; the ```text block
right after one is what the page says it prints, matched as tests/transcripts.py
matches a transcript.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from servicelink.render import render_hash
from servicelink.testing.fixtures import Cluster, OperatorProcess
from transcripts import shows

pytestmark = pytest.mark.controller_manager
REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "getting-started" / "first-servicelink.md"
# The install and the removal of the operator: the fixtures install the CRDs and run the operator instead.
NOT_RUN = "<!-- first-servicelink: not run -->"
FENCE = re.compile(rf"^(?P<marker>{re.escape(NOT_RUN)}\n)?```(?P<lang>\w+)\n(?P<body>.*?)^```$", re.M | re.S)
NAMESPACE = "shop"
# The control plane has no node, so no pod ever starts there; a Deployment of 0 replicas rolls out
# as soon as kube-controller-manager sees it.
REPLICAS, NODELESS_REPLICAS = "replicas: 1", "replicas: 0"


@dataclass(frozen=True)
class Step:
    """One ```bash block of the page, and the ```text block after it, if any."""

    commands: str
    shown: str | None
    run: bool


def page_steps(text: str) -> list[Step]:
    """The page's bash blocks in order, each with the text block that follows it (None when another comes first)."""
    steps: list[Step] = []
    previous: str | None = None
    for fence in FENCE.finditer(text):
        lang, body = fence["lang"], fence["body"]
        if lang == "bash":
            steps.append(Step(commands=body, shown=None, run=fence["marker"] is None))
        elif lang == "text" and previous == "bash":
            steps[-1] = Step(commands=steps[-1].commands, shown=body, run=steps[-1].run)
        previous = lang
    return steps


def test_the_page_runs_and_shows_what_it_prints(cluster: Cluster, operator_process: OperatorProcess) -> None:
    text = PAGE.read_text()
    assert text.count(REPLICAS) == 1, f"the page's Deployment is expected to say {REPLICAS!r} once"
    if cluster.plane is not None:
        text = text.replace(REPLICAS, NODELESS_REPLICAS)
    steps = page_steps(text)
    assert [step.run for step in steps].count(False) == 2, "the install and the removal of the operator"
    assert sum(step.shown is not None for step in steps) >= 5
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{Path(cluster.kubectl_path).parent}{os.pathsep}{os.environ['PATH']}",
    }
    try:
        for step in steps:
            if not step.run:
                continue
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", step.commands],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, f"{step.commands}\nfailed ({done.returncode}):\n{done.stdout}"
            if step.shown is not None:
                assert shows(step.shown, done.stdout), f"{step.commands}\nprinted:\n{done.stdout}\nnot:\n{step.shown}"
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found", check=False)
    # The hash the page shows is the one of the values the Deployment reads.
    assert f'"servicelink.dev/config-hash":"{render_hash({"ORDERS_URL": "http://orders:9090"})}"' in text
