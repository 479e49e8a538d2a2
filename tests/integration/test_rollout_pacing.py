"""--max-rollouts-in-flight: a cluster-wide cap on rollouts in flight (real kube-controller-manager).

The control plane has no node, so a pod never becomes available: a consumer of one replica with
``progressDeadlineSeconds: 2`` rolls until its deadline passes, then stalls, which frees its slot. One
``kubectl get -w`` of every Deployment of the namespace sees each write in the order the API server made
them, so the count of rollouts in flight is known at every moment, not only when polled.

The reliability scenario (many consumers, a SIGKILL while they wait) runs reduced counts by default;
``SERVICELINK_FULL=1`` runs the full ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from objects import condition, deployment, generations, service, servicelink, set_port, sl, wait_condition

from servicelink.testing.fixtures import Cluster, running_operator, start_operator_process, wait_for

pytestmark = pytest.mark.controller_manager

HASH = "servicelink.dev/config-hash"
WAITING = "servicelink_rollouts_waiting"
CAP = 2
CONSUMERS = [f"consumer-{i:03d}" for i in range(10)]
FULL = os.environ.get("SERVICELINK_FULL") == "1"


def in_flight(body: dict[str, Any]) -> bool:
    """Whether servicelink rolled this Deployment and its rollout is still going: not complete, not stalled.

    Rolled: its pod template carries the config hash. Going: its controller has not seen the new
    generation yet, or has and reports neither all replicas updated and available nor a passed deadline.
    """
    if HASH not in (body["spec"]["template"]["metadata"].get("annotations") or {}):
        return False
    status = body.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(body["metadata"]["generation"]):
        return True
    progressing = next((c for c in status.get("conditions") or () if c["type"] == "Progressing"), {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return False
    wanted = int(body["spec"].get("replicas", 1))
    return not (status.get("updatedReplicas", 0) >= wanted and status.get("availableReplicas", 0) >= wanted)


class InFlight:
    """The Deployments of a namespace in flight after each write of any of them, from one watch."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.now: dict[str, bool] = {}
        self.hashes: dict[str, str | None] = {}
        self.rolled: dict[str, int] = {}  # by Deployment, how often its config hash changed
        self.most = 0
        self.writes = 0
        command = [
            *(cluster.kubectl_path, "--kubeconfig", str(cluster.kubeconfig), "get", "deployments"),
            *("-n", namespace, "-w", "-o", "json"),
        ]
        self._popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._popen.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for line in self._popen.stdout:
            buffer += line
            with contextlib.suppress(json.JSONDecodeError):
                body, end = decoder.raw_decode(buffer.lstrip())
                buffer = buffer.lstrip()[end:]
                name = body["metadata"]["name"]
                self.now[name] = in_flight(body)
                value = (body["spec"]["template"]["metadata"].get("annotations") or {}).get(HASH)
                if name in self.hashes and value != self.hashes[name]:
                    self.rolled[name] = self.rolled.get(name, 0) + 1
                self.hashes[name] = value
                self.writes += 1
                self.most = max(self.most, sum(self.now.values()))

    def stop(self) -> None:
        self._popen.terminate()
        self._popen.wait(10)
        self._thread.join(10)


@contextlib.contextmanager
def watching(cluster: Cluster, namespace: str, count: int = len(CONSUMERS)) -> Iterator[InFlight]:
    found = InFlight(cluster, namespace)
    try:
        wait_for(lambda: len(found.now) == count, timeout=60, what="every consumer in the watch")
        yield found
    finally:
        found.stop()


