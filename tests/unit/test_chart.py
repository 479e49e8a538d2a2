"""The charts with the real helm: charts/servicelink (lint, rendering, values.schema.json, manifests/ as its
rendering) and the seed's gallery chart, examples/gallery-helm."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicelink import metrics
from servicelink.kube import OPTIONAL_RBAC_RULES, RBAC_RULES, SECRET_RBAC_RULES
from servicelink.model import (
    API_VERSION_NAME,
    BUILT_IN_MAPPINGS,
    DNS1035_LABEL,
    DNS1123_SUBDOMAIN,
    KIND_NAME,
    TEMPLATE_PATH,
    WORKLOAD_KIND,
    WorkloadMappingSpec,
    parse_mapping,
)
from servicelink.settings import Settings
from servicelink.testing.assets import ensure_helm
from servicelink.testing.fixtures import SEED_CONFIG

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "servicelink"
GALLERY_CHART = REPO / "examples" / "gallery-helm"
MANIFESTS = REPO / "manifests"
# Not the chart's: Helm installs into a namespace it is given, and kustomize's list is its own.
HAND_WRITTEN = {"namespace.yaml", "kustomization.yaml"}
# OpenKruise's CloneSet, as docs/how-to/follow-any-kind.md maps it.
CLONESET = {
    "kind": "CloneSet",
    "group": "apps.kruise.io",
    "plural": "clonesets",
    "version": "v1alpha1",
    "template": ".spec.template",
}
CLONESET_GRANTS = {("apps.kruise.io", "clonesets", verb) for verb in ("list", "watch", "patch")}
# A value for every key in values.yaml, none of them a default.
EVERYTHING: dict[str, Any] = {
    "image": {"repository": "registry.example/sl", "tag": "9.9.9", "pullPolicy": "Always"},
    "replicas": 3,
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 1, "memory": "512Mi"}},
    "watchNamespaces": ["gallery", "shop"],
    "ignoreNamespaces": ["kube-system"],
    "namespaceSelector": "team in (payments,search),!legacy",
    # The default: rbac.namespaced refuses workloadMappings, set here (test_namespaced_mode_* sets it).
    "rbac": {"namespaced": False},
    "logFormat": "json",
    "resyncSeconds": 600,
    "coalesceSeconds": 0.05,
    "ports": {"health": 8081, "metrics": 9091},
    "argoRollouts": {"enabled": True},
    "secrets": {"enabled": True},
    "ignoreKinds": ["CronJob", "CloneSet.apps.kruise.io"],
    "rolloutPacing": {"maxInFlight": 10, "timeoutSeconds": 900},
    "workloadMappings": [CLONESET],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 20002, "fsGroup": 20002},
    "containerSecurityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
    "extraArgs": ["--workers=32"],
    "extraEnv": [{"name": "SERVICELINK_CLUSTER_DOMAIN", "value": "corp.local"}],
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}},
    "alerts": {"secretName": "alert-hook", "format": "slack"},
    "prometheusRule": {"enabled": True, "notReadyMinutes": 30, "labels": {"release": "prometheus"}},
}

Triple = tuple[str, str, str]


@pytest.fixture(scope="module")
def helm() -> str:
    return ensure_helm()


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def render(
    helm: str, *args: str, values: dict[str, Any] | None = None, tmp: Path | None = None
) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders, release ``servicelink`` in ``servicelink-system``."""
    extra: list[str] = []
    if values is not None:
        assert tmp is not None
        (tmp / "values.yaml").write_text(yaml.safe_dump(values))
        extra = ["--values", str(tmp / "values.yaml")]
    out = run_helm(helm, "template", "servicelink", str(CHART), "--namespace", "servicelink-system", *extra, *args)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        found.setdefault(obj["kind"], []).append(obj)
    return found


def container_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(objects)["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


def triples(rules: list[dict[str, Any]]) -> list[Triple]:
    return [(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]]


def test_lint_passes_strict_with_defaults_and_with_everything_set(helm: str, tmp_path: Path) -> None:
    run_helm(helm, "lint", "--strict", str(CHART))
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(EVERYTHING))
    run_helm(helm, "lint", "--strict", str(CHART), "--values", str(tmp_path / "values.yaml"))


