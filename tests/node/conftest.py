"""Tests on a real one-node cluster (kubelet, containerd, kube-proxy, CoreDNS): the install as users do it.

They need root on Linux and the Debian packages ``hack/test.sh`` installs. In CI a
machine that cannot run a node fails with the reason; elsewhere the tests skip with it.

For the whole session a capture on the host counts every frame the node sends
over its link to anywhere but the link's subnet, and every packet of the
cluster's ranges on the host's other interfaces; the host's firewall, routes,
links and sysctls are read before ``up`` and compared after ``down``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicelink.testing.assets import default_cache_root
from servicelink.testing.capture import Capture
from servicelink.testing.node import (
    CLUSTER_RANGES,
    HOST_LINK,
    LINK_SUBNET,
    Node,
    down,
    host_network_state,
    leftovers,
    missing_prerequisites,
    up,
)

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.timeout(900))  # the first test also builds what the node needs


_FIGURES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep the figures the node tests print ("[servicelink] ..."), which pytest captures when they pass."""
    if HERE in Path(report.fspath).resolve().parents:
        text = report.capstdout + report.capstderr
        # Each phase's report repeats what the phases before it printed.
        _FIGURES.extend(line for line in text.splitlines() if line.startswith("[servicelink]") and line not in _FIGURES)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show them at the end of the run, so a CI log carries the recovery and capture figures."""
    if _FIGURES:
        terminalreporter.section("figures from the node")
        for line in _FIGURES:
            terminalreporter.write_line(line)


def _saved_images() -> list[Path]:
    """The operator's and the gallery's images as hack/image.sh saved them (built here when missing)."""
    folder = default_cache_root() / "image" / "saved"
    images = [folder / "servicelink.tar", folder / "gallery-app.tar"]
    if not all(image.exists() for image in images):
        subprocess.run(["bash", str(REPO / "hack" / "image.sh"), "--save", str(folder)], check=True)
    return images


@pytest.fixture(scope="session")
def host_before() -> dict[str, str]:
    """The host's firewall, routes, links and sysctls before the node first starts."""
    return host_network_state()


@pytest.fixture(scope="session")
def capture() -> Iterator[Capture]:
    """Every frame the node sends towards the host, or off it, for the whole session."""
    if os.geteuid() != 0:
        pytest.skip("capturing frames needs root")
    with Capture(link=HOST_LINK, link_subnet=LINK_SUBNET, watched=CLUSTER_RANGES) as running:
        yield running


@pytest.fixture(scope="session")
def node(host_before: dict[str, str], capture: Capture) -> Iterator[Node]:
    """The one node of this machine, with both images imported; torn down, and checked clean, at the end."""
    missing = missing_prerequisites()
    if missing:
        reason = "a node cannot run here: it needs " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    started = up(images=_saved_images())
    print(f"\n[servicelink] node up; export KUBECONFIG={started.kubeconfig}", file=sys.stderr)
    try:
        yield started
    finally:
        down()
        left = leftovers()
        assert not left, f"down left behind: {left}"
        assert host_network_state() == host_before, "down left the host's network changed"
        print(f"\n[servicelink] capture, up to down: {capture.summary()}", file=sys.stderr)
        assert not capture.snapshot()[1], "the node sent packets it must not"
