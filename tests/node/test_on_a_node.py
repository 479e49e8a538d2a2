"""The install path users take, on a real node: the image, ``kubectl apply -k manifests/``, the gallery as pods.

The tests run in file order on one node and build on each other, as a user's
session would: install the operator, apply the gallery, change a port, restart
the operator, watch a rollout stall and recover, hold a rollout until a Service
answers. Then nothing may have crossed the node's link; the last ones kill
every component, and ``up`` halfway, and check ``down`` still leaves the host
as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from servicelink.model import CONFIG_HASH_ANNOTATION
from servicelink.testing.capture import Capture
from servicelink.testing.fixtures import wait_for
from servicelink.testing.node import (
    HOST_LINK,
    Node,
    NodeError,
    down,
    host_network_state,
    leftovers,
    running_components,
    up,
)
from transcripts import assert_shows, commands, transcript

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SYSTEM = "servicelink-system"
GALLERY = "gallery"


def get(node: Node, *args: str) -> Any:
    return json.loads(node.kubectl("get", *args, "-o", "json").stdout)


def live_operator_pods(node: Node) -> list[dict[str, Any]]:
    pods = get(node, "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=servicelink")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def operator_pod(node: Node) -> dict[str, Any]:
    live = live_operator_pods(node)
    assert len(live) == 1, [p["metadata"]["name"] for p in live]
    return dict(live[0])


def newest_pods(node: Node, deployment: str) -> list[dict[str, Any]]:
    """The pods of the Deployment's newest ReplicaSet."""
    sets = get(node, "replicasets", "-n", GALLERY, "-l", f"app={deployment}")["items"]
    newest = max(sets, key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
    template_hash = newest["metadata"]["labels"]["pod-template-hash"]
    pods = get(node, "pods", "-n", GALLERY, "-l", f"app={deployment},pod-template-hash={template_hash}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def call(node: Node, deployment: str, url: str) -> Any:
    """GET ``url`` from inside a pod of ``deployment``'s newest ReplicaSet; return the JSON answer."""
    pod = newest_pods(node, deployment)[0]["metadata"]["name"]
    program = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    return json.loads(node.kubectl("exec", "-n", GALLERY, pod, "--", "python", "-c", program).stdout)


def generations(node: Node) -> dict[str, int]:
    return {d["metadata"]["name"]: d["metadata"]["generation"] for d in get(node, "deploy", "-n", GALLERY)["items"]}


def test_a_second_node_is_refused_at_once(node: Node, tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="already running"):
        up()
    with pytest.raises(NodeError, match=f"its link {HOST_LINK}\\), and there is one node per machine"):
        up(state=tmp_path)


def test_pods_reach_the_api_server_through_the_kubernetes_service(node: Node) -> None:
    """kube-root-ca.crt is published and the API server's certificate names the Service: in-cluster config works."""
    wait_for(lambda: node.kubectl("get", "configmap", "kube-root-ca.crt", check=False).returncode == 0, timeout=30)
    service = get(node, "service", "kubernetes")
    assert service["spec"]["clusterIP"] == "10.96.0.1"


def test_the_operator_runs_from_the_manifests_as_shipped(node: Node) -> None:
    node.kubectl("apply", "-k", str(REPO / "manifests"))
    node.kubectl("-n", SYSTEM, "rollout", "status", "deploy/servicelink", "--timeout=180s")
    pod = operator_pod(node)
    name = pod["metadata"]["name"]
    assert pod["spec"]["serviceAccountName"] == "servicelink"
    assert node.kubectl("exec", "-n", SYSTEM, name, "--", "id", "-u").stdout.strip() == "10001"
    write = node.kubectl("exec", "-n", SYSTEM, name, "--", "touch", "/opt/venv/x", check=False)
    assert "Read-only file system" in write.stderr
    # Only the ServiceAccount's token is mounted, and it may not read Secrets.
    mounts = [m["mountPath"] for c in pod["spec"]["containers"] for m in c.get("volumeMounts", [])]
    assert sorted(mounts) == ["/tmp", "/var/run/secrets/kubernetes.io/serviceaccount"]
    # `servicelink demo` finds the CRD and the gallery inside the installed package.
    program = "from servicelink.demo import CRD, GALLERY; print(CRD.name, sorted(p.name for p in GALLERY.iterdir()))"
    shipped = node.kubectl("exec", "-n", SYSTEM, name, "--", "python", "-c", program).stdout
    assert "servicelink-crd.yaml" in shipped
    assert "servicelinks.yaml" in shipped
    account = f"--as=system:serviceaccount:{SYSTEM}:servicelink"
    assert node.kubectl("auth", "can-i", "list", "secrets", account, "-A", check=False).stdout.strip() == "no"

    def probed() -> bool:
        """The kubelet's own counters show both probes passing on /healthz."""
        text = node.kubectl("get", "--raw", "/api/v1/nodes/servicelink-node/proxy/metrics/probes").stdout
        mine = [line for line in text.splitlines() if f'pod="{name}"' in line and 'result="successful"' in line]
        return any('probe_type="Liveness"' in line for line in mine) and any(
            'probe_type="Readiness"' in line for line in mine
        )

    wait_for(probed, timeout=60, interval=1, what="a successful liveness and readiness probe of the operator")


def test_the_gallery_runs_and_answers_through_cluster_dns(node: Node) -> None:
    node.kubectl("apply", "-k", str(REPO / "examples" / "gallery"))

    def ready() -> bool:
        links = get(node, "servicelinks", "-n", GALLERY)["items"]
        return len(links) == 3 and all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in sl.get("status", {}).get("conditions", []))
            for sl in links
        )

    wait_for(ready, timeout=60, interval=0.5, what="the gallery's ServiceLinks Ready")
    # Readiness probes call each app's upstreams over the URLs the operator wrote.
    node.kubectl("-n", GALLERY, "wait", "--for=condition=Available", "deploy", "--all", "--timeout=240s")
    assert call(node, "gateway-service", "http://localhost:8080/api/")["hops"] == [
        "gateway-service",
        "app-service",
        "mongodb",
        "redis",
    ]
    assert call(node, "gateway-service", "http://localhost:8080/auth")["hops"] == ["gateway-service", "auth-service"]

    def endpoints_ready() -> str:
        table = node.kubectl("get", "servicelink", "gateway-service", "-n", GALLERY).stdout
        print(table)
        return str(get(node, "servicelink", "gateway-service", "-n", GALLERY)["status"]["endpointSummary"])

    wait_for(lambda: endpoints_ready() == "2/2", timeout=30, what="ENDPOINTS 2/2 on real pods")