def test_defaults_render_the_install_and_nothing_optional(helm: str) -> None:
    kinds = by_kind(render(helm))
    assert {kind: len(objs) for kind, objs in kinds.items()} == {
        "ServiceAccount": 1,
        "ClusterRole": 3,
        "ClusterRoleBinding": 1,
        "Deployment": 1,
        "Service": 1,
    }
    assert {role["metadata"]["name"] for role in kinds["ClusterRole"]} == {
        "servicelink",
        "servicelink-edit",
        "servicelink-view",
    }


def test_the_chart_grants_exactly_rbac_rules_and_the_optional_ones_only_when_enabled(helm: str, tmp_path: Path) -> None:
    core = {(group, resource, verb) for group, resource, verbs in RBAC_RULES for verb in verbs}
    optional = {(group, resource, verb) for group, resource, verbs in OPTIONAL_RBAC_RULES for verb in verbs}
    assert optional == {("argoproj.io", "rollouts", verb) for verb in ("list", "watch", "patch")}
    secrets = {(group, resource, verb) for group, resource, verbs in SECRET_RBAC_RULES for verb in verbs}
    argo_only = {"argoRollouts": {"enabled": True}}
    secrets_only = {"secrets": {"enabled": True}}
    for objects, wanted in (
        (render(helm), core),
        (render(helm, values=argo_only, tmp=tmp_path), core | optional),
        (render(helm, values=secrets_only, tmp=tmp_path), core | secrets),
        (render(helm, values=EVERYTHING, tmp=tmp_path), core | optional | secrets | CLONESET_GRANTS),
    ):
        (role,) = [r for r in by_kind(objects)["ClusterRole"] if r["metadata"]["name"] == "servicelink"]
        granted = triples(role["rules"])
        assert len(granted) == len(set(granted)), "a (group, resource, verb) is granted twice"
        assert set(granted) == wanted
    # The setting follows the value: the operator watches Rollouts exactly when it may.
    assert "SERVICELINK_ARGO_ROLLOUTS" not in env_of(container_of(render(helm)))
    assert env_of(container_of(render(helm, values=argo_only, tmp=tmp_path)))["SERVICELINK_ARGO_ROLLOUTS"] == "true"
    assert "SERVICELINK_SECRETS" not in env_of(container_of(render(helm)))
    assert env_of(container_of(render(helm, values=secrets_only, tmp=tmp_path)))["SERVICELINK_SECRETS"] == "true"


def test_committed_manifests_are_the_default_rendering(helm: str, tmp_path: Path) -> None:
    """hack/manifests.sh wrote manifests/ from the chart; rerun it after editing the chart."""
    subprocess.run(
        ["bash", str(REPO / "hack" / "manifests.sh"), str(tmp_path)],
        env={**os.environ, "HELM": helm},
        check=True,
        capture_output=True,
        timeout=120,
    )
    rendered = {path.name: path.read_text() for path in tmp_path.glob("*.yaml")}
    committed = {path.name: path.read_text() for path in MANIFESTS.glob("*.yaml") if path.name not in HAND_WRITTEN}
    assert sorted(rendered) == sorted(committed)
    for name, text in rendered.items():
        assert committed[name] == text, f"manifests/{name} differs from the chart's rendering: run hack/manifests.sh"


def test_the_charts_crd_is_crds_servicelink_yaml() -> None:
    """Helm installs a chart's crds/ folder; hack/manifests.sh copies crds/servicelink.yaml there."""
    assert [p.name for p in (CHART / "crds").iterdir()] == ["servicelink.yaml"]
    assert (CHART / "crds" / "servicelink.yaml").read_bytes() == (REPO / "crds" / "servicelink.yaml").read_bytes()


def test_values_defaults_are_the_operators_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defaults = Settings()
    assert values["logFormat"] == defaults.log_format
    assert values["resyncSeconds"] == defaults.resync_seconds
    assert values["coalesceSeconds"] == defaults.coalesce_seconds
    assert values["ports"] == {"health": defaults.health_port, "metrics": defaults.metrics_port}
    assert values["watchNamespaces"] == list(defaults.namespaces)
    assert values["ignoreNamespaces"] == list(defaults.ignore_namespaces)
    assert values["namespaceSelector"] == defaults.namespace_selector
    assert values["argoRollouts"] == {"enabled": defaults.argo_rollouts}
    assert values["secrets"] == {"enabled": defaults.secrets}
    assert values["ignoreKinds"] == list(defaults.ignore_kinds)
    assert values["rolloutPacing"] == {
        "maxInFlight": defaults.max_rollouts_in_flight,
        "timeoutSeconds": defaults.rollout_timeout_seconds,
    }
    assert values["workloadMappings"] == []
    assert values["rbac"] == {"namespaced": not defaults.workload_mappings}
    assert values["alerts"] == {"secretName": defaults.alert_secret, "format": defaults.alert_format}
    assert values["prometheusRule"]["enabled"] is False
    assert set(values) == set(EVERYTHING), "EVERYTHING sets every value"


