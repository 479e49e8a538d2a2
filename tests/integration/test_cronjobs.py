"""CronJobs: a changed value annotates the pod template of the CronJobs reading it, and nothing else is written.

The test control plane runs no CronJob controller, so only servicelink writes these
CronJobs: any change of their resourceVersion is a patch of ours.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from objects import condition, cronjob, events, service, servicelink, wait_condition, wait_until_acted

from servicelink.render import render_hash
from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for

HASH = "servicelink.dev/config-hash"
CONFIGMAP = "gateway-service-config"
LINKS = (
    {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
    {"key": "APP_SERVICE_URL", "service": "app-service"},
)
CRONJOBS = ("auth-report", "app-report", "unrelated")
RESYNC = 3  # seconds: the test operator's resync


def job_template_hash(cluster: Cluster, namespace: str, name: str) -> str | None:
    """The config hash on a CronJob's pod template, the one its Jobs are made from."""
    template = cluster.get("cronjob", name, "-n", namespace)["spec"]["jobTemplate"]["spec"]["template"]
    value: str | None = (template["metadata"].get("annotations") or {}).get(HASH)
    return value


def versions(cluster: Cluster, namespace: str) -> dict[str, tuple[str, int]]:
    """Each CronJob's (resourceVersion, generation): both move on any write."""
    found = {}
    for name in CRONJOBS:
        metadata = cluster.get("cronjob", name, "-n", namespace)["metadata"]
        found[name] = (metadata["resourceVersion"], metadata["generation"])
    return found


def acted(cluster: Cluster, namespace: str) -> None:
    """Wait for a reconcile of the ServiceLink after everything done so far (objects.wait_until_acted)."""
    wait_until_acted(cluster, namespace, "gateway-service", "auth-service")


def reporting(cluster: Cluster, namespace: str) -> dict[str, tuple[str, int]]:
    """Apply the Services, three CronJobs and the ServiceLink; wait until it is Ready; return the CronJobs' versions.

    ``auth-report`` reads AUTH_SERVICE_URL, ``app-report`` APP_SERVICE_URL (both of the
    ServiceLink's ConfigMap), ``unrelated`` another ConfigMap.
    """
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            service("app-service", namespace, 3002),
            cronjob("auth-report", namespace, key_refs={"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}),
            cronjob("app-report", namespace, key_refs={"APP_URL": (CONFIGMAP, "APP_SERVICE_URL")}),
            cronjob("unrelated", namespace, env_from="some-other-config"),
            servicelink("gateway-service", namespace, CONFIGMAP, *LINKS),
        ]
    )
    wait_condition(cluster, namespace, "gateway-service", "Ready", "True")
    return versions(cluster, namespace)