GATEWAY_AUTH = "http://gateway-service:8080/auth"
HANDWRITTEN_AUTH = "http://gateway-handwritten:8080/auth"


def handwritten_gateway_and_prober() -> list[dict[str, Any]]:
    """The seed's way beside ours: a gateway whose ConfigMap is written by hand, and a pod probing both.

    The prober calls each gateway's ``/auth`` every 100 ms and prints one JSON line per call.
    """
    app = {"image": "ghcr.io/servicelink/gallery-app:0.2.0", "imagePullPolicy": "IfNotPresent"}
    labels = {"app": "gateway-handwritten"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "gateway-handwritten-config", "namespace": GALLERY},
            "data": {"AUTH_SERVICE_URL": "http://auth-service:3001", "APP_SERVICE_URL": "http://app-service:3002"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "gateway-handwritten", "namespace": GALLERY},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "gateway",
                                **app,
                                "args": ["gateway"],
                                "env": [{"name": "PORT", "value": "8080"}],
                                "envFrom": [{"configMapRef": {"name": "gateway-handwritten-config"}}],
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "gateway-handwritten", "namespace": GALLERY},
            "spec": {"selector": labels, "ports": [{"port": 8080}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "prober", "namespace": GALLERY},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "prober",
                        **app,
                        "args": ["probe"],
                        "env": [{"name": "TARGETS", "value": f"{GATEWAY_AUTH} {HANDWRITTEN_AUTH}"}],
                    }
                ],
            },
        },
    ]


def probes(node: Node, url: str, since: float) -> list[dict[str, Any]]:
    """The prober's calls to ``url`` made at or after ``since`` (epoch seconds)."""
    lines = node.kubectl("logs", "-n", GALLERY, "prober").stdout.splitlines()
    calls = [json.loads(line) for line in lines if line.startswith("{")]
    return [c for c in calls if c["url"] == url and c["t"] >= since]


