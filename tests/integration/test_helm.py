"""The Helm install a platform team runs, against the real API server: charts/servicelink, the seed's gallery
chart on it, an upgrade, a refused value and the uninstall.

No node runs pods here, so the operator is the Deployment object the chart creates plus `servicelink run`
started as the chart's ServiceAccount, making every call its pod would make.
"""

from __future__ import annotations

import shlex
import subprocess
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from objects import (
    GALLERY_SERVICELINKS,
    SEED_CONFIG,
    gallery_conditions,
    gallery_configmaps,
    service_account_kubeconfig,
)

from servicelink.kube import RBAC_RULES
from servicelink.testing.assets import ensure_helm
from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for
from transcripts import assert_shows, commands, transcript

pytestmark = pytest.mark.controller_manager

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "servicelink"
GALLERY_CHART = REPO / "examples" / "gallery-helm"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# Not "servicelink": its objects are named helm-test-servicelink, beside those `kubectl apply -k manifests/` makes.
RELEASE = "helm-test"
NAMESPACE = "servicelink-system"  # the release's namespace in install.md, where the tests make a fresh one
INSTALL_PAGE = REPO / "docs" / "getting-started" / "install.md"
OPERATOR = f"{RELEASE}-servicelink"
CLUSTER_ROLES = (OPERATOR, f"{OPERATOR}-edit", f"{OPERATOR}-view")
CRD_NAME = "servicelinks.servicelink.dev"

Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def helm(cluster: Cluster) -> Helm:
    """Run the real helm against the session's cluster; on failure, raise with its stderr."""
    binary = ensure_helm()

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [binary, "--kubeconfig", str(cluster.kubeconfig), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    return run


@pytest.fixture(scope="module")
def gallery_namespace() -> str:
    return f"gallery-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def release_installed(cluster: Cluster, helm: Helm) -> Iterator[tuple[str, str]]:
    """`helm install` of charts/servicelink with its defaults into a fresh namespace; that namespace, and what
    the install printed."""
    namespace = f"helm-{uuid.uuid4().hex[:8]}"
    done = helm("install", RELEASE, str(CHART), "--namespace", namespace, "--create-namespace")
    yield namespace, done.stdout
    helm("uninstall", RELEASE, "--namespace", namespace, check=False)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def release(release_installed: tuple[str, str]) -> str:
    return release_installed[0]


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, release: str, gallery_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator the release runs: `servicelink run` as its ServiceAccount, watching the gallery's namespace."""
    folder = tmp_path_factory.mktemp("helm-operator")
    kubeconfig = service_account_kubeconfig(cluster, release, OPERATOR, folder / "kubeconfig")
    process = start_operator_process(kubeconfig, folder / "operator.log", SERVICELINK_NAMESPACES=gallery_namespace)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def gallery(cluster: Cluster, helm: Helm, operator: OperatorProcess, gallery_namespace: str) -> Iterator[str]:
    """`helm install` of examples/gallery-helm; its namespace."""
    done = helm("install", "gallery", str(GALLERY_CHART), "--namespace", gallery_namespace, "--create-namespace")
    (shown,) = page_shows("helm install gallery examples/gallery-helm --namespace gallery --create-namespace")
    assert_shows(shown, done.stdout.replace(gallery_namespace, "gallery"), "helm install gallery")
    yield gallery_namespace
    helm("uninstall", "gallery", "--namespace", gallery_namespace, check=False)
    cluster.kubectl("delete", "namespace", gallery_namespace, "--wait=false", check=False)


def page_shows(command: str) -> list[str]:
    """What install.md's Helm transcript shows after each ``$ command`` (the test's names in the page's stead)."""
    block = transcript(INSTALL_PAGE, "A real run on the local control plane (helm")
    return [shown.output for shown in commands(block) if shown.command == command]


def as_on_the_page(printed: str, release: str) -> str:
    """What helm or kubectl printed for the tests' release, with the names install.md's transcript uses."""
    return printed.replace(OPERATOR, "servicelink").replace(RELEASE, "servicelink").replace(release, NAMESPACE)


def release_objects(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """What the operator's release made, by kind/name; None for what does not exist."""
    return {
        "serviceaccount": cluster.get("serviceaccount", OPERATOR, "-n", namespace),
        "deployment": cluster.get("deployment", OPERATOR, "-n", namespace),
        "service": cluster.get("service", f"{OPERATOR}-metrics", "-n", namespace),
        "clusterrolebinding": cluster.get("clusterrolebinding", OPERATOR),
        **{f"clusterrole/{name}": cluster.get("clusterrole", name) for name in CLUSTER_ROLES},
    }


def can_i(cluster: Cluster, namespace: str, group: str, resource: str, verb: str) -> str:
    plural, _, subresource = resource.partition("/")
    target = f"{plural}.{group}" if group else plural
    args = ["auth", "can-i", verb, target, "--all-namespaces", f"--as=system:serviceaccount:{namespace}:{OPERATOR}"]
    if subresource:
        args.append(f"--subresource={subresource}")
    return cluster.kubectl(*args, check=False).stdout.strip()


def test_install_creates_the_release_and_its_account_may_do_exactly_what_the_operator_does(
    cluster: Cluster, helm: Helm, release_installed: tuple[str, str]
) -> None:
    release, printed = release_installed
    (shown,) = page_shows(f"helm install servicelink charts/servicelink --namespace {NAMESPACE} --create-namespace")
    assert_shows(shown, as_on_the_page(printed, release), "helm install")
    assert "STATUS: deployed" in helm("status", RELEASE, "--namespace", release).stdout
    objects = release_objects(cluster, release)
    assert [name for name, body in objects.items() if body is None] == []
    for body in objects.values():
        assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert body["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    (container,) = objects["deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/servicelink/servicelink:{VERSION}"
    assert cluster.get("poddisruptionbudget", OPERATOR, "-n", release) is None
    for group, resource, verbs in RBAC_RULES:
        for verb in verbs:
            assert can_i(cluster, release, group, resource, verb) == "yes", (group, resource, verb)
    assert can_i(cluster, release, "", "secrets", "get") == "no"


def test_the_gallery_charts_servicelinks_become_ready_and_follow_a_port_without_a_release(
    cluster: Cluster, helm: Helm, gallery: str, operator: OperatorProcess
) -> None:
    try:
        wait_for(lambda: gallery_configmaps(cluster, gallery) == SEED_CONFIG, timeout=60, what="the seed's ConfigMaps")
        wait_for(
            lambda: all(c.get("Ready") == "True" for c in gallery_conditions(cluster, gallery).values()),
            timeout=60,
            what="Ready on every ServiceLink",
        )
        (shown,) = page_shows("kubectl get servicelinks -n gallery")
        assert_shows(shown, cluster.kubectl("get", "servicelinks", "-n", gallery).stdout, "kubectl get servicelinks")
        data_before, data_after = page_shows(
            "kubectl get configmap gateway-service-config -n gallery -o jsonpath='{.data}'"
        )
        gateway_data = ("get", "configmap", "gateway-service-config", "-n", gallery, "-o", "jsonpath={.data}")
        assert_shows(data_before, cluster.kubectl(*gateway_data).stdout, "the ConfigMap's data")
        # The ConfigMaps are the ServiceLinks' now, not the release's.
        for name in SEED_CONFIG:
            metadata = cluster.get("configmap", name, "-n", gallery)["metadata"]
            assert [owner["kind"] for owner in metadata["ownerReferences"]] == ["ServiceLink"]
            assert "meta.helm.sh/release-name" not in (metadata.get("annotations") or {})
        patch = '[{"op": "replace", "path": "/spec/ports/0/port", "value": 4001}]'
        patched = cluster.kubectl("patch", "service", "auth-service", "-n", gallery, "--type=json", "-p", patch)
        (shown,) = page_shows(f"kubectl patch service auth-service -n gallery --type=json -p '{patch}'")
        assert_shows(shown, patched.stdout, "kubectl patch")
        wait_for(
            lambda: (
                gallery_configmaps(cluster, gallery)["gateway-service-config"]
                == {"AUTH_SERVICE_URL": "http://auth-service:4001", "APP_SERVICE_URL": "http://app-service:3002"}
            ),
            timeout=30,
            what="the new port in gateway-service-config",
        )
        assert_shows(data_after, cluster.kubectl(*gateway_data).stdout, "the ConfigMap's data after the change")
        history = helm("history", "gallery", "--namespace", gallery, "--output", "json").stdout
        assert history.count('"revision"') == 1, "the port change took no new release"
        (shown,) = page_shows("helm history gallery -n gallery")
        assert_shows(shown, helm("history", "gallery", "--namespace", gallery).stdout, "helm history")
        assert "forbidden" not in operator.log().lower()
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- operator log (tail) ---\n{operator.log()[-6000:]}") from None


def replicasets(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    """The operator's ReplicaSets, which kube-controller-manager makes from its Deployment."""
    found: list[dict[str, Any]] = cluster.get("replicasets", "-n", namespace)["items"]
    return found


def log_format(replicaset: dict[str, Any]) -> str:
    (container,) = replicaset["spec"]["template"]["spec"]["containers"]
    return next(e["value"] for e in container["env"] if e["name"] == "SERVICELINK_LOG_FORMAT")


def test_upgrade_with_a_changed_value_rolls_the_operator(cluster: Cluster, helm: Helm, release: str) -> None:
    (first,) = wait_for(lambda: replicasets(cluster, release), timeout=60, what="the operator's first ReplicaSet")
    assert log_format(first) == "text"
    upgraded = helm("upgrade", RELEASE, str(CHART), "--namespace", release, "--reuse-values", "--set", "logFormat=json")
    (shown,) = page_shows(
        f"helm upgrade servicelink charts/servicelink -n {NAMESPACE} --reuse-values --set logFormat=json"
    )
    assert_shows(shown, as_on_the_page(upgraded.stdout, release), "helm upgrade")
    rolled = wait_for(
        lambda: [rs for rs in replicasets(cluster, release) if log_format(rs) == "json"],
        timeout=60,
        what="a ReplicaSet with the new value",
    )
    assert rolled[0]["metadata"]["name"] != first["metadata"]["name"]
    # Recreate: the old ReplicaSet is scaled to nothing.
    wait_for(
        lambda: cluster.get("replicaset", first["metadata"]["name"], "-n", release)["spec"]["replicas"] == 0,
        timeout=60,
        what="the old ReplicaSet scaled to 0",
    )
    assert "REVISION: 2" in helm("status", RELEASE, "--namespace", release).stdout


def test_a_bad_value_is_refused_at_install_naming_it(cluster: Cluster, helm: Helm, release: str) -> None:
    command = (
        f"helm install broken charts/servicelink -n {NAMESPACE} --set replicas=-1 --set logFormat=xml --set replica=2"
    )
    args = shlex.split(command.replace(NAMESPACE, release).replace("charts/servicelink", str(CHART)))[1:]
    refused = helm(*args, check=False)
    assert refused.returncode != 0
    assert "at '/replicas': minimum: got -1, want 0" in refused.stderr
    (shown,) = page_shows(command)
    # helm lists the schema's complaints in no fixed order: the page shows them in one of its orders.
    assert_shows(
        "\n".join(sorted(shown.splitlines())), "\n".join(sorted(refused.stderr.splitlines())), "helm install broken"
    )
    assert helm("list", "--all-namespaces", "--all", "--short").stdout.split().count("broken") == 0
    assert cluster.get("clusterrole", "broken-servicelink") is None


def test_uninstall_leaves_the_crd_and_the_configmaps_go_with_their_servicelinks(
    cluster: Cluster, helm: Helm, release: str, gallery: str, operator: OperatorProcess
) -> None:
    """Last in the module: it ends both releases the tests above share."""
    wait_for(lambda: all(gallery_configmaps(cluster, gallery).values()), timeout=60, what="the gallery's ConfigMaps")
    (shown,) = page_shows("helm uninstall gallery -n gallery")
    assert_shows(shown, helm("uninstall", "gallery", "--namespace", gallery).stdout, "helm uninstall gallery")
    for name in GALLERY_SERVICELINKS:
        wait_for(lambda n=name: cluster.get("servicelink", n, "-n", gallery) is None, what=f"ServiceLink {name} gone")
    # Their ConfigMaps carry an ownerReference: kube-controller-manager's garbage collector deletes them.
    wait_for(
        lambda: all(data is None for data in gallery_configmaps(cluster, gallery).values()),
        timeout=60,
        what="the ServiceLinks' ConfigMaps garbage-collected",
    )
    assert cluster.get("deployments", "-n", gallery)["items"] == []
    gone = cluster.kubectl("get", "servicelinks,configmaps", "-n", gallery)
    (shown,) = page_shows("kubectl get servicelinks,configmaps -n gallery")
    assert_shows(shown, (gone.stdout + gone.stderr).replace(gallery, "gallery"), "what the gallery left")
    # The pod would go with its Deployment; its stand-in goes first, as its token dies with the account.
    operator.stop()
    (shown,) = page_shows(f"helm uninstall servicelink -n {NAMESPACE}")
    uninstalled = helm("uninstall", RELEASE, "--namespace", release)
    assert_shows(shown, as_on_the_page(uninstalled.stdout, release), "helm uninstall")
    wait_for(
        lambda: [name for name, body in release_objects(cluster, release).items() if body is not None] == [],
        timeout=60,
        what="every object of the release gone",
    )
    assert cluster.get("crd", CRD_NAME) is not None, "Helm keeps a chart's CRDs"
