"""The install a user runs, against the real API server: `kubectl apply -k manifests/`, its RBAC, the gallery."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from objects import (
    SEED_CONFIG,
    data,
    gallery_conditions,
    gallery_configmaps,
    service,
    servicelink,
    set_port,
    wait_until_acted,
)
from objects import service_account_kubeconfig as service_account_kubeconfig_for
from widgets import GROUP, MAPPING, mapping, wait_ready, widget, widget_meta

from servicelink.kube import RBAC_RULES
from servicelink.render import render_hash
from servicelink.testing.fixtures import Cluster, start_operator_process, wait_for
from transcripts import assert_shows, shown_for, transcript

REPO = Path(__file__).resolve().parents[2]
HOW_TO = REPO / "docs" / "how-to" / "follow-any-kind.md"
API_PAGE = REPO / "docs" / "reference" / "api.md"
DESCRIBE = "kubectl describe servicelink gateway-service -n gallery"
NAMESPACE = "servicelink-system"
ACCOUNT = f"system:serviceaccount:{NAMESPACE}:servicelink"
GRANTED = [(group, resource, verb) for group, resource, verbs in RBAC_RULES for verb in verbs]
DENIED = [
    ("", "secrets", "get"),
    ("", "secrets", "list"),
    ("", "secrets", "watch"),
    ("", "pods", "delete"),
    ("apps", "deployments", "delete"),
    ("", "configmaps", "delete"),
    ("*", "*", "*"),
]


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    """`kubectl apply -k manifests/` once for this module; the result of the apply."""
    done = cluster.kubectl("apply", "-k", str(REPO / "manifests"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/servicelinks.servicelink.dev")
    return done


def can_i(cluster: Cluster, group: str, resource: str, verb: str, *scope: str) -> str:
    """What `kubectl auth can-i` answers for the operator's ServiceAccount: "yes" or "no"."""
    plural, _, subresource = resource.partition("/")
    target = "*" if plural == "*" else f"{plural}.{group}" if group else plural
    args = ["auth", "can-i", verb, target, *(scope or ("--all-namespaces",)), f"--as={ACCOUNT}"]
    if subresource:
        args.append(f"--subresource={subresource}")
    # can-i exits 1 on "no"; any other failure prints no answer.
    return cluster.kubectl(*args, check=False).stdout.strip()


def test_apply_k_installs_cleanly(cluster: Cluster, installed: subprocess.CompletedProcess[str]) -> None:
    # PodSecurity warns on a Deployment whose pods the namespace's "restricted" level would refuse.
    assert "PodSecurity" not in installed.stderr, installed.stderr
    assert "Warning" not in installed.stderr, installed.stderr
    crd = cluster.get("crd", "servicelinks.servicelink.dev")
    established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
    assert established[0]["status"] == "True"
    for kind, name in [
        ("serviceaccount", "servicelink"),
        ("deployment", "servicelink"),
        ("service", "servicelink-metrics"),
    ]:
        assert cluster.get(kind, name, "-n", NAMESPACE) is not None, f"{kind}/{name}"
    assert cluster.get("clusterrole", "servicelink") is not None
    assert cluster.get("clusterrolebinding", "servicelink") is not None
    # A second apply changes nothing: the manifests are what the server keeps.
    again = cluster.kubectl("apply", "-k", str(REPO / "manifests")).stdout
    assert all(line.endswith(" unchanged") for line in again.splitlines()), again


@pytest.mark.parametrize(("group", "resource", "verb"), GRANTED, ids=["/".join(t) for t in GRANTED])
def test_service_account_may(
    cluster: Cluster, installed: subprocess.CompletedProcess[str], group: str, resource: str, verb: str
) -> None:
    assert can_i(cluster, group, resource, verb) == "yes"


@pytest.mark.parametrize(("group", "resource", "verb"), DENIED, ids=["/".join(t) for t in DENIED])
def test_service_account_may_not(
    cluster: Cluster, installed: subprocess.CompletedProcess[str], group: str, resource: str, verb: str
) -> None:
    assert can_i(cluster, group, resource, verb) == "no"
    # Not even in its own namespace.
    assert can_i(cluster, group, resource, verb, "-n", NAMESPACE) == "no"