def recovery(node: Node, url: str, since: float, via: str) -> tuple[float, int]:
    """Seconds from ``since`` to the first call answered through ``via``, and the failed calls before it."""

    def first_success() -> dict[str, Any] | None:
        return next((c for c in probes(node, url, since) if c["ok"] and c["answer"].get("via") == via), None)

    first = wait_for(first_success, timeout=60, interval=0.5, what=f"a call through {via}")
    failed = sum(1 for c in probes(node, url, since) if c["t"] < first["t"] and not c["ok"])
    return first["t"] - since, failed


def test_a_port_change_rolls_the_gateway_onto_the_new_url(node: Node) -> None:
    node.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": handwritten_gateway_and_prober()}),
    )
    node.kubectl("-n", GALLERY, "wait", "--for=condition=Ready", "pod/prober", "--timeout=120s")
    wait_for(
        lambda: all(
            any(c["ok"] for c in probes(node, url, time.time() - 2)) for url in (GATEWAY_AUTH, HANDWRITTEN_AUTH)
        ),
        timeout=60,
        what="both gateways answering the prober",
    )
    before = generations(node)
    patched = time.time()
    node.kubectl(
        "patch", "service", "auth-service", "-n", GALLERY, "--type=json",
        "-p", '[{"op": "replace", "path": "/spec/ports/0/port", "value": 4001}]',
    )  # fmt: skip
    seconds, failed = recovery(node, GATEWAY_AUTH, patched, via="http://auth-service:4001")
    print(
        f"\n[servicelink] port 3001 -> 4001: gateway answers through the new port {seconds:.2f}s after the patch; "
        f"{failed} of the prober's calls failed in between"
    )
    assert seconds < 30
    node.kubectl("-n", GALLERY, "rollout", "status", "deploy/gateway-service", "--timeout=180s")
    pods = newest_pods(node, "gateway-service")
    env = node.kubectl("exec", "-n", GALLERY, pods[0]["metadata"]["name"], "--", "printenv", "AUTH_SERVICE_URL")
    assert env.stdout.strip() == "http://auth-service:4001"
    sets = get(node, "replicasets", "-n", GALLERY, "-l", "app=gateway-service")["items"]
    assert sorted(rs["status"].get("replicas", 0) for rs in sets) == [0, 1], "the old ReplicaSet scaled to zero"
    after = generations(node)
    assert {k: v for k, v in after.items() if k != "gateway-service"} == {
        k: v for k, v in before.items() if k != "gateway-service"
    }, "only the gateway reads AUTH_SERVICE_URL"
    # The seed's way never recovers: its ConfigMap still says 3001 until someone edits it and restarts the pods.
    # kube-proxy refuses its calls to the old port inside the node, as a real cluster does: the kernel
    # sends the first 6 refusals at once, then one a second.
    since = patched + seconds
    late: list[dict[str, Any]] = wait_for(
        lambda: (calls := probes(node, HANDWRITTEN_AUTH, since)) and calls[-1]["t"] - since >= 5 and calls,
        timeout=30,
        what="5 s of the hand-written gateway's calls",
    )
    failures = [c for c in late if not c["ok"]]
    refused = [c for c in failures if "refused" in str(c.get("answer", {}).get("error"))]
    print(
        f"[servicelink] the hand-written gateway failed {len(failures)} of {len(late)} calls in the "
        f"{late[-1]['t'] - since:.1f}s since ours answered, in {statistics.median(c['s'] for c in failures):.3f}s "
        f"(median; max {max(c['s'] for c in failures):.3f}s); {len(refused)} refused by kube-proxy, "
        f"{sum(c['s'] < 0.1 for c in refused)} of them within 0.1s"
    )
    assert len(failures) == len(late)
    assert refused


