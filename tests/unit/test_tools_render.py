"""servicelink render: the operator's values, reasons and messages, offline."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from console import GALLERY, assert_golden, run

from servicelink.tools.offline import build_world, name_mapped_kind, parse_mappings

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: auth, namespace: shop}
spec: {ports: [{name: http, port: 3001}]}
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: data
  annotations: {servicelink.dev/expose-to: shop}
spec: {ports: [{port: 5432}]}
"""


def servicelink(name: str, *links: dict[str, object], configmap: str = "cfg") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "servicelink.dev/v1alpha1",
            "kind": "ServiceLink",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"configMapName": configmap, "links": list(links)},
        }
    )


def test_gallery_golden(capsys: pytest.CaptureFixture[str]) -> None:
    ran = run(capsys, "render", "-f", str(GALLERY))
    assert ran.code == 0
    assert_golden("render-gallery.yaml", ran.out)
    assert_golden("render-gallery.report", ran.err.replace(str(GALLERY), "examples/gallery"))


def test_gallery_values_are_the_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    ran = run(capsys, "render", "-f", str(GALLERY), "-o", "json")
    data = {item["metadata"]["name"]: item["data"] for item in json.loads(ran.out)["items"]}
    assert data["gateway-service-config"] == {
        "AUTH_SERVICE_URL": "http://auth-service:3001",
        "APP_SERVICE_URL": "http://app-service:3002",
    }
    assert data["app-service-config"] == {"MONGODB_HOST": "mongodb", "REDIS_URL": "redis://redis:6379"}


def test_a_missing_service_exits_1_with_the_operators_reason_and_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = SERVICES + "---\n" + servicelink("gw", {"key": "AUTH_URL", "service": "auth"}, {"key": "X", "service": "x"})
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    ran = run(capsys, "render", "-f", "-")
    assert ran.code == 1
    assert yaml.safe_load(ran.out)["data"] == {"AUTH_URL": "http://auth:3001"}
    assert "Resolved=False ServiceNotFound: Service shop/x not found (links[key=X].service)" in ran.err
    assert "X         ServiceNotFound: Service shop/x not found (links[key=X].service)" in ran.err


def test_cluster_domain_and_consent_across_namespaces(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "in.yaml").write_text(
        SERVICES + "---\n" + servicelink("gw", {"key": "DB", "service": "db", "namespace": "data", "scheme": "pg"})
    )
    ran = run(capsys, "render", "-f", str(tmp_path), "--cluster-domain", "corp.example")
    assert ran.code == 0
    assert yaml.safe_load(ran.out)["data"] == {"DB": "pg://db.data.svc.corp.example:5432"}
    (tmp_path / "in.yaml").write_text(SERVICES + "---\n" + servicelink("gw", {"key": "A", "service": "auth"}))
    (tmp_path / "other.yml").write_text(servicelink("gw2", {"key": "B", "service": "auth", "namespace": "nope"}))
    ran = run(capsys, "render", "-f", str(tmp_path))
    assert ran.code == 1
    assert "CrossNamespaceForbidden: Service nope/auth does not exist or does not list namespace 'shop'" in ran.err