def test_a_port_change_annotates_the_job_template_of_the_cronjobs_reading_it_and_no_other(
    cluster: Cluster, namespace: str, operator: Any
) -> None:
    before = reporting(cluster, namespace)
    # Creating the ConfigMap patched nothing: Jobs start with it. A later reconcile patches nothing either.
    acted(cluster, namespace)
    assert versions(cluster, namespace) == before
    assert all(job_template_hash(cluster, namespace, name) is None for name in CRONJOBS)

    cluster.apply(service("auth-service", namespace, 4001))
    expected = render_hash({"AUTH_SERVICE_URL": "http://auth-service:4001"})  # only the key it reads
    got = wait_for(lambda: job_template_hash(cluster, namespace, "auth-report"), what="auth-report's template patched")
    assert got == expected
    body = cluster.get("cronjob", "auth-report", "-n", namespace)
    # The annotation is all that changed: the schedule and the rest of the Job template are the user's.
    assert body["spec"]["schedule"] == "0 0 1 1 *"
    assert body["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"] == "AUTH_URL"
    # Not rolled: nothing to wait for, so RolledOut is True at once and the status lists it.
    rolled = wait_condition(cluster, namespace, "gateway-service", "RolledOut", "True")
    assert rolled["reason"] == "WorkloadsUpdated"
    status = cluster.get("sl", "gateway-service", "-n", namespace)["status"]
    assert status["rolledOut"] == [{"kind": "CronJob", "name": "auth-report", "hash": expected}]
    assert condition(cluster.get("sl", "gateway-service", "-n", namespace), "Ready")["status"] == "True"
    (changed,) = [e for e in events(cluster, namespace, "ValueChanged") if "auth-service:4001" in e["message"]]
    assert changed["message"].endswith(f"rolled CronJob {namespace}/auth-report (its next Jobs)")

    # A Job started from it now runs the current values: it is made from the patched template.
    cluster.kubectl("create", "job", "auth-report-manual", "--from=cronjob/auth-report", "-n", namespace)
    job = cluster.get("job", "auth-report-manual", "-n", namespace)
    assert job["spec"]["template"]["metadata"]["annotations"][HASH] == expected

    # Key-level precision: the CronJob reading only APP_SERVICE_URL, and the one reading another ConfigMap,
    # were not written; nor is auth-report written again by the reconciles that follow.
    acted(cluster, namespace)
    after = versions(cluster, namespace)
    assert after["app-report"] == before["app-report"]
    assert after["unrelated"] == before["unrelated"]
    assert after["auth-report"][1] == before["auth-report"][1] + 1  # exactly one write of its spec
    time.sleep(RESYNC)  # a resync falls in here, then a reconcile after it
    acted(cluster, namespace)
    assert versions(cluster, namespace) == after


def test_an_operator_restart_patches_no_cronjob(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, tmp_path: Path
) -> None:
    reporting(cluster, namespace)
    cluster.apply(service("auth-service", namespace, 4001))
    wait_for(lambda: job_template_hash(cluster, namespace, "auth-report"), what="auth-report's template patched")
    wait_condition(cluster, namespace, "gateway-service", "RolledOut", "True")
    settled = versions(cluster, namespace)
    operator_process.stop()
    again = start_operator_process(cluster.kubeconfig, tmp_path / "again.log")
    try:
        acted(cluster, namespace)  # a reconcile of the new process
        assert versions(cluster, namespace) == settled
    finally:
        again.stop()


def test_a_leader_hand_over_patches_no_cronjob_and_the_new_leader_follows_the_next_change(
    cluster: Cluster, crd: Path, namespace: str, tmp_path: Path
) -> None:
    election = {"SERVICELINK_LEADER_ELECT": "1", "SERVICELINK_LEASE_NAMESPACE": namespace}
    replicas = [start_operator_process(cluster.kubeconfig, tmp_path / f"replica-{i}.log", **election) for i in (1, 2)]
    try:
        reporting(cluster, namespace)
        cluster.apply(service("auth-service", namespace, 4001))
        wait_for(lambda: job_template_hash(cluster, namespace, "auth-report"), what="auth-report's template patched")
        wait_condition(cluster, namespace, "gateway-service", "RolledOut", "True")
        settled = versions(cluster, namespace)

        holder = cluster.get("lease", "servicelink", "-n", namespace)["spec"]["holderIdentity"]
        leader, follower = replicas if holder.endswith(f"-{replicas[0].popen.pid}") else replicas[::-1]
        leader.stop(signal.SIGKILL)
        wait_for(lambda: "leading as" in follower.log(), timeout=40, interval=0.5, what="the follower leading")
        acted(cluster, namespace)  # a reconcile of the new leader
        assert versions(cluster, namespace) == settled

        cluster.apply(service("app-service", namespace, 4002))
        expected = render_hash({"APP_SERVICE_URL": "http://app-service:4002"})
        got = wait_for(lambda: job_template_hash(cluster, namespace, "app-report"), what="app-report patched")
        assert got == expected
        acted(cluster, namespace)
        after = versions(cluster, namespace)
        assert after["app-report"][1] == settled["app-report"][1] + 1, "patched once by the new leader"
        assert after["auth-report"] == settled["auth-report"]
        assert after["unrelated"] == settled["unrelated"]
    finally:
        for process in replicas:
            process.stop()