def test_a_service_renamed_in_the_servicelink_moves_the_gateway_without_failures(node: Node) -> None:
    node.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "auth-v2", "namespace": GALLERY},
        "spec": {"selector": {"app": "auth-service"}, "ports": [{"name": "http", "port": 3001, "targetPort": "http"}]},
    }))  # fmt: skip
    patched = time.time()
    node.kubectl(
        "patch", "servicelink", "gateway-service", "-n", GALLERY, "--type=json", "-p",
        '[{"op": "test", "path": "/spec/links/0/key", "value": "AUTH_SERVICE_URL"},'
        ' {"op": "replace", "path": "/spec/links/0/service", "value": "auth-v2"}]',
    )  # fmt: skip
    seconds, failed = recovery(node, GATEWAY_AUTH, patched, via="http://auth-v2:3001")
    print(
        f"\n[servicelink] auth-service -> auth-v2: gateway answers through auth-v2 {seconds:.2f}s after the patch; "
        f"{failed} of the prober's calls failed in between"
    )
    assert seconds < 30
    node.kubectl("-n", GALLERY, "rollout", "status", "deploy/gateway-service", "--timeout=180s")
    for pod in newest_pods(node, "gateway-service"):
        env = node.kubectl("exec", "-n", GALLERY, pod["metadata"]["name"], "--", "printenv", "AUTH_SERVICE_URL")
        assert env.stdout.strip() == "http://auth-v2:3001"


def test_a_new_operator_pod_takes_over_without_writing_or_rolling(node: Node) -> None:
    configmaps = {
        cm["metadata"]["name"]: cm["metadata"]["resourceVersion"]
        for cm in get(node, "configmaps", "-n", GALLERY)["items"]
    }
    before = generations(node)
    old = operator_pod(node)["metadata"]["name"]
    node.kubectl("delete", "pod", "-n", SYSTEM, old, "--wait=false")
    # strategy Recreate: the old pod terminates before the new one is created, so for a moment there is none.
    wait_for(
        lambda: [p for p in live_operator_pods(node) if p["metadata"]["name"] != old],
        timeout=60,
        what="a new operator pod",
    )
    node.kubectl("-n", SYSTEM, "rollout", "status", "deploy/servicelink", "--timeout=120s")
    new = operator_pod(node)["metadata"]["name"]
    wait_for(
        lambda: "ServiceLinks" in node.kubectl("logs", "-n", SYSTEM, new, check=False).stdout,
        timeout=60,
        what="the new operator's start-up reconcile",
    )
    time.sleep(5)  # its start-up reconcile of every ServiceLink has had time to write, if it were to
    assert {
        cm["metadata"]["name"]: cm["metadata"]["resourceVersion"]
        for cm in get(node, "configmaps", "-n", GALLERY)["items"]
    } == configmaps
    assert generations(node) == before


def app_deployment(name: str, role: str, port: int, **spec: Any) -> dict[str, Any]:
    """A Deployment of the gallery's app in ``role``, Ready only once its upstreams answer."""
    container: dict[str, Any] = {
        "name": role,
        "image": "ghcr.io/servicelink/gallery-app:0.2.0",
        "imagePullPolicy": "IfNotPresent",
        "args": [role],
        "env": [{"name": "PORT", "value": str(port)}],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
    }
    if role == "gateway":
        container["envFrom"] = [{"configMapRef": {"name": f"{name}-config"}}]
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": GALLERY},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            **spec,
        },
    }


def auth_service(name: str, app: str, port: int = 3001, target: int | str = "http") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": GALLERY},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": port, "targetPort": target}]},
    }


def rolled_out(node: Node, name: str) -> dict[str, Any]:
    """The RolledOut condition of a ServiceLink of the gallery."""
    conditions = get(node, "servicelink", name, "-n", GALLERY).get("status", {}).get("conditions", [])
    return next((dict(c) for c in conditions if c["type"] == "RolledOut"), {})


def wait_rolled_out(node: Node, name: str, reason: str, timeout: float = 120) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: (c := rolled_out(node, name)).get("reason") == reason and c,
        timeout=timeout,
        interval=0.5,
        what=f"RolledOut {reason} on {name}",
    )
    return found


def servicelinks_wide(node: Node, *names: str) -> str:
    """``kubectl get sl -n gallery -o wide``, of ``names`` or of all; what it printed, which the log keeps too."""
    printed: str = node.kubectl("get", "sl", *names, "-n", GALLERY, "-o", "wide").stdout
    print(printed)
    return printed


