"""Rollout timing: a cooldown, and windows. A rollout held back by either waits, then rolls once.

spec.cooldownSeconds is checked across a SIGKILL; spec.rolloutWindows with a window that opens at the
start of each minute for 5 s, in UTC, so that test waits at most a minute. Rollouts are counted by the
Deployment's ``metadata.generation``; the time is the real one.
"""

from __future__ import annotations

import datetime
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
WINDOW = {"schedule": "* * * * *", "duration": "5s"}


def gateway(cluster: Cluster, namespace: str, **spec: object) -> int:
    """A Deployment reading gateway-config, which a ServiceLink with ``spec`` fills; return its generation."""
    link = {"key": "AUTH_SERVICE_URL", "service": "auth-service"}
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            deployment("gateway", namespace, env_from="gateway-config"),
            servicelink("gateway", namespace, "gateway-config", link, **spec),
        ]
    )
    wait_condition(cluster, namespace, "gateway", "Ready", "True", "Reconciled")
    return generation(cluster, namespace, "gateway")


def test_a_cooldown_holds_the_next_rollouts_then_rolls_once_even_across_a_sigkill(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, tmp_path: Path
) -> None:
    before = gateway(cluster, namespace, cooldownSeconds=COOLDOWN)

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


def test_a_change_outside_the_windows_waits_for_the_next_and_rolls_once(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    before = gateway(cluster, namespace, rolloutWindows=[WINDOW])
    wait_for(lambda: 8 <= datetime.datetime.now(datetime.UTC).second < 50, timeout=20, what="the window closed")

    set_port(cluster, namespace, "auth-service", 4001)
    held = wait_condition(cluster, namespace, "gateway", "RolledOut", "False", "OutsideWindow")
    assert f"Deployment {namespace}/gateway rolls at " in held["message"]
    (entry,) = sl(cluster, namespace, "gateway")["status"]["deferred"]
    assert (entry["key"], entry["reason"]) == ("AUTH_SERVICE_URL", "OutsideWindow")
    due = parse_time(entry["due"])
    assert due is not None
    assert due.second == 0  # the next minute's start
    assert generation(cluster, namespace, "gateway") == before

    wait_for(lambda: generation(cluster, namespace, "gateway") == before + 1, timeout=90, what="the window's rollout")
    assert time.time() >= due.timestamp()
    assert template_hash(cluster, namespace, "gateway") == render_hash({"AUTH_SERVICE_URL": "http://auth-service:4001"})
    wait_condition(cluster, namespace, "gateway", "RolledOut", "True", "WorkloadsUpdated")
    assert "deferred" not in sl(cluster, namespace, "gateway")["status"]
    wait_until_acted(cluster, namespace, "gateway", "auth-service")
    assert generation(cluster, namespace, "gateway") == before + 1