def test_cluster_domain_left_out_is_the_operators_variable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like `servicelink run`, render reads SERVICELINK_CLUSTER_DOMAIN; the flag wins over it."""
    (tmp_path / "in.yaml").write_text(
        SERVICES + "---\n" + servicelink("gw", {"key": "DB", "service": "db", "namespace": "data", "scheme": "pg"})
    )
    monkeypatch.setenv("SERVICELINK_CLUSTER_DOMAIN", "corp.example")
    monkeypatch.setenv("SERVICELINK_WORKERS", "not a number")  # the operator's setting, not render's
    ran = run(capsys, "render", "-f", str(tmp_path))
    assert (ran.code, yaml.safe_load(ran.out)["data"]) == (0, {"DB": "pg://db.data.svc.corp.example:5432"})
    ran = run(capsys, "render", "-f", str(tmp_path), "--cluster-domain", "flag.example")
    assert yaml.safe_load(ran.out)["data"] == {"DB": "pg://db.data.svc.flag.example:5432"}
    monkeypatch.setenv("SERVICELINK_CLUSTER_DOMAIN", "Not_A_Domain")
    ran = run(capsys, "render", "-f", str(tmp_path))
    assert ran.code == 2
    assert ran.err.startswith("servicelink: SERVICELINK_CLUSTER_DOMAIN='Not_A_Domain': must be a DNS domain")
    monkeypatch.delenv("SERVICELINK_CLUSTER_DOMAIN")
    ran = run(capsys, "render", "-f", str(tmp_path))
    assert yaml.safe_load(ran.out)["data"] == {"DB": "pg://db.data.svc.cluster.local:5432"}


def test_the_later_servicelink_of_one_configmap_writes_nothing_until_it_is_shared(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "in.yaml").write_text(
        "---\n".join(
            [
                SERVICES,
                servicelink("a", {"key": "A", "service": "auth"}),
                servicelink("b", {"key": "A", "service": "auth", "port": "http"}, {"key": "B", "service": "auth"}),
            ]
        )
    )
    ran = run(capsys, "render", "-f", str(tmp_path / "in.yaml"))
    assert ran.code == 1
    # cfg is created for "a", the first by name; the operator refuses "b" until cfg's owner shares it.
    assert yaml.safe_load(ran.out)["data"] == {"A": "http://auth:3001"}
    assert "ConfigMapNotShared: ConfigMap shop/cfg was not created by this ServiceLink" in ran.err
    assert "servicelink.dev/writable-by=b" in ran.err


def test_an_invalid_spec_is_reported_with_its_field(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "in.yaml").write_text(servicelink("bad", {"key": "1X", "service": "auth"}))
    ran = run(capsys, "render", "-f", str(tmp_path / "in.yaml"))
    assert ran.code == 1
    assert "InvalidSpec: spec.links.0.key: Value error, key '1X' must match" in ran.err


def test_malformed_yaml_names_file_and_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: Service\nmetadata:\n  name: [a\n")
    ran = run(capsys, "render", "-f", str(tmp_path / "broken.yaml"))
    assert ran.code == 2
    assert ran.err.startswith(f"servicelink: {tmp_path / 'broken.yaml'}:4:1: malformed YAML:")
    assert "Traceback" not in ran.err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- just\n- a list\n", "in.yaml:1: expected a Kubernetes object (a mapping), found list"),
        ("kind: Namespace\nmetadata: {name: x}\n", "no ServiceLink in the input"),
    ],
)
def test_input_without_servicelinks_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "in.yaml").write_text(content)
    ran = run(capsys, "render", "-f", str(tmp_path / "in.yaml"))
    assert ran.code == 2
    assert message in ran.err
    assert len(ran.err.strip().splitlines()) <= 2


def test_a_missing_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ran = run(capsys, "render", "-f", str(tmp_path / "nope.yaml"))
    assert (ran.code, ran.err) == (2, f"servicelink: {tmp_path / 'nope.yaml'}: no such file or folder\n")


@pytest.mark.parametrize("command", ["doctor", "adopt", "graph"])
def test_a_missing_kubeconfig_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str) -> None:
    ran = run(capsys, command, "-n", "x", "--kubeconfig", str(tmp_path / "none"))
    assert ran.code == 2
    missing = tmp_path / "none"
    assert (
        ran.err == f"servicelink: no usable kubeconfig ({missing}): Invalid kube-config file. No configuration found.\n"
    )


def test_workload_mappings_map_kinds_by_group_and_kind_and_name_what_they_refuse() -> None:
    mapped = parse_mappings(
        [
            {
                "kind": "WorkloadMapping",
                "metadata": {"name": "clonesets.apps.kruise.io"},
                "spec": {"kind": "CloneSet", "version": "v1alpha1", "template": ".spec.template"},
            },
            {"kind": "WorkloadMapping", "metadata": {"name": "pods"}, "spec": {"kind": "Pod"}},
            {"kind": "WorkloadMapping", "metadata": {}, "spec": "nonsense"},
            {"kind": "Deployment", "metadata": {"name": "clonesets.apps.kruise.io"}},
        ]
    )
    assert list(mapped.resources) == ["CloneSet.apps.kruise.io"]
    assert [why.split(":")[0] for why in mapped.skipped] == ["WorkloadMapping pods", "WorkloadMapping (no name)"]
    assert "must be <plural>.<group>" in mapped.skipped[0]
    cloneset = {"apiVersion": "apps.kruise.io/v1beta1", "kind": "CloneSet", "metadata": {"name": "web"}}
    assert name_mapped_kind(cloneset, mapped.resources)["kind"] == "CloneSet.apps.kruise.io"  # any version
    for other in ({**cloneset, "apiVersion": "apps/v1"}, {**cloneset, "apiVersion": "v1"}, {"kind": "CloneSet"}):
        assert name_mapped_kind(other, mapped.resources) is other
    world = build_world([cloneset], namespace="shop", mapped=mapped.resources)
    assert [(w.kind, w.namespace, w.name) for w in world.workloads("shop", reading=None)] == [
        ("CloneSet.apps.kruise.io", "shop", "web")
    ]
    assert build_world([cloneset], namespace="shop").workloads("shop", reading=None) == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("pod/web", "servicelink: pod/web: expected KIND/NAME, KIND one of Deployment, StatefulSet, DaemonSet,"),
        ("cloneset.apps.kruise.io/web", "servicelink: no usable kubeconfig"),  # a mapped kind: read the cluster
    ],
)
def test_doctor_takes_a_mapped_kind_with_its_group(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, target: str, expected: str
) -> None:
    ran = run(capsys, "doctor", target, "--kubeconfig", str(tmp_path / "none"))
    assert ran.code == 2
    assert ran.err.startswith(expected)


def test_a_url_with_credentials_shows_only_with_show_secrets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    password = "s3cr@t:/%"
    shared = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "pg",
            "namespace": "shop",
            "labels": {"servicelink.dev/shared": "true"},
            "annotations": {"servicelink.dev/readable-by": "gw"},
        },
        "stringData": {"username": "app", "password": password},
    }
    link = {"key": "DB_URL", "service": "auth", "scheme": "pg", "credentials": {"secretName": "pg"}}
    body = yaml.safe_load(servicelink("gw", {"key": "AUTH_URL", "service": "auth"}, link))
    body["spec"]["secretName"] = "gw-secrets"
    (tmp_path / "in.yaml").write_text(SERVICES + "---\n" + yaml.safe_dump_all([body, shared]))

    hidden = run(capsys, "render", "-f", str(tmp_path))
    assert hidden.code == 0
    assert [o["kind"] for o in yaml.safe_load_all(hidden.out)] == ["ConfigMap"]
    assert "DB_URL    in Secret shop/gw-secrets (--show-secrets prints it)" in hidden.err
    assert "s3cr" not in hidden.out + hidden.err

    shown = run(capsys, "render", "-f", str(tmp_path), "--show-secrets", "-o", "json")
    secret = json.loads(shown.out)["items"][1]
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", "gw-secrets")
    assert secret["stringData"] == {"DB_URL": "pg://app:s3cr%40t%3A%2F%25@auth:3001"}

    shared["metadata"]["labels"] = {}  # not shared: servicelink would never see it
    (tmp_path / "in.yaml").write_text(SERVICES + "---\n" + yaml.safe_dump_all([body, shared]))
    unshared = run(capsys, "render", "-f", str(tmp_path))
    assert unshared.code == 1
    assert "SecretNotShared" in unshared.err