def test_a_consumer_whose_new_pods_never_become_ready_reports_rollout_stalled(node: Node) -> None:
    """The edge gateway calls auth-edge; a broken targetPort keeps its new pods unready past the deadline."""
    link = {
        "apiVersion": "servicelink.dev/v1alpha1",
        "kind": "ServiceLink",
        "metadata": {"name": "edge", "namespace": GALLERY},
        "spec": {
            "configMapName": "edge-config",
            "links": [
                {"key": "AUTH_SERVICE_URL", "service": "auth-edge"},
                {"key": "APP_SERVICE_URL", "service": "app-service"},
            ],
        },
    }
    edge = app_deployment("edge", "gateway", 8080, progressDeadlineSeconds=15)
    node.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "List", "items": [auth_service("auth-edge", "auth-service"), link, edge],
    }))  # fmt: skip
    node.kubectl("-n", GALLERY, "rollout", "status", "deploy/edge", "--timeout=180s")
    wait_rolled_out(node, "edge", "WorkloadsUpdated")

    # A new port whose targetPort leads nowhere: the value changes, the edge rolls, its new pods never answer.
    patched = time.time()
    node.kubectl("apply", "-f", "-", input=json.dumps(auth_service("auth-edge", "auth-service", 3005, 9999)))
    rolling = wait_rolled_out(node, "edge", "RolloutInProgress", timeout=30)
    print(f"\n[servicelink] RolloutInProgress {time.time() - patched:.2f}s after the patch: {rolling['message']}")
    shown_rolling, shown_stalled = commands(transcript(DOCS / "explanation" / "rollouts.md", "(a real run on the"))
    assert_shows(shown_rolling.output, servicelinks_wide(node), "rolling, as rollouts.md shows")
    stalled = wait_rolled_out(node, "edge", "RolloutStalled", timeout=90)
    print(f"[servicelink] RolloutStalled {time.time() - patched:.2f}s after the patch: {stalled['message']}")
    assert_shows(shown_stalled.output, servicelinks_wide(node), "stalled, as rollouts.md shows")
    deployment = get(node, "deployment", "edge", "-n", GALLERY)
    progressing = next(c for c in deployment["status"]["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    assert stalled["message"] == f"Deployment {GALLERY}/edge: {progressing['message']}"
    warnings = get(node, "events", "-n", GALLERY, "--field-selector", "reason=RolloutStalled")["items"]
    assert [(e["type"], e["message"]) for e in warnings] == [("Warning", stalled["message"])]

    # Fixing the Service changes no value (the port stays): the new pods become Ready and the stall clears.
    fixed = time.time()
    node.kubectl("apply", "-f", "-", input=json.dumps(auth_service("auth-edge", "auth-service", 3005)))
    done = wait_rolled_out(node, "edge", "WorkloadsUpdated", timeout=120)
    print(f"[servicelink] WorkloadsUpdated {time.time() - fixed:.2f}s after the fix: {done['message']}")
    (shown_fixed,) = commands(transcript(DOCS / "reference" / "api.md", "after the node tests' changes (a real run)"))
    assert_shows(shown_fixed.output, servicelinks_wide(node), "fixed, as api.md shows")
    assert (
        get(node, "deployment", "edge", "-n", GALLERY)["metadata"]["generation"] == deployment["metadata"]["generation"]
    )
    for pod in newest_pods(node, "edge"):
        env = node.kubectl("exec", "-n", GALLERY, pod["metadata"]["name"], "--", "printenv", "AUTH_SERVICE_URL")
        assert env.stdout.strip() == "http://auth-edge:3005"


def test_wait_for_endpoints_rolls_the_consumer_only_once_the_new_service_has_a_ready_pod(node: Node) -> None:
    """auth-v3 starts with no pods: the edge's ConfigMap moves to it at once, its pods only once one is Ready."""
    node.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "List",
        "items": [auth_service("auth-v3", "auth-v3"), app_deployment("auth-v3", "auth", 3001, replicas=0)],
    }))  # fmt: skip
    before = get(node, "deployment", "edge", "-n", GALLERY)["metadata"]["generation"]
    node.kubectl(
        "patch", "servicelink", "edge", "-n", GALLERY, "--type=json", "-p",
        '[{"op": "add", "path": "/spec/waitForEndpoints", "value": true},'
        ' {"op": "test", "path": "/spec/links/0/key", "value": "AUTH_SERVICE_URL"},'
        ' {"op": "replace", "path": "/spec/links/0/service", "value": "auth-v3"}]',
    )  # fmt: skip
    waiting = wait_rolled_out(node, "edge", "WaitingForEndpoints", timeout=30)
    print(f"\n[servicelink] {waiting['message']}")
    (shown_waiting,) = commands(transcript(DOCS / "how-to" / "wait-for-endpoints.md", "A real run ("))
    assert_shows(shown_waiting.output, servicelinks_wide(node, "edge"), "waiting, as wait-for-endpoints.md shows")
    data = get(node, "configmap", "edge-config", "-n", GALLERY)["data"]
    assert data["AUTH_SERVICE_URL"] == "http://auth-v3:3001", "the ConfigMap is written at once"
    assert get(node, "servicelink", "edge", "-n", GALLERY)["status"]["deferred"] == [
        {
            "key": "AUTH_SERVICE_URL",
            "service": f"{GALLERY}/auth-v3",
            "previous": "http://auth-edge:3005",
            "reason": "WaitingForEndpoints",
        }
    ]
    time.sleep(5)
    assert get(node, "deployment", "edge", "-n", GALLERY)["metadata"]["generation"] == before, "not rolled yet"

    scaled = time.time()
    node.kubectl("scale", "deployment", "auth-v3", "-n", GALLERY, "--replicas=1")
    wait_for(
        lambda: get(node, "deployment", "edge", "-n", GALLERY)["metadata"]["generation"] > before,
        timeout=120,
        interval=0.2,
        what="the edge rolled",
    )
    rolled = time.time() - scaled
    done = wait_rolled_out(node, "edge", "WorkloadsUpdated", timeout=120)
    print(
        f"[servicelink] auth-v3 scaled 0 -> 1: edge rolled {rolled:.2f}s later (its pod Ready), "
        f"RolledOut=True {time.time() - scaled:.2f}s later: {done['message']}"
    )
    assert "deferred" not in get(node, "servicelink", "edge", "-n", GALLERY)["status"]
    assert get(node, "deployment", "edge", "-n", GALLERY)["metadata"]["generation"] == before + 1, "rolled once"
    for pod in newest_pods(node, "edge"):
        env = node.kubectl("exec", "-n", GALLERY, pod["metadata"]["name"], "--", "printenv", "AUTH_SERVICE_URL")
        assert env.stdout.strip() == "http://auth-v3:3001"