def test_every_value_reaches_the_rendering(helm: str, tmp_path: Path) -> None:
    objects = render(helm, "--api-versions", "monitoring.coreos.com/v1", values=EVERYTHING, tmp=tmp_path)
    kinds = by_kind(objects)
    (deployment,) = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(objects)
    assert container["image"] == "registry.example/sl:9.9.9"
    assert container["imagePullPolicy"] == "Always"
    assert deployment["spec"]["replicas"] == 3
    assert container["resources"] == EVERYTHING["resources"]
    assert container["args"] == ["run", "--workers=32"]
    assert env_of(container) == {
        "SERVICELINK_LOG_FORMAT": "json",
        "SERVICELINK_RESYNC_SECONDS": "600",
        "SERVICELINK_COALESCE_SECONDS": "0.05",
        "SERVICELINK_HEALTH_PORT": "8081",
        "SERVICELINK_METRICS_PORT": "9091",
        "SERVICELINK_NAMESPACES": "gallery,shop",
        "SERVICELINK_IGNORE_NAMESPACES": "kube-system",
        "SERVICELINK_NAMESPACE_SELECTOR": "team in (payments,search),!legacy",
        "SERVICELINK_LEADER_ELECT": "true",
        "SERVICELINK_ARGO_ROLLOUTS": "true",
        "SERVICELINK_SECRETS": "true",
        "SERVICELINK_IGNORE_KINDS": "CronJob,CloneSet.apps.kruise.io",
        "SERVICELINK_MAX_ROLLOUTS_IN_FLIGHT": "10",
        "SERVICELINK_ROLLOUT_TIMEOUT_SECONDS": "900",
        "SERVICELINK_CLUSTER_DOMAIN": "corp.local",
        "SERVICELINK_ALERT_SECRET": "alert-hook",
        "SERVICELINK_ALERT_FORMAT": "slack",
    }
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 8081, "metrics": 9091}
    assert pod["nodeSelector"] == EVERYTHING["nodeSelector"]
    assert pod["tolerations"] == EVERYTHING["tolerations"]
    assert pod["affinity"] == EVERYTHING["affinity"]
    # Helm merges a map given with the default one: a key is dropped only by setting it to null.
    assert EVERYTHING["podSecurityContext"].items() <= pod["securityContext"].items()
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert EVERYTHING["containerSecurityContext"].items() <= container["securityContext"].items()
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    (service,) = kinds["Service"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9091, "targetPort": "metrics"}]
    (monitor,) = kinds["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (mapping,) = kinds["WorkloadMapping"]
    assert mapping["metadata"]["name"] == "clonesets.apps.kruise.io"
    (rule,) = kinds["PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    (not_ready,) = [r for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "ServiceLinkNotReady"]
    assert not_ready["for"] == "30m"
    assert not_ready["expr"] == 'sum(servicelink_servicelinks{ready="False",reason!~"CoolingDown|OutsideWindow"}) > 0'


def test_the_alert_secret_is_the_one_secret_granted_in_the_releases_namespace(helm: str, tmp_path: Path) -> None:
    assert "SERVICELINK_ALERT_SECRET" not in env_of(container_of(render(helm)))
    objects = render(helm, values={"alerts": {"secretName": "alert-hook"}}, tmp=tmp_path)
    assert env_of(container_of(objects))["SERVICELINK_ALERT_SECRET"] == "alert-hook"
    assert env_of(container_of(objects))["SERVICELINK_ALERT_FORMAT"] == "webhook"
    (role,) = [r for r in by_kind(objects)["Role"] if r["metadata"]["name"] == "servicelink-alerts"]
    assert role["metadata"]["namespace"] == "servicelink-system"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["alert-hook"], "verbs": ["get"]}
    ]
    (binding,) = [b for b in by_kind(objects)["RoleBinding"] if b["metadata"]["name"] == "servicelink-alerts"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "servicelink", "namespace": "servicelink-system"}]


