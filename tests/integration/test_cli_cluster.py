"""servicelink doctor, adopt and leave against the real API server and kube-controller-manager."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from objects import (
    condition,
    data,
    deployment,
    generation,
    service,
    servicelink,
    shared_configmap,
    sl,
    wait_until_acted,
)

from servicelink.testing.fixtures import Cluster, OperatorProcess, fresh_namespace, wait_for
from transcripts import assert_shows, commands, shown_for, transcript

pytestmark = pytest.mark.controller_manager
SERVICELINK = str(Path(sys.executable).with_name("servicelink"))
DOCS = Path(__file__).resolve().parents[2] / "docs"
UNINSTALL_PAGE = DOCS / "getting-started" / "uninstall.md"
PAGE_NAMESPACE = "shop"  # the namespace uninstall.md's transcript names in the test's stead
SEED = {"AUTH_SERVICE_URL": "http://auth-service:3001", "APP_SERVICE_URL": "http://app-service:3002"}


def servicelink_cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SERVICELINK, *args, "--kubeconfig", str(cluster.kubeconfig)], capture_output=True, text=True, timeout=60
    )


def configmap(name: str, namespace: str, values: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": values}


def ready_endpoints(name: str, namespace: str, port: int | tuple[str, int]) -> list[dict[str, Any]]:
    """A Service without a selector, and the EndpointSlice of one ready address a controller would write."""
    plain = service(name, namespace, port)
    del plain["spec"]["selector"]
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-1", "namespace": namespace, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.2.3"], "conditions": {"ready": True}}],
        "ports": [{"name": port[0], "port": port[1]} if isinstance(port, tuple) else {"port": port}],
    }
    return [plain, endpoint_slice]


def web(namespace: str, env: dict[str, str], name: str = "web") -> dict[str, Any]:
    body = deployment(name, namespace, env_from=f"{name}-config", replicas=1)  # doctor reads its pod
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return body


def pods(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]
    return items


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    with fresh_namespace(cluster) as name:
        yield name


def test_doctor_reports_each_problem_with_its_fix(
    cluster: Cluster, namespace: str, other_namespace: str, crd: Path
) -> None:
    cluster.apply(
        [
            *ready_endpoints("api", namespace, 8080),
            service("idle", namespace, 80),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "payments", "namespace": namespace},
                "spec": {"type": "ExternalName", "externalName": "pay.example.com"},
            },
            *ready_endpoints("shared", other_namespace, 80),
            configmap("web-config", namespace, {"API_URL": "http://api:8080", "STALE_URL": "http://api:8080"}),
            web(
                namespace,
                {
                    "MISSING_URL": "http://nope:80",
                    "BAD_PORT": "api:9999",
                    "IDLE_URL": "http://idle:80",
                    "SHARED_URL": "http://shared:80",
                    "PAY_URL": "https://payments:443",
                    "LOG_LEVEL": "info",
                },
            ),
        ]
    )
    (pod,) = wait_for(lambda: pods(cluster, namespace, "web"), what="the web pod")
    # No kubelet here: say, as one would, that its container started; the change comes a second later.
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    running = {"name": "app", "ready": True, "restartCount": 0, "image": "busybox:1.36", "imageID": ""}
    status = {"phase": "Running", "containerStatuses": [running | {"state": {"running": {"startedAt": started}}}]}
    cluster.kubectl(
        "patch",
        "pod",
        pod["metadata"]["name"],
        "-n",
        namespace,
        "--subresource=status",
        "-p",
        json.dumps({"status": status}),
    )
    time.sleep(1.1)
    cluster.kubectl(
        "patch", "configmap", "web-config", "-n", namespace, "-p", '{"data": {"STALE_URL": "http://api:8080/v2"}}'
    )

    text = servicelink_cli(cluster, "doctor", "-n", namespace)
    assert text.returncode == 1, text.stderr
    reported = json.loads(servicelink_cli(cluster, "doctor", "-n", namespace, "-o", "json").stdout)
    (report,) = reported
    assert (report["kind"], report["name"]) == ("Deployment", "web")
    checks = {f["variable"]: [p["check"] for p in f["problems"]] for f in report["findings"]}
    assert checks == {
        "API_URL": [],
        "STALE_URL": ["StalePods"],
        "MISSING_URL": ["ServiceNotFound"],
        "BAD_PORT": ["PortNotFound"],
        "IDLE_URL": ["NoReadyEndpoints"],
        "SHARED_URL": ["ShortNameAcrossNamespaces"],
        "PAY_URL": [],
    }
    assert f"shared.{other_namespace}.svc.cluster.local" in text.stdout
    assert f"{namespace}/payments -> pay.example.com" in text.stdout
    assert "fix: kubectl rollout restart deployment/web" in text.stdout
    assert "fix: create the Service, or fix the name" in text.stdout
    assert text.stdout.rstrip().endswith("7 service addresses in 1 workloads checked: 5 problems")


def test_doctor_prints_what_the_troubleshooting_page_shows(
    cluster: Cluster, namespace: str, other_namespace: str, crd: Path
) -> None:
    """A hand-written ConfigMap with a wrong port, and a short name that resolves only in another namespace."""
    cluster.apply(
        [
            *ready_endpoints("app-service", namespace, ("http", 3002)),
            *ready_endpoints("auth-service", namespace, 3001),
            *ready_endpoints("mongodb", other_namespace, 27017),
            configmap(
                "gateway-service-config",
                namespace,
                {"APP_SERVICE_URL": "http://app-service:3003", "AUTH_SERVICE_URL": "http://auth-service:3001"},
            ),
            web(namespace, {"MONGODB_HOST": "mongodb"}, name="gateway-service"),
        ]
    )
    block = transcript(DOCS / "how-to" / "troubleshoot.md", "another namespace (a real run")
    done = servicelink_cli(cluster, "doctor", "-n", namespace)
    assert str(done.returncode) == shown_for(block, "echo $?").strip(), done.stderr
    printed = done.stdout.replace(namespace, "legacy").replace(other_namespace, "gallery")
    assert_shows(shown_for(block, "servicelink doctor -n legacy"), printed, "servicelink doctor")


def test_doctor_on_a_healthy_namespace_exits_0(cluster: Cluster, namespace: str, crd: Path) -> None:
    cluster.apply(
        [
            *ready_endpoints("api", namespace, 8080),
            configmap("web-config", namespace, {"API_URL": "http://api:8080"}),
            web(namespace, {"API_HOST": "api"}),
        ]
    )
    wait_for(lambda: pods(cluster, namespace, "web"), what="the web pod")
    done = servicelink_cli(cluster, "doctor", "-n", namespace, "deployment/web")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("2 service addresses in 1 workloads checked: 0 problems")


def test_adopting_the_seeds_configmap_changes_no_value_and_rolls_nothing(
    cluster: Cluster, namespace: str, operator: Any
) -> None:
    cluster.apply([service("auth-service", namespace, 3001), service("app-service", namespace, 3002)])
    # Written by hand, as the seed does.
    cluster.kubectl("create", "-f", "-", input=json.dumps(configmap("gateway-service-config", namespace, SEED)))
    cluster.apply(deployment("gateway-service", namespace, env_from="gateway-service-config"))
    first = generation(cluster, namespace, "gateway-service")

    proposed = servicelink_cli(cluster, "adopt", "-n", namespace, "configmap/gateway-service-config")
    assert proposed.returncode == 0, proposed.stderr
    assert "owned by other field managers: APP_SERVICE_URL by kubectl-create; AUTH_SERVICE_URL by kubectl-create" in (
        proposed.stderr
    )
    # The owner shares the ConfigMap with the ServiceLink adopt proposes, as adopt says to.
    share = (
        f"kubectl annotate configmap gateway-service-config -n {namespace} "
        "servicelink.dev/writable-by=gateway-service-config"
    )
    assert share in proposed.stderr
    cluster.kubectl(*share.split()[1:])
    handover = servicelink_cli(cluster, "adopt", "-n", namespace, "configmap/gateway-service-config", "--handover")
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=servicelink", "--force-conflicts", "-f", "-", input=handover.stdout
    )
    cluster.kubectl("apply", "-f", "-", input=proposed.stdout)

    wait_for(
        lambda: condition(sl(cluster, namespace, "gateway-service-config"), "Ready").get("status") == "True",
        what="the adopted ServiceLink Ready",
    )
    wait_until_acted(cluster, namespace, "gateway-service-config", "auth-service")  # a reconcile after the adoption
    body = sl(cluster, namespace, "gateway-service-config")
    assert body["status"]["values"] == SEED
    assert condition(body, "Synced")["reason"] == "ConfigMapUpToDate"
    assert data(cluster, namespace, "gateway-service-config") == SEED
    assert generation(cluster, namespace, "gateway-service") == first
    template = cluster.get("deployment", "gateway-service", "-n", namespace)["spec"]["template"]
    assert "servicelink.dev/config-hash" not in (template["metadata"].get("annotations") or {})
    events = cluster.get("events", "-n", namespace, "--field-selector", "reason=ValueChanged")["items"]
    assert events == []


def managers(cluster: Cluster, namespace: str, name: str) -> dict[str, set[str]]:
    """Each field manager of a ConfigMap, and the data keys it owns."""
    body = cluster.get("configmap", name, "-n", namespace, "--show-managed-fields")
    return {
        entry["manager"]: {f.removeprefix("f:") for f in (entry.get("fieldsV1") or {}).get("f:data") or {}}
        for entry in body["metadata"]["managedFields"]
    }


def test_after_leave_deleting_the_servicelinks_keeps_every_configmap_and_value(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    link = {"key": "AUTH_SERVICE_URL", "service": "auth-service"}
    cluster.apply(
        shared_configmap("shared-config", namespace, "gateway", {"LOG_LEVEL": "debug"}), "--field-manager=helm"
    )
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            servicelink("gateway", namespace, "shared-config", link),
            servicelink("own", namespace, "own-config", link),
        ]
    )
    shared = {"LOG_LEVEL": "debug", "AUTH_SERVICE_URL": "http://auth-service:3001"}
    wait_for(lambda: data(cluster, namespace, "shared-config") == shared, what="the co-managed ConfigMap")
    wait_for(lambda: data(cluster, namespace, "own-config"), what="the owned ConfigMap")
    wait_for(lambda: sl(cluster, namespace, "gateway")["metadata"].get("finalizers"), what="the finalizer")
    operator_process.stop()  # uninstalling begins by stopping the operator, as uninstall.md says

    # The page's commands, in its namespace's stead; each prints what the page shows.
    ran: dict[str, subprocess.CompletedProcess[str]] = {}
    for shown in commands(transcript(UNINSTALL_PAGE, "This is a real run from")):
        program, *args = shlex.split(shown.command.replace(f"-n {PAGE_NAMESPACE}", f"-n {namespace}"))
        done = servicelink_cli(cluster, *args) if program == "servicelink" else cluster.kubectl(*args)
        assert done.returncode == 0, done.stderr
        printed = (done.stdout + done.stderr).replace(f"{namespace}/", f"{PAGE_NAMESPACE}/")
        assert_shows(shown.output, printed, shown.command)
        ran[" ".join(args)] = done
        if args == ["leave", "-n", namespace, "--dry-run"]:
            assert managers(cluster, namespace, "own-config")["servicelink"] == {"AUTH_SERVICE_URL"}

    assert "dry run" in ran[f"leave -n {namespace} --dry-run"].stderr
    left = ran[f"leave -n {namespace}"]
    assert sorted(left.stdout.splitlines()) == [
        f"ConfigMap {namespace}/own-config: ownerReference to ServiceLink own removed; "
        "AUTH_SERVICE_URL handed to field manager servicelink-left",
        f"ConfigMap {namespace}/shared-config: AUTH_SERVICE_URL handed to field manager servicelink-left",
        f"ServiceLink {namespace}/gateway: finalizer servicelink.dev/configmap-keys removed",
    ], left.stdout
    for name in ("own-config", "shared-config"):
        owned = managers(cluster, namespace, name)
        assert "AUTH_SERVICE_URL" not in owned.get("servicelink", set()), owned
        assert owned["servicelink-left"] == {"AUTH_SERVICE_URL"}
    assert not cluster.get("configmap", "own-config", "-n", namespace)["metadata"].get("ownerReferences")
    again = servicelink_cli(cluster, "leave", "-n", namespace)
    assert (again.returncode, again.stdout) == (0, ""), again.stderr
    assert "nothing of servicelink's to remove" in again.stderr

    # Deleting the CRD deletes every ServiceLink, as this does; the garbage collector has nothing to follow.
    cluster.kubectl("delete", "servicelinks", "--all", "-n", namespace, "--wait=true", "--timeout=30s")
    time.sleep(3)  # kube-controller-manager's garbage collector acts within a second or two
    assert data(cluster, namespace, "own-config") == {"AUTH_SERVICE_URL": "http://auth-service:3001"}
    assert data(cluster, namespace, "shared-config") == shared


GADGETS = "gadgets.cli.test.servicelink.dev"  # a CRD of this test's own, not the operator tests' Widget
GADGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": GADGETS},
    "spec": {
        "group": "cli.test.servicelink.dev",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def workload_mapping(name: str, kind: str, template: str) -> dict[str, Any]:
    return {
        "apiVersion": "servicelink.dev/v1alpha1",
        "kind": "WorkloadMapping",
        "metadata": {"name": name},
        "spec": {"kind": kind, "version": "v1", "template": template},
    }


@pytest.fixture
def gadgets(cluster: Cluster, crd: Path) -> Iterator[list[str]]:
    """The Gadget CRD, a mapping of it whose pod template sits at .spec.run.template, and a mapping of a kind
    nobody serves; the names of the mappings. All three deleted afterwards (cluster-scoped)."""
    cluster.apply(GADGET_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{GADGETS}")
    wait_for(lambda: cluster.kubectl("get", "gadgets", "-A", check=False).returncode == 0, what="gadgets served")
    mappings = [
        workload_mapping(GADGETS, "Gadget", ".spec.run.template"),
        workload_mapping("sprockets.cli.test.servicelink.dev", "Sprocket", ".spec.template"),
    ]
    cluster.apply(mappings)
    names = [m["metadata"]["name"] for m in mappings]
    yield names
    cluster.kubectl("delete", "workloadmappings", *names, "--wait=true", check=False)
    cluster.kubectl("delete", "crd", GADGETS, "--wait=true", check=False)


def test_graph_and_doctor_read_the_kinds_workload_mappings_map(
    cluster: Cluster, namespace: str, gadgets: list[str]
) -> None:
    spec = web(namespace, {"API_URL": "http://api:8080", "GONE_URL": "http://gone:80"})["spec"]
    gadget = {
        "apiVersion": "cli.test.servicelink.dev/v1",
        "kind": "Gadget",
        "metadata": {"name": "crunch", "namespace": namespace},
        "spec": {"selector": spec["selector"], "run": {"template": spec["template"]}},
    }
    cluster.apply([*ready_endpoints("api", namespace, 8080), configmap("web-config", namespace, {}), gadget])

    doctor_run = servicelink_cli(cluster, "doctor", "-n", namespace, "gadgets.cli.test.servicelink.dev/crunch")
    assert doctor_run.returncode == 1, doctor_run.stdout + doctor_run.stderr
    assert doctor_run.stdout.splitlines()[0] == f"Gadget.cli.test.servicelink.dev {namespace}/crunch"
    assert "ServiceNotFound: Service" in doctor_run.stdout
    not_served = (
        "note: WorkloadMapping sprockets.cli.test.servicelink.dev: the API server serves no sprockets in"
        " cli.test.servicelink.dev/v1; none read"
    )
    assert not_served in doctor_run.stderr.splitlines()

    graph_run = servicelink_cli(cluster, "graph", "-n", namespace, "-o", "json")
    assert graph_run.returncode == 0, graph_run.stderr
    edges = {(e["source"], e["key"], e["state"]) for e in json.loads(graph_run.stdout)["edges"]}
    source = f"Gadget_cli_test_servicelink_dev_{namespace.replace('-', '_')}_crunch"
    assert edges == {(source, "API_URL (hand-written)", "resolved"), (source, "GONE_URL (hand-written)", "not found")}
    assert not_served in graph_run.stderr.splitlines()