def worker_cronjob() -> dict[str, Any]:
    """The gallery's worker as a CronJob: every minute a Job polls APP_SERVICE_URL once and prints what answered."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "worker-cron", "namespace": GALLERY},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "worker",
                                    "image": "ghcr.io/servicelink/gallery-app:0.2.0",
                                    "imagePullPolicy": "IfNotPresent",
                                    "args": ["job"],
                                    "envFrom": [{"configMapRef": {"name": "worker-service-config"}}],
                                }
                            ],
                        }
                    },
                }
            },
        },
    }


def finished_jobs(node: Node, config_hash: str | None) -> list[str]:
    """The names of worker-cron's completed Jobs whose pod template carries ``config_hash``, oldest first."""
    jobs = [
        j
        for j in get(node, "jobs", "-n", GALLERY)["items"]
        if j["metadata"].get("ownerReferences", [{}])[0].get("name") == "worker-cron"
        and j["spec"]["template"].get("metadata", {}).get("annotations", {}).get(CONFIG_HASH_ANNOTATION) == config_hash
        and j["status"].get("succeeded")
    ]
    return [j["metadata"]["name"] for j in sorted(jobs, key=lambda j: str(j["metadata"]["creationTimestamp"]))]


def template_hash(cronjob: dict[str, Any]) -> str | None:
    annotations = cronjob["spec"]["jobTemplate"]["spec"]["template"].get("metadata", {}).get("annotations", {})
    return annotations.get(CONFIG_HASH_ANNOTATION)


