"""The install path users take, on a real node: the image, ``kubectl apply -k manifests/``, the gallery as pods.

The tests run in file order on one node and build on each other, as a user's
session would: install the operator, apply the gallery, change a port, restart
the operator. The last one kills every component and checks ``down`` still
leaves the host clean.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from servicelink.testing.fixtures import wait_for
from servicelink.testing.node import Node, NodeError, down, leftovers, running_components, up

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "servicelink-system"
GALLERY = "gallery"


def get(node: Node, *args: str) -> Any:
    return json.loads(node.kubectl("get", *args, "-o", "json").stdout)


def operator_pod(node: Node) -> dict[str, Any]:
    pods = get(node, "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=servicelink")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, [p["metadata"]["name"] for p in pods]
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
    with pytest.raises(NodeError, match="port 10250 \\(kubelet\\)"):
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
    app = {"image": "ghcr.io/servicelink/gallery-app:0.1.0", "imagePullPolicy": "IfNotPresent"}
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
    time.sleep(2)
    late = probes(node, HANDWRITTEN_AUTH, patched + seconds)
    failures = sum(not c["ok"] for c in late)
    print(f"[servicelink] the hand-written gateway failed {failures} of {len(late)} calls since then")
    assert late
    assert failures == len(late)


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
    wait_for(lambda: operator_pod(node)["metadata"]["name"] != old, timeout=60, what="a new operator pod")
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