# Every metric the shipped rules read, by name as /metrics serves it.
RULE_METRICS = {"servicelink_servicelinks", "servicelink_reconciles_total", "servicelink_alerts_total"}


def test_the_prometheus_rules_are_off_by_default_and_read_only_metrics_the_operator_serves(helm: str) -> None:
    assert "PrometheusRule" not in by_kind(render(helm, "--api-versions", "monitoring.coreos.com/v1"))
    (rule,) = by_kind(render(helm, "--set", "prometheusRule.enabled=true"))["PrometheusRule"]
    rules = rule["spec"]["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == [
        "ServiceLinkRolloutStalled",
        "ServiceLinkNotReady",
        "ServiceLinkReconcilesFailing",
        "ServiceLinkAlertsFailing",
    ]
    read = {name for r in rules for name in re.findall(r"servicelink_[a-z_]+", r["expr"])}
    assert read == RULE_METRICS
    served = {m.name + ("_total" if m.type == "counter" else "") for m in metrics.REGISTRY.collect()}
    assert read <= served | {metrics.SERVICELINKS.name}


def test_a_mapped_kind_renders_its_workload_mapping_and_is_granted_list_watch_patch(helm: str, tmp_path: Path) -> None:
    core = {(group, resource, verb) for group, resource, verbs in RBAC_RULES for verb in verbs}
    objects = render(helm, values={"workloadMappings": [CLONESET]}, tmp=tmp_path)
    (mapping,) = by_kind(objects)["WorkloadMapping"]
    assert mapping["apiVersion"] == "servicelink.dev/v1alpha1"
    assert mapping["metadata"]["name"] == "clonesets.apps.kruise.io"
    assert mapping["spec"] == {"kind": "CloneSet", "version": "v1alpha1", "template": ".spec.template", "rolls": True}
    # What the operator makes of it: the kind a ServiceLink names in spec.workloads.names.
    assert parse_mapping(mapping["metadata"]["name"], mapping["spec"]).kind == "CloneSet.apps.kruise.io"
    (role,) = [r for r in by_kind(objects)["ClusterRole"] if r["metadata"]["name"] == "servicelink"]
    assert set(triples(role["rules"])) == core | CLONESET_GRANTS
    # The default install: no mapping, and nothing granted on the group.
    defaults = render(helm)
    assert "WorkloadMapping" not in by_kind(defaults)
    (role,) = [r for r in by_kind(defaults)["ClusterRole"] if r["metadata"]["name"] == "servicelink"]
    assert not CLONESET_GRANTS & set(triples(role["rules"]))


def test_a_mapping_that_does_not_roll_says_so(helm: str, tmp_path: Path) -> None:
    """An explicit false stays false (Helm's `default true` would turn it true)."""
    entry = {**CLONESET, "rolls": False}
    (mapping,) = by_kind(render(helm, values={"workloadMappings": [entry]}, tmp=tmp_path))["WorkloadMapping"]
    assert mapping["spec"]["rolls"] is False


@pytest.mark.parametrize("name", sorted(BUILT_IN_MAPPINGS))
def test_a_mapping_of_a_built_in_kind_fails_the_render_naming_it(helm: str, tmp_path: Path, name: str) -> None:
    """The chart refuses what the operator would refuse with BuiltInKind, before it grants anything."""
    plural, group = name.split(".", 1)
    entry = {**CLONESET, "kind": BUILT_IN_MAPPINGS[name], "group": group, "plural": plural}
    (tmp_path / "values.yaml").write_text(yaml.safe_dump({"workloadMappings": [entry]}))
    done = run_helm(helm, "template", "servicelink", str(CHART), "--values", str(tmp_path / "values.yaml"), check=False)
    assert done.returncode != 0
    assert f"{name} is {BUILT_IN_MAPPINGS[name]}, which servicelink follows without a mapping" in done.stderr