def can_user(cluster: Cluster, user: str, verb: str, resource: str, namespace: str, *extra: str) -> str:
    """What `kubectl auth can-i` answers for ``user`` in ``namespace``: "yes" or "no"."""
    done = cluster.kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", *extra, check=False)
    return done.stdout.strip()


@pytest.mark.controller_manager
def test_namespace_editors_get_servicelinks_and_viewers_may_only_read_them(
    cluster: Cluster, installed: subprocess.CompletedProcess[str], namespace: str
) -> None:
    bindings = {"alice": "edit", "ada": "admin", "victor": "view"}
    cluster.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": user, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            }
            for user, role in bindings.items()
        ]
    )
    servicelinks = "servicelinks.servicelink.dev"

    def can(user: str, verb: str, *extra: str) -> str:
        return can_user(cluster, user, verb, servicelinks, namespace, *extra)

    # The clusterrole-aggregation controller folds servicelink-edit and -view into the built-in roles.
    wait_for(
        lambda: can("alice", "create") == can("ada", "create") == can("victor", "get") == "yes",
        what="the aggregated rules in edit, admin and view",
    )
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        assert (can("alice", verb), can("ada", verb)) == ("yes", "yes"), verb
    for verb in ("get", "list", "watch"):
        assert can("victor", verb) == "yes", verb
    for verb in ("create", "update", "patch", "delete"):
        assert can("victor", verb) == "no", verb
    # Only the operator writes the status; editors may read it.
    for verb in ("update", "patch"):
        assert can("alice", verb, "--subresource=status") == "no", verb
    assert can("victor", "get", "--subresource=status") == "yes"
    # Editors could write the ConfigMaps and patch the workloads themselves: a ServiceLink adds no right.
    assert can_user(cluster, "alice", "patch", "configmaps", namespace) == "yes"
    assert can_user(cluster, "alice", "patch", "deployments.apps", namespace) == "yes"
    # The bindings hold in their namespace only.
    assert can_user(cluster, "alice", "create", servicelinks, "default") == "no"

    link = {
        "apiVersion": "servicelink.dev/v1alpha1",
        "kind": "ServiceLink",
        "metadata": {"name": "by-alice", "namespace": namespace},
        "spec": {"configMapName": "by-alice", "links": [{"key": "A", "service": "a"}]},
    }
    cluster.kubectl("create", "-f", "-", "--as=alice", input=json.dumps(link))
    seen = cluster.kubectl("get", servicelinks, "-n", namespace, "-o", "name", "--as=victor").stdout.split()
    assert seen == ["servicelink.servicelink.dev/by-alice"]
    refused = cluster.kubectl("delete", servicelinks, "by-alice", "-n", namespace, "--as=victor", check=False)
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()
    # Gone before the next test starts an operator, which would find it in a terminating namespace.
    cluster.kubectl("delete", servicelinks, "by-alice", "-n", namespace, "--as=alice")


@pytest.fixture
def service_account_kubeconfig(cluster: Cluster, installed: Any, tmp_path: Path) -> Path:
    """A kubeconfig holding a token of the installed ServiceAccount, as the pod would have."""
    return service_account_kubeconfig_for(cluster, NAMESPACE, "servicelink", tmp_path / "servicelink.kubeconfig")


@pytest.fixture
def gallery(cluster: Cluster, installed: Any) -> Iterator[str]:
    """examples/gallery applied with `kubectl apply -k`; its namespace deleted afterwards."""
    cluster.kubectl("apply", "-k", str(REPO / "examples" / "gallery"))
    yield "gallery"
    cluster.kubectl("delete", "namespace", "gallery", "--wait=false", check=False)


def config_hash(cluster: Cluster, namespace: str, deployment: str) -> str | None:
    """The pod-template annotation a rollout sets; None before any."""
    template = cluster.get("deployment", deployment, "-n", namespace)["spec"]["template"]
    value: str | None = (template["metadata"].get("annotations") or {}).get("servicelink.dev/config-hash")
    return value