def test_a_cronjobs_next_job_runs_on_the_new_url_after_a_port_change(node: Node) -> None:
    """The worker runs every minute as a CronJob; after app-service's port changes its next Job calls the new one."""
    node.kubectl("apply", "-f", "-", input=json.dumps(worker_cronjob()))
    before = get(node, "cronjob", "worker-cron", "-n", GALLERY)
    first = wait_for(
        lambda: finished_jobs(node, template_hash(before)), timeout=150, interval=1, what="the CronJob's first Job"
    )[0]
    answer = json.loads(node.kubectl("logs", "-n", GALLERY, f"job/{first}").stdout)
    assert answer["url"] == "http://app-service:3002"
    assert answer["hops"][:2] == ["worker-cron", "app-service"]
    assert get(node, "cronjob", "worker-cron", "-n", GALLERY)["metadata"]["generation"] == 1, "not patched for nothing"

    patched = time.time()
    node.kubectl(
        "patch", "service", "app-service", "-n", GALLERY, "--type=json",
        "-p", '[{"op": "replace", "path": "/spec/ports/0/port", "value": 4002}]',
    )  # fmt: skip

    def annotated() -> dict[str, Any] | None:
        cronjob = get(node, "cronjob", "worker-cron", "-n", GALLERY)
        return cronjob if cronjob["metadata"]["generation"] > before["metadata"]["generation"] else None

    after = wait_for(annotated, timeout=30, interval=0.5, what="the CronJob's jobTemplate annotated")
    print(f"\n[servicelink] port 3002 -> 4002: CronJob annotated {time.time() - patched:.2f}s after the patch")
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1, "patched once"
    assert after["spec"]["schedule"] == before["spec"]["schedule"]
    nxt = wait_for(
        lambda: finished_jobs(node, template_hash(after)), timeout=150, interval=1, what="the CronJob's next Job"
    )[0]
    answer = json.loads(node.kubectl("logs", "-n", GALLERY, f"job/{nxt}").stdout)
    print(f"[servicelink] its next Job, {nxt}, finished {time.time() - patched:.0f}s after the patch: {answer}")
    assert answer["url"] == "http://app-service:4002"
    assert answer["hops"][:2] == ["worker-cron", "app-service"]


def database_secret(password: str) -> dict[str, Any]:
    """The database's credentials, shared with the ServiceLink app-service-db."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "mongodb-credentials",
            "namespace": GALLERY,
            "labels": {"servicelink.dev/shared": "true"},
            "annotations": {"servicelink.dev/readable-by": "app-service-db"},
        },
        "stringData": {"username": "gallery", "password": password},
    }


def sha256(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()[:12]


def database_answer(node: Node) -> str:
    """What app-service's newest pod says of its database connection: the user and a digest of the password."""
    return str(call(node, "app-service", "http://localhost:3002/")["hops"][1])