def test_the_schema_checks_a_mapping_as_the_crd_does() -> None:
    """values.schema.json repeats the model's patterns, so a bad entry fails the install, not the apply."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    entry = schema["properties"]["workloadMappings"]["items"]
    fields = WorkloadMappingSpec.model_json_schema(by_alias=True)["properties"]
    patterns = {name: prop.get("pattern") for name, prop in entry["properties"].items()}
    assert patterns == {
        "kind": KIND_NAME.pattern,
        "group": DNS1123_SUBDOMAIN.pattern,
        "plural": DNS1035_LABEL.pattern,
        "version": API_VERSION_NAME.pattern,
        "template": TEMPLATE_PATH.pattern,
        "rolls": None,
    }
    for name in ("kind", "version", "template"):
        assert patterns[name] == fields[name]["pattern"]
        assert entry["properties"][name]["maxLength"] == fields[name]["maxLength"]
    assert entry["properties"]["rolls"]["default"] is fields["rolls"]["default"] is True
    assert set(entry["required"]) == {"group", "plural"} | set(WorkloadMappingSpec.model_json_schema()["required"])


def test_the_schema_checks_ignored_kinds_as_the_operator_does() -> None:
    """values.schema.json repeats the operator's pattern of a kind, so a misspelt one fails the install."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["ignoreKinds"]["items"]["pattern"] == WORKLOAD_KIND.pattern


