"""Argo Rollouts, with Argo Rollouts' own published CRD installed and no Argo controller running.

A Rollout with an inline template is patched like a Deployment; one with
``spec.workloadRef`` is never written, the Deployment it references is. With no
controller, only servicelink writes these objects' specs (their generation), and
the tests set a Rollout's status by hand to stand for its controller.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from objects import (
    argo_rollout,
    condition,
    deployment,
    events,
    service,
    servicelink,
    template_hash,
    wait_condition,
    wait_until_acted,
)

from servicelink.render import render_hash
from servicelink.testing.assets import argo_rollouts_crd
from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for

HASH = "servicelink.dev/config-hash"
CONFIGMAP = "gateway-service-config"
LINKS = (
    {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
    {"key": "APP_SERVICE_URL", "service": "app-service"},
)
ROLLOUTS = ("auth-canary", "app-canary", "by-ref")
RESYNC = 4  # seconds: more than the test operator's resync of 3
CRD_NAME = "rollouts.argoproj.io"
NOT_SERVED = "cannot watch rollouts.argoproj.io: the API server does not serve it (is its CRD installed?)"


def install_argo_crd(cluster: Cluster) -> None:
    """Install Argo Rollouts' Rollout CRD, from its Go module; server-side: it is too big for a last-applied copy."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(argo_rollouts_crd(log=False)))

    def established() -> bool:
        conditions = (cluster.get("crd", CRD_NAME).get("status") or {}).get("conditions") or ()
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(established, what=f"{CRD_NAME} served")  # kubectl wait fails while the CRD has no conditions yet


def start_with_argo(kubeconfig: Path, log_path: Path) -> OperatorProcess:
    return start_operator_process(kubeconfig, log_path, SERVICELINK_ARGO_ROLLOUTS="true")


def stop(process: OperatorProcess) -> None:
    """Stop the operator; its log goes to the captured output, which pytest shows when the test failed."""
    process.stop()
    print(f"\n[servicelink] operator log {process.log_path}:\n{process.log()[-20000:]}", file=sys.stderr)


def rollout_hash(cluster: Cluster, namespace: str, name: str) -> str | None:
    template = cluster.get("rollout.argoproj.io", name, "-n", namespace)["spec"].get("template") or {}
    value: str | None = ((template.get("metadata") or {}).get("annotations") or {}).get(HASH)
    return value


def versions(cluster: Cluster, namespace: str) -> dict[str, tuple[str, int]]:
    """(resourceVersion, generation) of each Rollout; the generation alone of the Deployment ``by-ref``
    references, whose status its controller writes."""
    found = {}
    for name in ROLLOUTS:
        metadata = cluster.get("rollout.argoproj.io", name, "-n", namespace)["metadata"]
        found[name] = (metadata["resourceVersion"], metadata["generation"])
    metadata = cluster.get("deployment", "by-ref-template", "-n", namespace)["metadata"]
    found["by-ref-template"] = ("", metadata["generation"])
    return found


