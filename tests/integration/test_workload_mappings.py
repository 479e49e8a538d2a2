"""WorkloadMappings: a kind of the test's own CRD, followed and rolled like a Deployment once a mapping names it.

The kind is Widget (widgets.py), whose objects only servicelink writes. A
mapping that cannot be followed says why in its status and stops nothing else.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from objects import admission_refused, deployment, events, service, servicelink, wait_condition, wait_until_acted
from widgets import GROUP, KIND, MAPPING, WIDGET_CRD, mapping, wait_ready, widget, widget_meta

from servicelink.render import render_hash
from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for

CONFIGMAP = "gateway-service-config"
RESYNC = 3  # seconds: the test operator's resync


def stop(process: OperatorProcess) -> None:
    process.stop()
    print(f"\n[servicelink] operator log {process.log_path}:\n{process.log()[-20000:]}", file=sys.stderr)


def mapping_events(cluster: Cluster, reason: str) -> list[dict[str, Any]]:
    found = cluster.get("events", "-n", "default", "--field-selector", f"involvedObject.name={MAPPING}")
    return [e for e in (found or {}).get("items") or () if e["reason"] == reason]


def assert_a_new_widget_is_rolled(cluster: Cluster, namespace: str, name: str) -> None:
    """A Widget reading AUTH_SERVICE_URL, created now, is patched within 10 s of a port change: it is watched."""
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            widget(name, namespace, {"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}),
            servicelink(
                "gateway-service", namespace, CONFIGMAP, {"key": "AUTH_SERVICE_URL", "service": "auth-service"}
            ),
        ]
    )
    wait_condition(cluster, namespace, "gateway-service", "Ready", "True", timeout=10)
    cluster.apply(service("auth-service", namespace, 4001))
    expected = render_hash({"AUTH_SERVICE_URL": "http://auth-service:4001"})
    assert wait_for(lambda: widget_meta(cluster, namespace, name)[2], timeout=10, what=f"{name} patched") == expected


def test_a_mapped_kind_is_followed_and_rolled_once_like_a_deployment(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, widgets: None, tmp_path: Path
) -> None:
    process = start_operator_process(kubeconfig_env, tmp_path / "operator.log")
    try:
        cluster.apply(
            [
                service("auth-service", namespace, 3001),
                service("app-service", namespace, 3002),
                widget("reads-auth", namespace, {"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}),
                widget("reads-app", namespace, {"APP_URL": (CONFIGMAP, "APP_SERVICE_URL")}),
                servicelink(
                    "gateway-service",
                    namespace,
                    CONFIGMAP,
                    {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
                    {"key": "APP_SERVICE_URL", "service": "app-service"},
                ),
            ]
        )
        wait_condition(cluster, namespace, "gateway-service", "Ready", "True")
        # Mapped while the operator runs: followed without a restart.
        cluster.apply(mapping())
        watching = wait_ready(cluster, "Watching")
        assert watching["status"] == "True"
        assert f"ServiceLinks name the kind {KIND}" in watching["message"]
        status = cluster.get("workloadmapping", MAPPING)["status"]
        assert status["workloads"] >= 2  # every Widget of the cluster, others' tests included
        assert status["observedGeneration"] == 1
        # Following it patches nothing: the values did not change.
        before = {name: widget_meta(cluster, namespace, name) for name in ("reads-auth", "reads-app")}
        assert all(meta[2] is None for meta in before.values())
        wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
        assert {name: widget_meta(cluster, namespace, name) for name in before} == before
        mapping_version = cluster.get("workloadmapping", MAPPING)["metadata"]["resourceVersion"]

        cluster.apply(service("auth-service", namespace, 4001))
        expected = render_hash({"AUTH_SERVICE_URL": "http://auth-service:4001"})
        got = wait_for(lambda: widget_meta(cluster, namespace, "reads-auth")[2], what="the Widget patched")
        assert got == expected
        wait_condition(cluster, namespace, "gateway-service", "RolledOut", "True", "WorkloadsUpdated")
        rolled = cluster.get("sl", "gateway-service", "-n", namespace)["status"]["rolledOut"]
        assert [(r["kind"], r["name"]) for r in rolled] == [(KIND, "reads-auth")]
        (changed,) = [e for e in events(cluster, namespace, "ValueChanged") if "auth-service:4001" in e["message"]]
        assert f"{KIND} {namespace}/reads-auth" in changed["message"]

        # Once: the Widget reading the other key untouched; resyncs write nothing, the mapping's status neither.
        after = {name: widget_meta(cluster, namespace, name) for name in before}
        assert after["reads-app"] == before["reads-app"]
        assert after["reads-auth"][1] == before["reads-auth"][1] + 1
        time.sleep(RESYNC)  # a resync falls in here, then a reconcile after it
        wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
        assert {name: widget_meta(cluster, namespace, name) for name in before} == after
        assert cluster.get("workloadmapping", MAPPING)["metadata"]["resourceVersion"] == mapping_version
    finally:
        stop(process)

    # A restart follows the mapping from the start, and writes nothing.
    again = start_operator_process(kubeconfig_env, tmp_path / "again.log")
    try:
        wait_until_acted(cluster, namespace, "gateway-service", "auth-service")  # a reconcile of the new process
        assert {name: widget_meta(cluster, namespace, name) for name in before} == after
        cluster.apply(service("app-service", namespace, 4002))
        expected = render_hash({"APP_SERVICE_URL": "http://app-service:4002"})
        assert wait_for(lambda: widget_meta(cluster, namespace, "reads-app")[2], what="reads-app patched") == expected
    finally:
        stop(again)


def test_a_named_widget_that_does_not_read_the_configmap_is_rolled_with_its_owners_consent(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, widgets: None, tmp_path: Path
) -> None:
    cluster.apply(mapping())
    opted_in = widget("opted-in", namespace, {})
    opted_in["metadata"]["annotations"] = {"servicelink.dev/rollable-by": "gateway-service"}
    link = servicelink(
        "gateway-service",
        namespace,
        CONFIGMAP,
        {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
        workloads={"names": [{"kind": KIND, "name": "opted-in"}, {"kind": KIND, "name": "not-asked"}]},
    )
    process = start_operator_process(kubeconfig_env, tmp_path / "operator.log")
    try:
        cluster.apply([service("auth-service", namespace, 3001), opted_in, widget("not-asked", namespace, {}), link])
        wait_ready(cluster, "Watching")
        skipped = wait_condition(cluster, namespace, "gateway-service", "RolledOut", "False", "WorkloadNotOptedIn")
        assert f"kubectl annotate widget.{GROUP} not-asked" in skipped["message"]
        cluster.apply(service("auth-service", namespace, 4001))
        assert wait_for(lambda: widget_meta(cluster, namespace, "opted-in")[2], what="opted-in patched")
        status = cluster.get("sl", "gateway-service", "-n", namespace)["status"]
        assert [(s["kind"], s["name"]) for s in status["skipped"]] == [(KIND, "not-asked")]
        assert [(r["kind"], r["name"]) for r in status["rolledOut"]] == [(KIND, "opted-in")]
        assert widget_meta(cluster, namespace, "not-asked")[2] is None
    finally:
        stop(process)


def test_a_mapping_that_cannot_be_followed_says_why_and_the_operator_goes_on(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, widgets: None, tmp_path: Path
) -> None:
    process = start_operator_process(kubeconfig_env, tmp_path / "operator.log")
    try:
        cluster.apply(widget("web", namespace, {"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}))
        cluster.apply(mapping(version="v2"))
        not_served = wait_ready(cluster, "KindNotServed")
        assert not_served["status"] == "False"
        assert f"serves no widgets in {GROUP}/v2" in not_served["message"]
        # And one Warning Event, in the default namespace as a cluster-scoped object's are.
        warned = wait_for(lambda: mapping_events(cluster, "KindNotServed"), what="a KindNotServed Event")
        assert [(e["type"], e["involvedObject"]["kind"]) for e in warned] == [("Warning", "WorkloadMapping")]

        cluster.apply(mapping(kind="Gadget"))
        assert "set spec.kind to Widget" in wait_ready(cluster, "KindNotServed")["message"]

        cluster.apply(mapping(template=".spec.podTemplate"))
        missing = wait_ready(cluster, "TemplateNotFound")
        assert f"no pod template at .spec.podTemplate in Widget {namespace}/web" in missing["message"]

        cluster.apply(mapping())
        wait_ready(cluster, "Watching")

        cluster.apply(mapping("deployments.apps", kind="Deployment"))
        built_in = wait_ready(cluster, "BuiltInKind", name="deployments.apps")
        assert "servicelink follows it already" in built_in["message"]

        # The CRD's own checks refuse what they can before the operator sees it.
        refused = cluster.kubectl(
            "apply", "-f", "-", input=json.dumps(mapping("widgets", template="spec")), check=False
        )
        assert refused.returncode != 0
        assert "metadata.name must be <plural>.<group>" in refused.stderr

        # Through all of it, a Deployment is still followed and rolled.
        cluster.apply(
            [
                service("auth-service", namespace, 3001),
                deployment("still-rolled", namespace, key_refs={"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}),
                servicelink(
                    "gateway-service", namespace, CONFIGMAP, {"key": "AUTH_SERVICE_URL", "service": "auth-service"}
                ),
            ]
        )
        wait_condition(cluster, namespace, "gateway-service", "Ready", "True")
        assert process.popen.poll() is None
    finally:
        stop(process)


def test_a_kind_mapped_while_the_operator_runs_is_watched_without_a_restart_or_a_resync(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, widgets: None, tmp_path: Path
) -> None:
    # A resync far away: only the watch started for the new kind can see a Widget created after the mapping.
    process = start_operator_process(kubeconfig_env, tmp_path / "operator.log", SERVICELINK_RESYNC_SECONDS="600")
    try:
        wait_for(lambda: "servicelink started" in process.log(), what="the start")
        cluster.apply(mapping())
        wait_ready(cluster, "Watching")  # said only once the kind's watches are open
        assert_a_new_widget_is_rolled(cluster, namespace, "late")

        # Deleted: no longer followed; a change rolls nothing of the kind.
        cluster.kubectl("delete", "workloadmapping", MAPPING)
        wait_for(lambda: f"no longer following {KIND}" in process.log(), timeout=10, what="the mapping dropped")
        patched = widget_meta(cluster, namespace, "late")
        cluster.apply(service("auth-service", namespace, 5001))
        wait_for(lambda: "auth-service:5001" in json.dumps(cluster.get("cm", CONFIGMAP, "-n", namespace)), what="5001")
        wait_until_acted(cluster, namespace, "gateway-service", "auth-service")
        assert widget_meta(cluster, namespace, "late") == patched
    finally:
        stop(process)


def test_a_mapping_applied_before_its_crd_is_followed_once_the_crd_is_installed(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, widgets: None, tmp_path: Path
) -> None:
    cluster.kubectl("delete", "crd", MAPPING, "--wait=true")
    # A resync far away: only the operator's own re-check of a waiting mapping can find the new CRD in time.
    process = start_operator_process(kubeconfig_env, tmp_path / "operator.log", SERVICELINK_RESYNC_SECONDS="600")
    try:
        cluster.apply(mapping())
        wait_ready(cluster, "KindNotServed")
        cluster.apply(WIDGET_CRD)
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{MAPPING}")
        started = time.monotonic()
        watching = wait_ready(cluster, "Watching")
        print(f"\n[servicelink] mapping followed {time.monotonic() - started:.1f} s after its CRD was established")
        assert watching["status"] == "True"
        assert_a_new_widget_is_rolled(cluster, namespace, "web")
    finally:
        stop(process)


def mapping_status_refused(cluster: Cluster) -> AbstractContextManager[None]:
    """A ValidatingAdmissionPolicy refusing every write of the test mapping's status: the operator's only writes."""
    rule = {
        "apiGroups": ["servicelink.dev"],
        "apiVersions": ["*"],
        "operations": ["UPDATE"],
        "resources": ["workloadmappings/status"],
        "resourceNames": [MAPPING],
    }
    return admission_refused(cluster, "refuse-mapping-status", rule, "false", "the mapping's status is refused")


def mapping_status_write_refused(cluster: Cluster) -> bool:
    """Whether the API server refuses a write of the test mapping's status now (a dry run: nothing is kept)."""
    patch = json.dumps({"status": {"workloads": 0}})
    done = cluster.kubectl(
        "patch",
        "workloadmapping",
        MAPPING,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
        "--dry-run=server",
        check=False,
    )
    return done.returncode != 0