def test_one_replica_runs_alone_and_recreates(helm: str) -> None:
    objects = render(helm)
    (deployment,) = by_kind(objects)["Deployment"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "SERVICELINK_LEADER_ELECT" not in env_of(container_of(objects))
    assert "PodDisruptionBudget" not in by_kind(objects)


def test_more_replicas_elect_a_leader_roll_one_by_one_and_keep_one_through_a_drain(helm: str) -> None:
    objects = render(helm, "--set", "replicas=2")
    (deployment,) = by_kind(objects)["Deployment"]
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert env_of(container_of(objects))["SERVICELINK_LEADER_ELECT"] == "true"
    (budget,) = by_kind(objects)["PodDisruptionBudget"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_the_service_monitor_needs_the_prometheus_operators_api(helm: str) -> None:
    assert "ServiceMonitor" not in by_kind(render(helm))
    assert "ServiceMonitor" in by_kind(render(helm, "--api-versions", "monitoring.coreos.com/v1"))
    off = render(helm, "--api-versions", "monitoring.coreos.com/v1", "--set", "serviceMonitor.enabled=false")
    assert "ServiceMonitor" not in by_kind(off)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("replicas=-1", "/replicas"),
        ("logFormat=xml", "/logFormat"),
        ("replica=2", "replica"),
        ("image.tags=1.0", "tags"),
        ("resyncSeconds=0", "/resyncSeconds"),
        ("coalesceSeconds=61", "/coalesceSeconds"),
        ("ports.metrics=70000", "/ports/metrics"),
        ("watchNamespaces[0]=Not_A_Namespace", "/watchNamespaces/0"),
        ("serviceMonitor.interval=soon", "/serviceMonitor/interval"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("workloadMappings[0].kind=cloneset", "/workloadMappings/0/kind"),
        ("workloadMappings[0].kind=CloneSet", "missing properties 'group', 'plural', 'version', 'template'"),
    ],
)
def test_the_schema_refuses_a_bad_value_naming_it(helm: str, setting: str, named: str) -> None:
    done = run_helm(helm, "template", "servicelink", str(CHART), "--set", setting, check=False)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert named in done.stderr, done.stderr


# What the operator reads outside any namespace; rbac.namespaced grants none of it, and turns off what needs it.
CLUSTER_SCOPED = {"workloadmappings", "workloadmappings/status", "selfsubjectaccessreviews", "namespaces"}
CLUSTER_SCOPED |= {"customresourcedefinitions"}
LEASE = {("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")}
NAMESPACED = {"watchNamespaces": ["gallery", "shop"], "argoRollouts": {"enabled": True}, "secrets": {"enabled": True}}


def test_namespaced_mode_grants_in_each_watched_namespace_what_the_cluster_role_grants_and_nothing_cluster_wide(
    helm: str, tmp_path: Path
) -> None:
    cluster_wide = by_kind(render(helm, values=NAMESPACED, tmp=tmp_path))
    (cluster_role,) = [r for r in cluster_wide["ClusterRole"] if r["metadata"]["name"] == "servicelink"]
    cluster_rules = set(triples(cluster_role["rules"]))
    kinds = by_kind(render(helm, values={**NAMESPACED, "rbac": {"namespaced": True}}, tmp=tmp_path))
    assert "ClusterRole" not in kinds
    assert "ClusterRoleBinding" not in kinds
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in kinds["Role"]}
    assert set(roles) == {
        ("gallery", "servicelink"),
        ("shop", "servicelink"),
        ("servicelink-system", "servicelink-lease"),
    }
    lease = set(triples(roles["servicelink-system", "servicelink-lease"]["rules"]))
    assert lease == LEASE
    for namespace in ("gallery", "shop"):
        granted = triples(roles[namespace, "servicelink"]["rules"])
        assert len(granted) == len(set(granted)), "a (group, resource, verb) is granted twice"
        assert set(granted) == {t for t in cluster_rules if t[1] not in CLUSTER_SCOPED} - LEASE
    # Nothing the ClusterRole grants is lost but the cluster-scoped reads the operator no longer makes.
    assert {t[1] for t in cluster_rules - set(triples(roles["gallery", "servicelink"]["rules"])) - lease} == (
        CLUSTER_SCOPED
    )
    bindings = {(b["metadata"]["namespace"], b["metadata"]["name"]): b for b in kinds["RoleBinding"]}
    assert set(bindings) == set(roles)
    for key, binding in bindings.items():
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": key[1]}
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "servicelink", "namespace": "servicelink-system"}
        ]
    # The operator it configures reads nothing cluster-scoped.
    env = env_of(container_of(kinds["Deployment"]))
    assert env["SERVICELINK_NAMESPACES"] == "gallery,shop"
    assert env["SERVICELINK_WORKLOAD_MAPPINGS"] == "false"
    assert not Settings.from_env(env).reads_cluster_scope
    assert "SERVICELINK_WORKLOAD_MAPPINGS" not in env_of(container_of(render(helm)))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "rbac.namespaced: set watchNamespaces to the namespaces to watch"),
        ({"watchNamespaces": ["gallery"], "workloadMappings": [CLONESET]}, "rbac.namespaced: workloadMappings need"),
        ({"watchNamespaces": ["gallery"], "namespaceSelector": "team=a"}, "rbac.namespaced: namespaceSelector needs"),
    ],
)
def test_namespaced_mode_without_a_namespace_or_with_a_mapping_fails_the_render_saying_why(
    helm: str, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    (tmp_path / "values.yaml").write_text(yaml.safe_dump({**values, "rbac": {"namespaced": True}}))
    done = run_helm(helm, "template", "servicelink", str(CHART), "--values", str(tmp_path / "values.yaml"), check=False)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


@pytest.fixture(scope="module")
def gallery(helm: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The gallery chart's objects by (kind, name), as ``helm template`` renders them."""
    run_helm(helm, "lint", "--strict", str(GALLERY_CHART))
    out = run_helm(helm, "template", "gallery", str(GALLERY_CHART)).stdout
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(out) if doc}


def test_the_gallery_chart_runs_the_kustomize_gallerys_deployments_and_services(
    gallery: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """Same pods in the same roles as examples/gallery, in the release's namespace instead of "gallery"."""
    expected = {}
    for name in ("deployments.yaml", "services.yaml"):
        for doc in yaml.safe_load_all((REPO / "examples" / "gallery" / name).read_text()):
            del doc["metadata"]["namespace"]
            expected[doc["kind"], doc["metadata"]["name"]] = doc
    assert {key: gallery[key] for key in expected} == expected


def test_the_gallery_chart_links_what_the_seed_wrote_by_hand(gallery: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Its ServiceLinks are examples/gallery's, which resolve to the seed's ConfigMaps; it writes no ConfigMap."""
    assert not [key for key in gallery if key[0] == "ConfigMap"]
    links = {name: spec for (kind, name), spec in gallery.items() if kind == "ServiceLink"}
    expected = yaml.safe_load_all((REPO / "examples" / "gallery" / "servicelinks.yaml").read_text())
    by_key = {doc["metadata"]["name"]: {link["key"]: link for link in doc["spec"]["links"]} for doc in expected}
    assert {name: {link["key"]: link for link in doc["spec"]["links"]} for name, doc in links.items()} == by_key
    assert {doc["spec"]["configMapName"] for doc in links.values()} == set(SEED_CONFIG)