def test_operator_as_its_service_account_serves_the_gallery(
    cluster: Cluster, service_account_kubeconfig: Path, gallery: str, tmp_path: Path
) -> None:
    # The RBAC above is enough to run: every watch and write made as the pod would make it.
    whoami = cluster.kubectl("--kubeconfig", str(service_account_kubeconfig), "auth", "whoami", "-o", "json").stdout
    assert json.loads(whoami)["status"]["userInfo"]["username"] == ACCOUNT
    process = start_operator_process(service_account_kubeconfig, tmp_path / "operator.log")
    try:
        wait_for(lambda: gallery_configmaps(cluster, gallery) == SEED_CONFIG, timeout=30, what="the seed's ConfigMaps")
        wait_for(
            lambda: all(
                c.get("Ready") == c.get("RolledOut") == "True" for c in gallery_conditions(cluster, gallery).values()
            ),
            timeout=30,
            what="Ready and RolledOut on every ServiceLink",
        )
        # A renumbered port changes a value: the gateway, which reads it, is rolled by a patch.
        cluster.kubectl(
            "patch", "service", "auth-service", "-n", gallery, "--type=json",
            "-p", '[{"op": "replace", "path": "/spec/ports/0/port", "value": 4001}]',
        )  # fmt: skip
        wait_for(lambda: config_hash(cluster, gallery, "gateway-service"), timeout=30, what="the gateway's config-hash")
        gateway = gallery_configmaps(cluster, gallery)["gateway-service-config"]
        assert gateway == {"AUTH_SERVICE_URL": "http://auth-service:4001", "APP_SERVICE_URL": "http://app-service:3002"}
        assert config_hash(cluster, gallery, "app-service") is None
        # Deletion waits for the operator to lift its finalizer, a patch made as the ServiceAccount.
        cluster.kubectl("delete", "servicelink", "worker-service", "-n", gallery, "--timeout=30s")
        # A deleted Service: the last value stays, and the ServiceLink says why, as api.md's transcript shows.
        cluster.kubectl("delete", "service", "app-service", "-n", gallery)
        wait_for(
            lambda: cluster.get("events", "-n", gallery, "--field-selector", "reason=ServiceNotFound")["items"],
            timeout=30,
            what="the ServiceNotFound Event",
        )
        described = cluster.kubectl("describe", "servicelink", "gateway-service", "-n", gallery).stdout
        shown = shown_for(transcript(API_PAGE, "After `kubectl delete service app-service -n gallery`"), DESCRIBE)
        status, events = shown.split("Events:\n")
        assert_shows(status, described.split("Events:")[0], DESCRIBE)
        for event in events.splitlines()[2:]:  # Events come in the order of their timestamps, a second apart at best
            assert_shows(event, described.split("Events:")[1], DESCRIBE)
        assert "forbidden" not in process.log().lower()
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- operator log (tail) ---\n{process.log()[-6000:]}") from None
    finally:
        process.stop()