def test_a_rotated_database_password_reaches_app_service_in_one_rollout(node: Node) -> None:
    """MONGODB_URL from the mongodb Service and a Secret: written to a Secret, read by app-service, rotated."""
    # Secret access, as the chart's secrets.enabled grants it.
    grant = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "servicelink-secrets"},
            "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch", "get", "create", "patch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "servicelink-secrets"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "servicelink-secrets"},
            "subjects": [{"kind": "ServiceAccount", "name": "servicelink", "namespace": SYSTEM}],
        },
    ]
    node.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": grant}))
    node.kubectl("set", "env", "-n", SYSTEM, "deploy/servicelink", "SERVICELINK_SECRETS=true")
    node.kubectl("-n", SYSTEM, "rollout", "status", "deploy/servicelink", "--timeout=180s")

    first, rotated = "f1rst:p@ss/%", "r0tated@p:ss%"
    link = {
        "key": "MONGODB_URL",
        "service": "mongodb",
        "scheme": "mongodb",
        "path": "/gallery",
        "credentials": {"secretName": "mongodb-credentials"},
    }
    servicelink = {
        "apiVersion": "servicelink.dev/v1alpha1",
        "kind": "ServiceLink",
        "metadata": {"name": "app-service-db", "namespace": GALLERY},
        "spec": {"configMapName": "app-service-db-config", "secretName": "app-service-db-secrets", "links": [link]},
    }
    node.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [database_secret(first), servicelink]}),
    )

    def written() -> bool:
        found = node.kubectl("get", "secret", "app-service-db-secrets", "-n", GALLERY, "-o", "json", check=False)
        return found.returncode == 0 and "MONGODB_URL" in (json.loads(found.stdout).get("data") or {})

    wait_for(written, timeout=60, interval=0.5, what="MONGODB_URL written to the Secret")
    env = [
        {"name": "MONGODB_URL", "valueFrom": {"secretKeyRef": {"name": "app-service-db-secrets", "key": "MONGODB_URL"}}}
    ]
    patch = [{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": env[0]}]
    node.kubectl("patch", "deploy", "app-service", "-n", GALLERY, "--type=json", "-p", json.dumps(patch))
    node.kubectl("-n", GALLERY, "rollout", "status", "deploy/app-service", "--timeout=180s")
    assert database_answer(node) == f"mongodb as gallery (password sha256 {sha256(first)})"
    before = generations(node)

    rotated_at = time.time()
    node.kubectl("apply", "-f", "-", input=json.dumps(database_secret(rotated)))
    wait_for(
        lambda: generations(node)["app-service"] > before["app-service"],
        timeout=60,
        interval=0.5,
        what="app-service rolled onto the rotated password",
    )
    node.kubectl("-n", GALLERY, "rollout", "status", "deploy/app-service", "--timeout=180s")
    answer = database_answer(node)
    print(f"\n[servicelink] password rotated: app-service's new pod answers {time.time() - rotated_at:.1f}s later")
    assert answer == f"mongodb as gallery (password sha256 {sha256(rotated)})"
    time.sleep(5)
    after = generations(node)
    assert after["app-service"] == before["app-service"] + 1, "rolled once"
    assert {k: v for k, v in after.items() if k != "app-service"} == {
        k: v for k, v in before.items() if k != "app-service"
    }, "only app-service reads MONGODB_URL"
    logs = node.kubectl("logs", "-n", SYSTEM, "deploy/servicelink").stdout
    assert not [password for password in (first, rotated) if password in logs], "a password in the operator's log"


def test_nothing_the_node_sent_crossed_its_link(node: Node, capture: Capture) -> None:
    """Since before ``up``: no frame from the node for anything but the link's /30, none of its ranges elsewhere."""
    frames, crossed = capture.snapshot()
    print(f"\n[servicelink] capture since before up: {capture.summary()}")
    assert frames > 0, f"the capture saw none of kubectl's calls over {HOST_LINK}"
    assert not crossed


def test_down_cleans_up_after_every_component_was_killed(node: Node) -> None:
    """Runs last: SIGKILL everything, then ``down`` must still leave nothing behind."""
    for name in running_components(node.state):
        for pid_file in (node.state / "run" / f"{name}.pid", node.state / "cp" / "logs" / f"{name}.pid"):
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
    down(state=node.state)
    assert leftovers(node.state) == []
    down(state=node.state)  # idempotent
    assert leftovers(node.state) == []


def _kill_up_when(ready: Callable[[Path], bool], state: Path) -> None:
    """Run ``up`` as ``hack/cluster.sh up`` does and SIGKILL it once ``ready`` holds for its state folder."""
    env = {**os.environ, "SERVICELINK_NODE_DIR": str(state)}
    process = subprocess.Popen([sys.executable, "-m", "servicelink.testing.node", "up"], env=env)
    try:
        wait_for(lambda: ready(state) or process.poll() is not None, timeout=120, interval=0.1, what="up's step")
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("step", "ready"),
    [
        ("containerd started", lambda state: (state / "run" / "containerd.pid").exists()),
        ("the API server started", lambda state: (state / "cp" / "logs" / "kube-apiserver.pid").exists()),
        ("kube-proxy started", lambda state: (state / "run" / "kube-proxy.pid").exists()),
    ],
)
def test_down_after_up_killed_halfway_leaves_the_host_as_it_was(
    node: Node, host_before: dict[str, str], step: str, ready: Callable[[Path], bool]
) -> None:
    """Runs after the node is down: SIGKILL ``up`` at a step, then ``down`` restores the host."""
    _kill_up_when(ready, node.state)
    down(state=node.state)
    assert leftovers(node.state) == []
    assert host_network_state() == host_before, f"the host changed after up killed with {step}"
