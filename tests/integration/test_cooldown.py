"""spec.cooldownSeconds: a consumer rolled less than its cooldown ago waits, then rolls once, across a SIGKILL.

Rollouts are counted by the Deployment's ``metadata.generation``; the time is the real one.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from objects import (
    deployment,
    generation,
    service,
    servicelink,
    set_port,
    sl,
    template_hash,
    wait_condition,
    wait_until_acted,
)

from servicelink.render import render_hash
from servicelink.rollout import parse_time
from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for

COOLDOWN = 8


def test_a_cooldown_holds_the_next_rollouts_then_rolls_once_even_across_a_sigkill(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, tmp_path: Path
) -> None:
    link = {"key": "AUTH_SERVICE_URL", "service": "auth-service"}
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            deployment("gateway", namespace, env_from="gateway-config"),
            servicelink("gateway", namespace, "gateway-config", link, cooldownSeconds=COOLDOWN),
        ]
    )
    wait_condition(cluster, namespace, "gateway", "Ready", "True", "Reconciled")
    before = generation(cluster, namespace, "gateway")

    set_port(cluster, namespace, "auth-service", 4001)  # never rolled by servicelink: rolls at once
    wait_for(lambda: generation(cluster, namespace, "gateway") == before + 1, what="the first rollout")
    rolled_at = cluster.get("deployment", "gateway", "-n", namespace)["metadata"]["annotations"][
        "servicelink.dev/rolled-at"
    ]

    set_port(cluster, namespace, "auth-service", 4002)  # within the cooldown: held
    held = wait_condition(cluster, namespace, "gateway", "RolledOut", "False", "CoolingDown")
    assert f"Deployment {namespace}/gateway rolls at " in held["message"]
    (entry,) = sl(cluster, namespace, "gateway")["status"]["deferred"]
    assert (entry["key"], entry["reason"]) == ("AUTH_SERVICE_URL", "CoolingDown")
    due = parse_time(entry["due"])
    last = parse_time(rolled_at)
    assert due is not None
    assert last is not None
    assert (due - last).total_seconds() == COOLDOWN
    set_port(cluster, namespace, "auth-service", 4003)  # another change while held: still one rollout
    wait_for(
        lambda: sl(cluster, namespace, "gateway")["status"]["values"]["AUTH_SERVICE_URL"].endswith(":4003"),
        what="the third value written at once",
    )
    assert generation(cluster, namespace, "gateway") == before + 1
    operator_process.stop(signal.SIGKILL)  # what is owed is in the status and on the Deployment, not in memory

    again = start_operator_process(cluster.kubeconfig, tmp_path / "again.log")
    try:
        wait_for(
            lambda: generation(cluster, namespace, "gateway") == before + 2,
            timeout=COOLDOWN + 30,
            what="the held rollout once the cooldown passed",
        )
        assert time.time() >= due.timestamp()
        final = render_hash({"AUTH_SERVICE_URL": "http://auth-service:4003"})
        assert template_hash(cluster, namespace, "gateway") == final
        wait_condition(cluster, namespace, "gateway", "RolledOut", "True", "WorkloadsUpdated")
        assert "deferred" not in sl(cluster, namespace, "gateway")["status"]
        wait_until_acted(cluster, namespace, "gateway", "auth-service")
        assert generation(cluster, namespace, "gateway") == before + 2
    finally:
        again.stop()