def how_to_grant(plural: str, group: str) -> list[dict[str, Any]]:
    """The ClusterRole and its binding that the how-to has a manifests/ user apply, for ``plural`` of ``group``
    in place of its CloneSets."""
    section = HOW_TO.read_text().split("## Map it with manifests/", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    block = block.replace("clonesets", plural).replace("apps.kruise.io", group)
    return [doc for doc in yaml.safe_load_all(block) if doc["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def show(cluster: Cluster, *args: str) -> str:
    """Run ``kubectl *args`` and print it as a terminal shows it (the how-to's figures come from these)."""
    out = cluster.kubectl(*args, check=False).stdout
    print(f"\n$ kubectl {' '.join(args)}\n{out}", end="", file=sys.stderr)
    return out


def test_a_mapped_kind_is_forbidden_to_the_service_account_until_granted_as_the_how_to_says(
    cluster: Cluster, service_account_kubeconfig: Path, widgets: None, namespace: str, tmp_path: Path
) -> None:
    grant = how_to_grant("widgets", GROUP)
    assert [doc["kind"] for doc in grant] == ["ClusterRole", "ClusterRoleBinding"]
    configmap = "gateway-config"
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            widget("reads-auth", namespace, {"AUTH_URL": (configmap, "AUTH_SERVICE_URL")}),
            servicelink("gateway", namespace, configmap, {"key": "AUTH_SERVICE_URL", "service": "auth-service"}),
            mapping(),
        ]
    )
    can_i_patch = ("auth", "can-i", "patch", MAPPING, "--all-namespaces", f"--as={ACCOUNT}")
    # No resync in the test's time: the grant is found by the touch below, or by the mapping's own re-check.
    process = start_operator_process(
        service_account_kubeconfig, tmp_path / "operator.log", SERVICELINK_RESYNC_SECONDS="600"
    )
    try:
        forbidden = wait_ready(cluster, "Forbidden")
        assert forbidden["status"] == "False"
        assert f"may not list, watch, patch {MAPPING}: " in forbidden["message"]
        assert "the chart's workloadMappings value" in forbidden["message"]
        assert show(cluster, *can_i_patch) == "no\n"
        table = show(cluster, "get", "workloadmappings")
        assert table.splitlines()[1].split()[:6] == [MAPPING, "Widget", "v1", ".spec.template", "False", "Forbidden"]
        # Not followed: a changed value reaches the ConfigMap and rolls no Widget.
        before = widget_meta(cluster, namespace, "reads-auth")
        set_port(cluster, namespace, "auth-service", 4001)
        wait_for(lambda: "4001" in str(data(cluster, namespace, configmap)), what="the ConfigMap at 4001")
        wait_until_acted(cluster, namespace, "gateway", "auth-service")
        assert widget_meta(cluster, namespace, "reads-auth") == before

        cluster.apply(grant)
        wait_for(lambda: cluster.kubectl(*can_i_patch, check=False).stdout == "yes\n", what="the grant")
        show(cluster, *can_i_patch)
        cluster.kubectl("annotate", "slwm", MAPPING, "servicelink.dev/checked=1", "--overwrite")
        watching = wait_ready(cluster, "Watching", timeout=10)
        assert watching["status"] == "True"
        table = show(cluster, "get", "workloadmappings")
        assert table.splitlines()[1].split()[4:6] == ["True", "Watching"]
        assert widget_meta(cluster, namespace, "reads-auth") == before  # followed, not rolled: nothing changed

        set_port(cluster, namespace, "auth-service", 4002)
        expected = render_hash({"AUTH_SERVICE_URL": "http://auth-service:4002"})
        got = wait_for(lambda: widget_meta(cluster, namespace, "reads-auth")[2], timeout=10, what="the Widget rolled")
        assert got == expected
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- operator log (tail) ---\n{process.log()[-6000:]}") from None
    finally:
        process.stop()
        cluster.kubectl("delete", *(f"{d['kind']}/{d['metadata']['name']}" for d in grant), "--ignore-not-found")


def test_operator_serves_metrics_and_health(cluster: Cluster, crd: Any, namespace: str, tmp_path: Path) -> None:
    """`servicelink run`, as the manifests start it, answers on both ports after a reconcile."""
    import urllib.request

    from objects import service, servicelink

    process = start_operator_process(cluster.kubeconfig, tmp_path / "operator.log")
    try:
        cluster.apply(
            [
                service("auth-service", namespace, 3001),
                servicelink("gateway", namespace, "gateway-config", {"key": "A", "service": "auth-service"}),
            ]
        )
        wait_for(lambda: cluster.get("configmap", "gateway-config", "-n", namespace), what="a reconcile")

        def scrape(port: int, path: str) -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return str(response.read().decode())

        assert scrape(process.health_port, "/healthz")
        metrics = wait_for(
            lambda: (
                (m := scrape(process.metrics_port, "/metrics"))
                and 'servicelink_reconciles_total{result="ok"}' in m
                and m
            ),
            what="reconcile metrics",
        )
        assert "servicelink_reconcile_duration_seconds_bucket" in metrics
        assert "servicelink_values_changed_total 1.0" in metrics
        assert 'servicelink_propagation_seconds_count{stage="configmap"} 1.0' in metrics
    finally:
        process.stop()
