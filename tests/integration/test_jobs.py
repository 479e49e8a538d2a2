"""Jobs: a running Job whose pods read a changed value is listed in the status with one Event, and never written.

The test control plane runs no Job controller: the test sets each Job's status
through the status subresource, and any other change of a Job's resourceVersion
would be a write of servicelink's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from objects import cronjob, events, job, service, servicelink, servicelink_state, sl, wait_condition, wait_until_acted

from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for

CONFIGMAP = "gateway-service-config"
LINKS = (
    {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
    {"key": "APP_SERVICE_URL", "service": "app-service"},
)
AUTH = {"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}
RESYNC = 3  # seconds: the test operator's resync
T0 = "2026-01-01T00:00:00Z"


def set_status(cluster: Cluster, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Set a Job's status as its controller would."""
    patch = json.dumps({"status": status})
    cluster.kubectl("patch", "job", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)


def run(cluster: Cluster, namespace: str, name: str) -> None:
    set_status(cluster, namespace, name, {"startTime": T0, "active": 1})


def complete(cluster: Cluster, namespace: str, name: str) -> None:
    done = [
        {"type": kind, "status": "True", "lastProbeTime": T0, "lastTransitionTime": T0}
        for kind in ("SuccessCriteriaMet", "Complete")
    ]
    set_status(
        cluster,
        namespace,
        name,
        {"startTime": T0, "completionTime": T0, "active": 0, "succeeded": 1, "conditions": done},
    )


def versions(cluster: Cluster, namespace: str, *names: str) -> dict[str, str]:
    return {name: cluster.get("job", name, "-n", namespace)["metadata"]["resourceVersion"] for name in names}


def stale_jobs(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (sl(cluster, namespace, "gateway-service").get("status") or {}).get("staleJobs", [])
    return found


def acted(cluster: Cluster, namespace: str) -> None:
    """Wait for a reconcile of the ServiceLink after everything done so far (objects.wait_until_acted)."""
    wait_until_acted(cluster, namespace, "gateway-service", "auth-service")


def test_a_running_job_on_a_changed_value_is_reported_once_and_never_written(
    cluster: Cluster, namespace: str, operator: Any
) -> None:
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            service("app-service", namespace, 3002),
            job("migrate", namespace, key_refs=AUTH),
            job("backfill", namespace, env_from=CONFIGMAP),
            job("app-only", namespace, key_refs={"APP_URL": (CONFIGMAP, "APP_SERVICE_URL")}),
            job("finished", namespace, key_refs=AUTH),
            job("unrelated", namespace, env_from="some-other-config"),
            cronjob("nightly", namespace, key_refs=AUTH),
            servicelink("gateway-service", namespace, CONFIGMAP, *LINKS),
        ]
    )
    for name in ("migrate", "backfill", "app-only", "unrelated"):
        run(cluster, namespace, name)
    complete(cluster, namespace, "finished")
    wait_condition(cluster, namespace, "gateway-service", "Ready", "True")
    jobs = ("migrate", "backfill", "app-only", "finished", "unrelated")
    before = versions(cluster, namespace, *jobs)
    # Creating the ConfigMap changed no value a running pod holds: nothing is listed.
    acted(cluster, namespace)
    assert stale_jobs(cluster, namespace) == []
    assert events(cluster, namespace, "StaleJobs") == []

    cluster.apply(service("auth-service", namespace, 4001))
    expected = [
        {"name": "backfill", "hash": "unknown", "keys": ["AUTH_SERVICE_URL"]},
        {"name": "migrate", "hash": "unknown", "keys": ["AUTH_SERVICE_URL"]},
    ]
    wait_for(lambda: stale_jobs(cluster, namespace) == expected or None, what="the running Jobs listed")
    # Key-level precision: app-only reads an unchanged key; finished runs no more; unrelated reads another ConfigMap.
    (event,) = events(cluster, namespace, "StaleJobs")
    assert event["type"] == "Warning"
    assert f"Job {namespace}/backfill runs on old values of AUTH_SERVICE_URL" in event["message"]
    assert f"Job {namespace}/migrate runs on old values of AUTH_SERVICE_URL" in event["message"]
    assert versions(cluster, namespace, *jobs) == before  # not one Job written

    # A Job the CronJob starts now is made from its annotated template: it runs the current values.
    wait_condition(cluster, namespace, "gateway-service", "RolledOut", "True")
    cluster.kubectl("create", "job", "nightly-manual", "--from=cronjob/nightly", "-n", namespace)
    run(cluster, namespace, "nightly-manual")

    # Later reconciles, a resync among them, write nothing more: no status, no Event.
    acted(cluster, namespace)
    settled = servicelink_state(sl(cluster, namespace, "gateway-service"))
    time.sleep(RESYNC)
    acted(cluster, namespace)
    assert servicelink_state(sl(cluster, namespace, "gateway-service")) == settled
    assert stale_jobs(cluster, namespace) == expected
    assert [e["count"] for e in events(cluster, namespace, "StaleJobs")] == [1]

    # A Job that finishes, or is deleted, leaves the list.
    complete(cluster, namespace, "backfill")
    wait_for(lambda: stale_jobs(cluster, namespace) == expected[1:] or None, what="the finished Job unlisted")
    cluster.kubectl("delete", "job", "migrate", "-n", namespace, "--wait=false")
    wait_for(lambda: stale_jobs(cluster, namespace) == [] or None, what="the deleted Job unlisted")
    assert "staleJobs" not in sl(cluster, namespace, "gateway-service")["status"]
    assert [e["count"] for e in events(cluster, namespace, "StaleJobs")] == [1]
    remaining = ("app-only", "finished", "unrelated")
    assert versions(cluster, namespace, *remaining) == {name: before[name] for name in remaining}


def test_an_operator_restart_writes_nothing_and_reports_no_job_again(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, tmp_path: Path
) -> None:
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            service("app-service", namespace, 3002),
            job("migrate", namespace, key_refs=AUTH),
            servicelink("gateway-service", namespace, CONFIGMAP, *LINKS),
        ]
    )
    run(cluster, namespace, "migrate")
    wait_condition(cluster, namespace, "gateway-service", "Ready", "True")
    cluster.apply(service("auth-service", namespace, 4001))
    wait_for(lambda: stale_jobs(cluster, namespace) or None, what="the running Job listed")
    acted(cluster, namespace)
    settled = servicelink_state(sl(cluster, namespace, "gateway-service"))
    job_version = versions(cluster, namespace, "migrate")
    operator_process.stop()
    again = start_operator_process(cluster.kubeconfig, tmp_path / "again.log")
    try:
        acted(cluster, namespace)  # a reconcile of the new process
        assert servicelink_state(sl(cluster, namespace, "gateway-service")) == settled
        assert [e["count"] for e in events(cluster, namespace, "StaleJobs")] == [1]
        assert versions(cluster, namespace, "migrate") == job_version
    finally:
        again.stop()
