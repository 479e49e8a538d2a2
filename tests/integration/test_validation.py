"""Bad ServiceLinks are refused by ``kubectl apply`` with the field named, or reported in a condition."""

from __future__ import annotations

import json
from typing import Any

import pytest
from objects import condition, service, servicelink

from servicelink.testing.fixtures import Cluster, OperatorProcess, wait_for

OK = {"key": "AUTH_SERVICE_URL", "service": "auth-service", "port": 3001}


def link(**changes: Any) -> dict[str, Any]:
    return {**OK, **changes}


INVALID = [
    ("key starts with a digit", {"links": [link(key="1AUTH")]}, "spec.links[0].key"),
    ("key with a dash", {"links": [link(key="AUTH-URL")]}, "spec.links[0].key"),
    ("duplicate key", {"links": [link(), link(service="other")]}, "spec.links[1]"),
    ("port 0", {"links": [link(port=0)]}, "spec.links[0].port"),
    ("port 70000", {"links": [link(port=70000)]}, "spec.links[0].port"),
    ("port name in capitals", {"links": [link(port="HTTP")]}, "spec.links[0].port"),
    ("port name too long", {"links": [link(port="a-very-long-port-name")]}, "spec.links[0].port"),
    ("path without slash", {"links": [link(path="v1")]}, "spec.links[0].path"),
    ("unknown placeholder", {"links": [link(template="{scheme}://{hostname}")]}, "spec.links[0].template"),
    ("stray brace", {"links": [link(template="{host")]}, "spec.links[0].template"),
    ("empty links", {"links": []}, "spec.links"),
    ("257 links", {"links": [link(key=f"K{i}") for i in range(257)]}, "spec.links"),
    ("service not a DNS-1035 label", {"links": [link(service="Auth_Service")]}, "spec.links[0].service"),
    ("service starting with a digit", {"links": [link(service="1auth")]}, "spec.links[0].service"),
    ("namespace not a DNS label", {"links": [link(namespace="Other_NS")]}, "spec.links[0].namespace"),
    ("scheme with a space", {"links": [link(scheme="ht tp")]}, "spec.links[0].scheme"),
    ("link without service", {"links": [{"key": "A"}]}, "spec.links[0].service"),
    ("configMapName invalid", {"configMapName": "Bad_Name"}, "spec.configMapName"),
    ("configMapName missing", {"configMapName": None}, "spec.configMapName"),
    ("configMapName Kubernetes writes", {"configMapName": "kube-root-ca.crt"}, "Kubernetes writes that ConfigMap"),
    ("credentials without secretName", {"links": [link(credentials={"secretName": "pg"})]}, "set spec.secretName"),
    ("{password} without credentials", {"links": [link(template="{scheme}://{password}@{host}")]}, "spec.links[0]"),
    (
        "credentials' Secret name invalid",
        {"secretName": "s", "links": [link(credentials={"secretName": "Bad_Name"})]},
        "spec.links[0].credentials.secretName",
    ),
    (
        "credentials' passwordKey with a slash",
        {"secretName": "s", "links": [link(credentials={"secretName": "pg", "passwordKey": "a/b"})]},
        "spec.links[0].credentials.passwordKey",
    ),
    ("secretName invalid", {"secretName": "Bad_Name"}, "spec.secretName"),
    ("unknown rollout", {"rollout": "Sometimes"}, "spec.rollout"),
    ("unknown workload kind", {"workloads": {"names": [{"kind": "Pod", "name": "x"}]}}, "spec.workloads.names[0].kind"),
]


@pytest.mark.parametrize(("case", "changes", "field"), INVALID, ids=[case for case, _, _ in INVALID])
def test_apply_refuses_and_names_the_field(
    cluster: Cluster, crd: Any, namespace: str, case: str, changes: dict[str, Any], field: str
) -> None:
    body = servicelink("bad", namespace, "cfg", OK)
    body["spec"].update(changes)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    refused = cluster.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    assert refused.returncode != 0, f"{case}: accepted"
    assert field in refused.stderr, refused.stderr
    assert cluster.get("servicelink", "bad", "-n", namespace) is None


def test_the_valid_example_of_the_contract_is_accepted(cluster: Cluster, crd: Any, namespace: str) -> None:
    cluster.apply(
        servicelink(
            "gateway-service",
            namespace,
            "gateway-service-config",
            {
                "key": "AUTH_SERVICE_URL",
                "service": "auth-service",
                "namespace": "identity",
                "port": 3001,
                "scheme": "http",
                "path": "/v1",
                "template": "{scheme}://{host}:{port}{path}",
            },
            {"key": "MONGODB_HOST", "service": "mongodb", "template": "{host}"},
            {"key": "API", "service": "api", "port": "http"},
            workloads={
                "auto": True,
                "names": [{"kind": "Deployment", "name": "gateway-service"}],
                "selector": {"matchLabels": {"tier": "edge"}},
            },
            rollout="Rolling",
        )
    )
    assert cluster.get("sl", "gateway-service", "-n", namespace)["spec"]["rollout"] == "Rolling"


def test_what_only_the_operator_can_tell_becomes_a_condition(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    cluster.apply(
        [
            service("api", namespace, ("http", 80), ("grpc", 9090)),
            servicelink("bad", namespace, "cfg", {"key": "API", "service": "api", "port": "metrics"}),
            service("ok", namespace, 80),
            servicelink("good", namespace, "cfg2", {"key": "OK", "service": "ok"}),
        ]
    )

    def port_not_found() -> dict[str, Any] | None:
        found = condition(cluster.get("sl", "bad", "-n", namespace), "Resolved")
        return found if found.get("reason") == "PortNotFound" else None

    resolved = wait_for(port_not_found, what="PortNotFound")
    assert "metrics" in resolved["message"]
    assert "http:80" in resolved["message"]
    wait_for(
        lambda: condition(cluster.get("sl", "good", "-n", namespace), "Ready").get("status") == "True",
        what="the valid ServiceLink served alongside",
    )
    assert "Traceback" not in operator_process.log()


def test_credentials_without_secret_access_are_reported_and_nothing_is_written(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    db = {"key": "DATABASE_URL", "service": "db", "scheme": "postgres", "credentials": {"secretName": "pg"}}
    body = servicelink("app", namespace, "app-config", {"key": "API", "service": "api"}, db)
    body["spec"]["secretName"] = "app-secrets"
    cluster.apply([service("api", namespace, 80), service("db", namespace, 5432), body])

    def secrets_disabled() -> dict[str, Any] | None:
        found = condition(cluster.get("sl", "app", "-n", namespace), "Resolved")
        return found if found.get("reason") == "SecretsDisabled" else None

    resolved = wait_for(secrets_disabled, what="SecretsDisabled")
    assert "links[key=DATABASE_URL].credentials" in resolved["message"]
    configmap = wait_for(lambda: cluster.get("configmap", "app-config", "-n", namespace), what="the ConfigMap")
    assert configmap["data"] == {"API": "http://api:80"}
    assert cluster.get("secret", "app-secrets", "-n", namespace) is None