def test_a_mapping_status_the_api_server_refused_is_written_within_10_s_of_the_refusal_ending(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, widgets: None, tmp_path: Path
) -> None:
    """The status write of a changed mapping is refused; the mappings' queue retries it with backoff. Lifted after
    the first refusal (so no retry is yet more than a few seconds away), the status is right within 10 s.

    A resync far away: only the queue's retry, not a relist, can write it in time."""
    process = start_operator_process(kubeconfig_env, tmp_path / "operator.log", SERVICELINK_RESYNC_SECONDS="600")
    retrying = f"WorkloadMapping/{MAPPING}: "
    try:
        cluster.apply([widget("web", namespace, {"AUTH_URL": (CONFIGMAP, "AUTH_SERVICE_URL")}), mapping()])
        wait_ready(cluster, "Watching")
        with mapping_status_refused(cluster):
            wait_for(lambda: mapping_status_write_refused(cluster), what="the policy in force")
            assert retrying not in process.log()
            cluster.apply(mapping(template=".spec.podTemplate"))  # generation 2: Ready False, TemplateNotFound
            wait_for(lambda: retrying in process.log(), timeout=30, what="the status write refused")
        lifted = time.monotonic()
        missing = wait_ready(cluster, "TemplateNotFound", timeout=30)
        seconds = time.monotonic() - lifted
        print(f"\n[servicelink] a refused mapping status written {seconds:.1f} s after the refusal ended")
        refusals = process.log().count(retrying)
        assert seconds <= 10, f"written {seconds:.1f} s after the refusal ended"
        assert missing["observedGeneration"] == 2
        assert cluster.get("workloadmapping", MAPPING)["status"]["observedGeneration"] == 2
        log = process.log()
        assert "denied request" in log
        assert "retrying in 0.5s" in log
        wait_for(lambda: mapping_events(cluster, "TemplateNotFound"), what="a TemplateNotFound Event")

        # Followed again: the refusals stopped nothing.
        cluster.apply(mapping())
        wait_ready(cluster, "Watching")
        print(f"[servicelink] {refusals} refused writes of the mapping status")
        assert process.popen.poll() is None
        assert "Traceback" not in process.log()
    finally:
        stop(process)