def metric(port: int, name: str) -> float | None:
    """One sample of an unlabelled metric from the operator's /metrics; None when it is not there."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    return None


def every_generation(cluster: Cluster, namespace: str) -> dict[str, int]:
    """The ``metadata.generation`` of every Deployment of the namespace, from one list."""
    listed = cluster.get("deployments", "-n", namespace)["items"]
    return {item["metadata"]["name"]: int(item["metadata"]["generation"]) for item in listed}


def consumers_of(namespace: str, count: int) -> list[dict[str, Any]]:
    """``count`` Deployments of one replica reading gateway-config, each stalling 2 s into a rollout."""
    bodies = []
    for i in range(count):
        consumer = deployment(f"consumer-{i:03d}", namespace, env_from="gateway-config", replicas=1)
        consumer["spec"]["progressDeadlineSeconds"] = 2
        bodies.append(consumer)
    return bodies


def test_a_cap_of_two_rolls_ten_consumers_two_at_a_time_each_once(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, crd: Path, tmp_path: Path
) -> None:
    consumers = consumers_of(namespace, len(CONSUMERS))
    link = {"key": "AUTH_SERVICE_URL", "service": "auth-service"}
    settings = {"SERVICELINK_MAX_ROLLOUTS_IN_FLIGHT": str(CAP), "SERVICELINK_NAMESPACES": namespace}
    with running_operator(cluster.kubeconfig, tmp_path / "operator.log", **settings) as process:
        cluster.apply([service("auth-service", namespace, 3001), *consumers])
        cluster.apply(servicelink("gateway", namespace, "gateway-config", link))
        wait_condition(cluster, namespace, "gateway", "Ready", "True", "Reconciled")  # never rolled: none to wait for
        before = generations(cluster, namespace, *CONSUMERS)

        with watching(cluster, namespace) as seen:
            set_port(cluster, namespace, "auth-service", 4001)
            held = wait_condition(cluster, namespace, "gateway", "RolledOut", "False", "WaitingForRolloutSlot")
            assert f"waits for a rollout slot (at most {CAP} in flight)" in held["message"]
            assert {d["reason"] for d in sl(cluster, namespace, "gateway")["status"]["deferred"]} == {
                "WaitingForRolloutSlot"
            }
            waiting = wait_for(
                lambda: (metric(process.metrics_port, "servicelink_rollouts_waiting") or 0) > 0 or None,
                what="workloads waiting for a slot in /metrics",
            )
            assert waiting
            wait_for(
                lambda: (
                    "deferred" not in sl(cluster, namespace, "gateway")["status"]
                    and generations(cluster, namespace, *CONSUMERS) == {n: g + 1 for n, g in before.items()}
                ),
                timeout=120,
                what="every consumer rolled",
            )
            wait_for(lambda: not any(seen.now.values()), timeout=30, what="the last rollouts to stall")
        print(f"[pacing] {len(CONSUMERS)} consumers, cap {CAP}: at most {seen.most} in flight, {seen.writes} writes")
        assert seen.most == CAP  # the cap is reached, never passed
        assert generations(cluster, namespace, *CONSUMERS) == {n: g + 1 for n, g in before.items()}
        assert condition(sl(cluster, namespace, "gateway"), "RolledOut")["reason"] == "RolloutStalled"
        wait_for(
            lambda: (
                metric(process.metrics_port, "servicelink_rollouts_in_flight") == 0
                and metric(process.metrics_port, "servicelink_rollouts_waiting") == 0
            ),
            what="no rollout in flight nor waiting in /metrics",
        )


@pytest.mark.timeout(1800 if FULL else 300)
def test_many_consumers_drain_through_the_cap_each_rolled_once_across_a_sigkill(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, crd: Path, tmp_path: Path
) -> None:
    count, cap = (500, 10) if FULL else (24, 4)
    bodies = consumers_of(namespace, count)
    link = {"key": "AUTH_SERVICE_URL", "service": "auth-service"}
    settings = {"SERVICELINK_MAX_ROLLOUTS_IN_FLIGHT": str(cap), "SERVICELINK_NAMESPACES": namespace}
    cluster.apply([service("auth-service", namespace, 3001), *bodies])
    process = start_operator_process(cluster.kubeconfig, tmp_path / "first.log", **settings)
    again = None
    try:
        cluster.apply(servicelink("gateway", namespace, "gateway-config", link))
        wait_condition(cluster, namespace, "gateway", "Ready", "True", "Reconciled", timeout=120)
        before = every_generation(cluster, namespace)
        with watching(cluster, namespace, count) as seen:
            started = time.monotonic()
            drain: list[tuple[float, int, float | None]] = []  # (seconds after the change, rolled, waiting)

            def sample(port: int) -> int:
                rolled = sum(seen.rolled.values())
                drain.append((time.monotonic() - started, rolled, metric(port, WAITING)))
                return rolled

            set_port(cluster, namespace, "auth-service", 4001)
            wait_for(
                lambda: sample(process.metrics_port) >= 0 and (drain[-1][2] or 0) >= count - cap,
                what="every consumer beyond the cap waiting",
            )
            wait_for(
                lambda: sample(process.metrics_port) >= count // 2,
                timeout=1500 if FULL else 240,
                interval=1.0,
                what="half the consumers rolled",
            )
            process.stop(signal.SIGKILL)  # what is owed is in status.deferred, what is in flight on the Deployments
            at_kill = sum(seen.rolled.values())
            again = start_operator_process(cluster.kubeconfig, tmp_path / "again.log", **settings)
            wait_for(
                lambda: (
                    sample(again.metrics_port) == count
                    and every_generation(cluster, namespace) == {n: g + 1 for n, g in before.items()}
                ),
                timeout=1500 if FULL else 240,
                interval=1.0,
                what="every consumer rolled",
            )
            took = time.monotonic() - started
            wait_for(lambda: not any(seen.now.values()), timeout=60, what="the last rollouts to stall")
        every = max(len(drain) // 15, 1)
        series = ", ".join(f"{t:.0f}s {r}/{w:g}" for t, r, w in drain[::every] + drain[-1:] if w is not None)
        print(
            f"[pacing] {count} consumers, cap {cap}: all rolled {took:.0f}s after the change, at most {seen.most}"
            f" in flight, {at_kill} rolled at the SIGKILL; rolled/waiting: {series}",
            file=sys.stderr,
        )
        assert seen.most <= cap
        assert every_generation(cluster, namespace) == {n: g + 1 for n, g in before.items()}
        assert max(seen.rolled.values()) == 1  # no consumer's template changed twice
        wait_for(lambda: "deferred" not in sl(cluster, namespace, "gateway")["status"], what="nothing owed")
    finally:
        process.stop()
        if again is not None:
            again.stop()
            print(f"[servicelink] operator log:\n{again.log()[-5000:]}", file=sys.stderr)