def set_rollout_status(
    cluster: Cluster, namespace: str, name: str, phase: str, message: str = "", *, workload: str | None = None
) -> None:
    """Write what Argo Rollouts' controller would: the phase, for the generation it saw, and with ``workload`` (the
    Deployment its ``spec.workloadRef`` names) the generation of that Deployment it saw."""
    generation = cluster.get("rollout.argoproj.io", name, "-n", namespace)["metadata"]["generation"]
    status = {"observedGeneration": str(generation), "phase": phase, "message": message}
    if workload is not None:
        seen = cluster.get("deployment", workload, "-n", namespace)["metadata"]["generation"]
        status["workloadObservedGeneration"] = str(seen)
    cluster.kubectl(
        "patch", "rollout.argoproj.io", name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def canaries(cluster: Cluster, namespace: str) -> dict[str, tuple[str, int]]:
    """Apply the Services, the Rollouts, the referenced Deployment and the ServiceLink; wait for Ready.

    ``auth-canary`` reads AUTH_SERVICE_URL inline, ``app-canary`` APP_SERVICE_URL inline; ``by-ref`` has no
    template: its ``workloadRef`` names the Deployment ``by-ref-template``, which reads AUTH_SERVICE_URL.
    """
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            service("app-service", namespace, 3002),
            argo_rollout("auth-canary", namespace, key_refs={"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}),
            argo_rollout("app-canary", namespace, key_refs={"APP_URL": (CONFIGMAP, "APP_SERVICE_URL")}),
            deployment("by-ref-template", namespace, key_refs={"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}),
            argo_rollout("by-ref", namespace, workload_ref="by-ref-template"),
            servicelink("gateway-service", namespace, CONFIGMAP, *LINKS),
        ]
    )
    wait_condition(cluster, namespace, "gateway-service", "Ready", "True")
    return versions(cluster, namespace)


def test_enabled_without_the_crd_the_operator_warns_and_follows_the_other_kinds(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, crd: Path, tmp_path: Path
) -> None:
    if cluster.get("crd", CRD_NAME) is not None:
        pytest.skip("the cluster serves Rollouts already")
    process = start_with_argo(kubeconfig_env, tmp_path / "operator.log")
    try:
        wait_for(lambda: NOT_SERVED in process.log(), what="the warning")
        cluster.apply(
            [
                service("auth-service", namespace, 3001),
                deployment("web", namespace, key_refs={"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}),
                servicelink("gateway-service", namespace, CONFIGMAP, LINKS[0]),
            ]
        )
        wait_condition(cluster, namespace, "gateway-service", "Ready", "True")
        cluster.apply(service("auth-service", namespace, 4001))
        expected = render_hash({"AUTH_SERVICE_URL": "http://auth-service:4001"})
        assert wait_for(lambda: template_hash(cluster, namespace, "web"), what="the Deployment patched") == expected
        time.sleep(RESYNC)  # resyncs come and go, and the informer lists again, without failing
        assert process.popen.poll() is None
    finally:
        stop(process)


def test_a_crd_installed_while_the_operator_runs_is_watched_without_a_restart_or_a_resync(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, crd: Path, tmp_path: Path
) -> None:
    """kopf alone missed a new CRD about 1 run in 3: the API server listed it only after its last event."""
    if cluster.get("crd", CRD_NAME) is not None:
        cluster.kubectl("delete", "crd", CRD_NAME, "--wait=true")
    # A resync far away: only the watch can find the Rollout and follow its progress in time.
    process = start_operator_process(
        kubeconfig_env, tmp_path / "operator.log", SERVICELINK_ARGO_ROLLOUTS="true", SERVICELINK_RESYNC_SECONDS="600"
    )
    try:
        wait_for(lambda: NOT_SERVED in process.log(), what="the warning")
        install_argo_crd(cluster)
        served = "rollouts.argoproj.io is now served: watching it"
        wait_for(lambda: served in process.log(), timeout=10, what="the watch")
        cluster.apply(
            [
                service("auth-service", namespace, 3001),
                argo_rollout("auth-canary", namespace, key_refs={"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}),
                servicelink("gateway-service", namespace, CONFIGMAP, LINKS[0]),
            ]
        )
        wait_condition(cluster, namespace, "gateway-service", "Ready", "True", timeout=10)

        cluster.apply(service("auth-service", namespace, 4001))
        expected = render_hash({"AUTH_SERVICE_URL": "http://auth-service:4001"})
        got = wait_for(lambda: rollout_hash(cluster, namespace, "auth-canary"), timeout=5, what="the Rollout patched")
        assert got == expected
        wait_condition(cluster, namespace, "gateway-service", "RolledOut", "False", "RolloutInProgress", timeout=5)
        set_rollout_status(cluster, namespace, "auth-canary", "Healthy")
        wait_condition(cluster, namespace, "gateway-service", "RolledOut", "True", "WorkloadsUpdated", timeout=5)
    finally:
        stop(process)


def test_a_port_change_patches_the_inline_rollout_reading_it_and_the_deployment_a_workload_ref_names(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, crd: Path, tmp_path: Path
) -> None:
    install_argo_crd(cluster)
    process = start_with_argo(kubeconfig_env, tmp_path / "operator.log")
    try:
        before = canaries(cluster, namespace)
        # Creating the ConfigMap patched nothing, and a later reconcile patches nothing either.
        wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
        assert versions(cluster, namespace) == before

        cluster.apply(service("auth-service", namespace, 4001))
        expected = render_hash({"AUTH_SERVICE_URL": "http://auth-service:4001"})  # only the key they read
        got = wait_for(lambda: rollout_hash(cluster, namespace, "auth-canary"), what="auth-canary's template patched")
        assert got == expected
        # workloadRef: the referenced Deployment holds the template, reads the key, and is patched.
        assert wait_for(lambda: template_hash(cluster, namespace, "by-ref-template"), what="by-ref's Deployment") == (
            expected
        )
        # The annotation is all that changed: the canary steps and the rest are the user's.
        body = cluster.get("rollout.argoproj.io", "auth-canary", "-n", namespace)
        assert body["spec"]["strategy"]["canary"]["steps"] == [{"setWeight": 20}, {"pause": {}}]
        assert "restartAt" not in body["spec"]

        # No controller has seen the new revision: RolledOut waits for the Rollout, then follows its phase.
        waiting = wait_condition(cluster, namespace, "gateway-service", "RolledOut", "False", "RolloutInProgress")
        assert f"Rollout {namespace}/auth-canary" in waiting["message"]
        assert f"Rollout {namespace}/by-ref:" in waiting["message"]
        set_rollout_status(cluster, namespace, "auth-canary", "Degraded", "RolloutAborted: metric failed")
        stalled = wait_condition(cluster, namespace, "gateway-service", "RolledOut", "False", "RolloutStalled")
        assert "RolloutAborted: metric failed" in stalled["message"]
        set_rollout_status(cluster, namespace, "auth-canary", "Healthy")
        # by-ref's Deployment is patched, but no controller turned it into a revision of by-ref: RolledOut waits.
        unseen = f"Rollout {namespace}/by-ref: Argo Rollouts has not yet seen the new template of Deployment"

        def waiting_for_by_ref_alone() -> dict[str, Any] | None:
            found = condition(cluster.get("sl", "gateway-service", "-n", namespace), "RolledOut")
            return None if f"Rollout {namespace}/auth-canary" in found.get("message", "auth-canary") else found

        waiting = wait_for(waiting_for_by_ref_alone, what="RolledOut waiting for by-ref alone")
        assert (waiting["status"], waiting["reason"]) == ("False", "RolloutInProgress")
        assert waiting["message"].startswith(unseen)
        set_rollout_status(cluster, namespace, "by-ref", "Healthy", workload="by-ref-template")
        done = wait_condition(cluster, namespace, "gateway-service", "RolledOut", "True", "WorkloadsUpdated")
        assert "waited" not in done["message"]
        status = cluster.get("sl", "gateway-service", "-n", namespace)["status"]
        assert sorted((r["kind"], r["name"]) for r in status["rolledOut"]) == [
            ("Deployment", "by-ref-template"),
            ("Rollout", "auth-canary"),
        ]
        assert condition(cluster.get("sl", "gateway-service", "-n", namespace), "Ready")["status"] == "True"
        (changed,) = [e for e in events(cluster, namespace, "ValueChanged") if "auth-service:4001" in e["message"]]
        assert f"Rollout {namespace}/auth-canary" in changed["message"]
        by_ref = f"Deployment {namespace}/by-ref-template (the template of Rollout {namespace}/by-ref)"
        assert by_ref in changed["message"]

        # Once each: the Rollout reading only APP_SERVICE_URL and the workloadRef Rollout were never written (only
        # by-ref's status, by the test).
        after = versions(cluster, namespace)
        assert after["app-canary"] == before["app-canary"]
        assert after["by-ref"][1] == before["by-ref"][1]
        assert after["auth-canary"][1] == before["auth-canary"][1] + 1
        assert after["by-ref-template"][1] == before["by-ref-template"][1] + 1
        time.sleep(RESYNC)  # a resync falls in here, then a reconcile after it
        wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
        assert versions(cluster, namespace) == after
    finally:
        stop(process)

    # A restart writes nothing either: the first reconcile and a resync find every hash current.
    again = start_with_argo(kubeconfig_env, tmp_path / "again.log")
    try:
        wait_until_acted(cluster, namespace, "gateway-service", "auth-service")  # a reconcile of the new process
        assert versions(cluster, namespace) == after
    finally:
        stop(again)


def own_hash(cluster: Cluster, kind: str, namespace: str, name: str) -> str | None:
    """The hash a workload restarted in place was restarted for: on its own metadata."""
    value: str | None = (cluster.get(kind, name, "-n", namespace)["metadata"].get("annotations") or {}).get(HASH)
    return value


def restarted(cluster: Cluster, namespace: str, name: str, *, workload: str | None = None) -> None:
    """Write what Argo Rollouts' controller would once every pod older than spec.restartAt was replaced."""
    body = cluster.get("rollout.argoproj.io", name, "-n", namespace)
    status = {
        "observedGeneration": str(body["metadata"]["generation"]),
        "phase": "Healthy",
        "restartedAt": body["spec"]["restartAt"],
    }
    if workload is not None:
        status["workloadObservedGeneration"] = str(
            cluster.get("deployment", workload, "-n", namespace)["metadata"]["generation"]
        )
    cluster.kubectl(
        "patch", "rollout.argoproj.io", name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_rollouts_in_restart_mode_get_restart_at_not_a_new_template_and_keep_their_hash_across_a_failover(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, crd: Path, tmp_path: Path
) -> None:
    install_argo_crd(cluster)
    reads = {"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}
    inline = argo_rollout("inline", namespace, key_refs=reads)
    by_ref = argo_rollout("by-ref", namespace, workload_ref="by-ref-template")
    for rollout in (inline, by_ref):
        rollout["metadata"]["annotations"] = {"servicelink.dev/rollout": "restart"}
    process = start_with_argo(kubeconfig_env, tmp_path / "operator.log")
    try:
        cluster.apply(
            [
                service("auth-service", namespace, 3001),
                inline,
                deployment("by-ref-template", namespace, key_refs=reads),
                by_ref,
                servicelink("links", namespace, CONFIGMAP, LINKS[0]),
            ]
        )
        wait_condition(cluster, namespace, "links", "Ready", "True")
        before = {
            name: cluster.get(kind, name, "-n", namespace)
            for kind, name in (("rollout.argoproj.io", "inline"), ("rollout.argoproj.io", "by-ref"),
                               ("deployment", "by-ref-template"))
        }  # fmt: skip

        cluster.apply(service("auth-service", namespace, 4001))
        expected = render_hash({"AUTH_SERVICE_URL": "http://auth-service:4001"})
        got = wait_for(lambda: own_hash(cluster, "rollout.argoproj.io", namespace, "inline"), what="inline restarted")
        assert got == expected
        # workloadRef: the Deployment holds the template and the record; the Rollout gets the restart.
        got = wait_for(lambda: own_hash(cluster, "deployment", namespace, "by-ref-template"), what="by-ref restarted")
        assert got == expected
        after = {
            name: cluster.get(kind, name, "-n", namespace)
            for kind, name in (("rollout.argoproj.io", "inline"), ("rollout.argoproj.io", "by-ref"),
                               ("deployment", "by-ref-template"))
        }  # fmt: skip
        # Templates, and so revisions and canary steps, stay the owners'; spec.restartAt asks each restart. (The
        # Deployment's generation may rise: the API server counts a change of its annotations as one.)
        for name in ("inline", "by-ref-template"):
            assert after[name]["spec"]["template"] == before[name]["spec"]["template"]
        for name in ("inline", "by-ref"):
            assert after[name]["spec"]["restartAt"]
            assert after[name]["metadata"]["generation"] == before[name]["metadata"]["generation"] + 1
        waiting = wait_condition(cluster, namespace, "links", "RolledOut", "False", "RolloutInProgress")
        assert ": restarting its pods" in waiting["message"]
        restarted(cluster, namespace, "inline")
        restarted(cluster, namespace, "by-ref", workload="by-ref-template")
        wait_condition(cluster, namespace, "links", "RolledOut", "True", "WorkloadsUpdated")
    finally:
        stop(process)

    # The hashes on the restarted objects are the record: a new operator (a failover) restarts nothing again.
    again = start_with_argo(kubeconfig_env, tmp_path / "again.log")
    try:
        wait_until_acted(cluster, namespace, "links", "auth-service")
        for name in ("inline", "by-ref"):
            body = cluster.get("rollout.argoproj.io", name, "-n", namespace)
            assert body["metadata"]["generation"] == after[name]["metadata"]["generation"]
            assert body["spec"]["restartAt"] == after[name]["spec"]["restartAt"]
    finally:
        stop(again)
