"""ServiceLink end to end: the operator run as users run it, against the real API server."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from objects import (
    data,
    deployment,
    external_service,
    service,
    servicelink,
    servicelink_state,
    set_port,
    shared_configmap,
    sl,
    wait_condition,
    wait_until_acted,
)

from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for

RESYNC_SECONDS = 3  # the operator's resync in the tests (fixtures.operator_env)
GATEWAY_LINKS = (
    {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
    {"key": "APP_SERVICE_URL", "service": "app-service"},
)


def test_gateway_config_from_the_seed(cluster: Cluster, namespace: str, operator_process: OperatorProcess) -> None:
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            service("app-service", namespace, 3002),
            servicelink("gateway-service", namespace, "gateway-service-config", *GATEWAY_LINKS),
        ]
    )
    expected = {"AUTH_SERVICE_URL": "http://auth-service:3001", "APP_SERVICE_URL": "http://app-service:3002"}
    wait_for(lambda: data(cluster, namespace, "gateway-service-config") == expected, what="gateway ConfigMap")
    wait_condition(cluster, namespace, "gateway-service", "Ready", "True", "Reconciled")
    table = cluster.kubectl("get", "servicelinks", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "CONFIGMAP", "READY", "LINKS", "ENDPOINTS", "AGE"]
    assert row.split()[:4] == ["gateway-service", "gateway-service-config", "True", "2/2"]
    status = sl(cluster, namespace, "gateway-service")["status"]
    assert status["values"] == expected
    assert status["observedGeneration"] == 1
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Resolved", "Synced", "RolledOut"}
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    configmap = cluster.get("configmap", "gateway-service-config", "-n", namespace, "--show-managed-fields")
    assert configmap["metadata"]["ownerReferences"][0]["kind"] == "ServiceLink"
    assert any(
        m["manager"] == "servicelink" and m["operation"] == "Apply" for m in configmap["metadata"]["managedFields"]
    )

    # A port change reaches the ConfigMap and the status within 2 seconds.
    cluster.apply(service("auth-service", namespace, 4001))
    started = time.monotonic()
    wait_for(
        lambda: (
            data(cluster, namespace, "gateway-service-config")["AUTH_SERVICE_URL"]  # type: ignore[index]
            == "http://auth-service:4001"
        ),
        timeout=2,
        interval=0.05,
        what="new port in ConfigMap",
    )
    wait_for(
        lambda: (
            sl(cluster, namespace, "gateway-service")["status"]["values"]["AUTH_SERVICE_URL"]
            == "http://auth-service:4001"
        ),
        timeout=max(0.1, 2 - (time.monotonic() - started)),
        interval=0.05,
        what="new port in status",
    )
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=gateway-service,reason=ValueChanged"
    ).stdout
    assert "http://auth-service:3001 -> http://auth-service:4001" in events

    # Deleting the Service keeps the last value and says which Service is missing.
    cluster.kubectl("delete", "service", "auth-service", "-n", namespace)
    resolved = wait_condition(cluster, namespace, "gateway-service", "Resolved", "False", "ServiceNotFound")
    assert f"{namespace}/auth-service" in resolved["message"]
    assert data(cluster, namespace, "gateway-service-config")["AUTH_SERVICE_URL"] == "http://auth-service:4001"  # type: ignore[index]
    warnings = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=ServiceNotFound").stdout
    assert "auth-service" in warnings

    cluster.apply(service("auth-service", namespace, 3001))
    wait_condition(cluster, namespace, "gateway-service", "Resolved", "True", "AllServicesFound")
    wait_for(lambda: data(cluster, namespace, "gateway-service-config") == expected, what="value back at 3001")


def test_templates_ports_and_external_names(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    cluster.apply(
        [
            service("mongodb", namespace, 27017),
            service("api", namespace, ("http", 8080), ("grpc", 9090)),
            external_service("legacy", namespace, "legacy.example.com"),
            servicelink(
                "app-service",
                namespace,
                "app-service-config",
                {"key": "MONGODB_HOST", "service": "mongodb", "template": "{host}"},
                {"key": "API_URL", "service": "api", "port": "http", "path": "/v1"},
                {"key": "API_ANY", "service": "api"},
                {"key": "LEGACY_URL", "service": "legacy", "port": 443, "scheme": "https"},
            ),
        ]
    )
    wait_for(
        lambda: (
            (data(cluster, namespace, "app-service-config") or {}).get("LEGACY_URL") == "https://legacy.example.com:443"
        ),
        what="ExternalName value",
    )
    values = data(cluster, namespace, "app-service-config")
    assert values == {
        "MONGODB_HOST": "mongodb",
        "API_URL": "http://api:8080/v1",
        "LEGACY_URL": "https://legacy.example.com:443",
    }
    resolved = wait_condition(cluster, namespace, "app-service", "Resolved", "False", "PortNotFound")
    assert "http:8080" in resolved["message"]
    assert "grpc:9090" in resolved["message"]
    table = cluster.kubectl("get", "sl", "-n", namespace).stdout
    assert "3/4" in table

    # The named port follows a renumbering.
    cluster.apply(service("api", namespace, ("http", 8081), ("grpc", 9090)))
    wait_for(
        lambda: data(cluster, namespace, "app-service-config")["API_URL"] == "http://api:8081/v1",  # type: ignore[index]
        what="renumbered named port",
    )


def test_cross_namespace_links_need_the_targets_consent(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    other = f"{namespace}-id"
    cluster.kubectl("create", "namespace", other)
    try:
        cluster.apply(
            [
                service("auth-service", other, 3001),
                servicelink(
                    "gateway",
                    namespace,
                    "gateway-config",
                    {"key": "AUTH_SERVICE_URL", "service": "auth-service", "namespace": other},
                ),
            ]
        )
        forbidden = wait_condition(cluster, namespace, "gateway", "Resolved", "False", "CrossNamespaceForbidden")
        assert "servicelink.dev/expose-to" in forbidden["message"]
        body = sl(cluster, namespace, "gateway")
        assert "3001" not in str(body["status"])
        assert not data(cluster, namespace, "gateway-config")

        cluster.kubectl("annotate", "service", "auth-service", "-n", other, f"servicelink.dev/expose-to={namespace}")
        fqdn = f"http://auth-service.{other}.svc.cluster.local:3001"
        wait_for(
            lambda: (data(cluster, namespace, "gateway-config") or {}).get("AUTH_SERVICE_URL") == fqdn,
            what="cross-namespace FQDN",
        )
        wait_condition(cluster, namespace, "gateway", "Ready", "True")

        cluster.kubectl("annotate", "service", "auth-service", "-n", other, "servicelink.dev/expose-to-")
        wait_condition(cluster, namespace, "gateway", "Resolved", "False", "CrossNamespaceForbidden")
        wait_for(
            lambda: "AUTH_SERVICE_URL" not in (data(cluster, namespace, "gateway-config") or {}),
            what="revoked value removed",
        )
        assert "AUTH_SERVICE_URL" not in sl(cluster, namespace, "gateway")["status"].get("values", {})
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_existing_configmap_is_co_managed_once_shared(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    # As a Helm chart would ship it: its own keys, and the consent annotation naming the ServiceLink.
    cluster.apply(
        shared_configmap("gateway-service-config", namespace, "gateway", {"LOG_LEVEL": "debug"}), "--field-manager=helm"
    )
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            service("app-service", namespace, 3002),
            servicelink("gateway", namespace, "gateway-service-config", GATEWAY_LINKS[0]),
        ]
    )
    wait_for(
        lambda: (
            data(cluster, namespace, "gateway-service-config")
            == {"LOG_LEVEL": "debug", "AUTH_SERVICE_URL": "http://auth-service:3001"}
        ),
        what="co-managed ConfigMap",
    )
    assert not cluster.get("configmap", "gateway-service-config", "-n", namespace)["metadata"].get("ownerReferences")

    cluster.apply(servicelink("gateway", namespace, "gateway-service-config", GATEWAY_LINKS[1]))
    wait_for(
        lambda: (
            data(cluster, namespace, "gateway-service-config")
            == {"LOG_LEVEL": "debug", "APP_SERVICE_URL": "http://app-service:3002"}
        ),
        what="key swapped",
    )

    cluster.kubectl("delete", "servicelink", "gateway", "-n", namespace, "--timeout=30s")
    assert data(cluster, namespace, "gateway-service-config") == {"LOG_LEVEL": "debug"}


def test_a_change_writes_over_the_configmap_last_seen_only_while_it_is_current(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    # A Service change writes without reading the ConfigMap first, guarded by the
    # resourceVersion of our last write: any edit since makes it read and decide again.
    helm = "--field-manager=helm"
    cluster.apply(shared_configmap("shared-config", namespace, "gateway", {"LOG_LEVEL": "debug"}), helm)
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            servicelink("gateway", namespace, "shared-config", GATEWAY_LINKS[0]),
            servicelink("own", namespace, "own-config", GATEWAY_LINKS[0]),
        ]
    )
    first = {"LOG_LEVEL": "debug", "AUTH_SERVICE_URL": "http://auth-service:3001"}
    wait_for(lambda: data(cluster, namespace, "shared-config") == first, what="co-managed ConfigMap")
    wait_for(lambda: data(cluster, namespace, "own-config"), what="own ConfigMap")

    # Another manager's edit since our write: the next change keeps it.
    cluster.apply(shared_configmap("shared-config", namespace, "gateway", {"LOG_LEVEL": "info"}), helm)
    # Our own ConfigMap deleted by hand: the next change creates it again.
    cluster.kubectl("delete", "configmap", "own-config", "-n", namespace)
    set_port(cluster, namespace, "auth-service", 3002)
    second = {"LOG_LEVEL": "info", "AUTH_SERVICE_URL": "http://auth-service:3002"}
    wait_for(lambda: data(cluster, namespace, "shared-config") == second, what="written over the edit")
    wait_for(
        lambda: data(cluster, namespace, "own-config") == {"AUTH_SERVICE_URL": "http://auth-service:3002"},
        what="own ConfigMap created again",
    )

    # Consent revoked just before a change: that change writes nothing.
    cluster.kubectl("annotate", "configmap", "shared-config", "-n", namespace, "servicelink.dev/writable-by-")
    revoked = cluster.get("configmap", "shared-config", "-n", namespace)["metadata"]["resourceVersion"]
    set_port(cluster, namespace, "auth-service", 3003)
    wait_condition(cluster, namespace, "gateway", "Synced", "False", "ConfigMapNotShared")
    wait_for(
        lambda: data(cluster, namespace, "own-config") == {"AUTH_SERVICE_URL": "http://auth-service:3003"},
        what="the change reached the own ConfigMap",
    )
    after = cluster.get("configmap", "shared-config", "-n", namespace)
    assert after["data"] == second
    assert after["metadata"]["resourceVersion"] == revoked


def test_created_configmap_is_collected_with_its_servicelink(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            servicelink("gateway", namespace, "gateway-config", GATEWAY_LINKS[0]),
        ]
    )
    wait_for(lambda: data(cluster, namespace, "gateway-config"), what="ConfigMap created")
    cluster.kubectl("delete", "servicelink", "gateway", "-n", namespace, "--timeout=30s")
    wait_for(lambda: cluster.get("configmap", "gateway-config", "-n", namespace) is None, what="ConfigMap collected")


def test_two_servicelinks_claiming_one_key(cluster: Cluster, namespace: str, operator_process: OperatorProcess) -> None:
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            service("auth-v2", namespace, 4001),
            servicelink("first", namespace, "shared", GATEWAY_LINKS[0]),
        ]
    )
    wait_condition(cluster, namespace, "first", "Ready", "True")
    # "shared" was created for "first": "second" writes into it only once it is shared.
    cluster.kubectl("annotate", "configmap", "shared", "-n", namespace, "servicelink.dev/writable-by=second")
    cluster.apply(
        servicelink(
            "second",
            namespace,
            "shared",
            {"key": "AUTH_SERVICE_URL", "service": "auth-v2"},
            {"key": "OTHER_URL", "service": "auth-v2"},
        )
    )
    synced = wait_condition(cluster, namespace, "second", "Synced", "False", "KeyConflict")
    assert "first" in synced["message"]
    wait_for(
        lambda: (
            data(cluster, namespace, "shared")
            == {"AUTH_SERVICE_URL": "http://auth-service:3001", "OTHER_URL": "http://auth-v2:4001"}
        ),
        what="both written",
    )
    cluster.kubectl("delete", "servicelink", "first", "-n", namespace, "--timeout=30s")
    wait_condition(cluster, namespace, "second", "Synced", "True")
    wait_for(
        lambda: (data(cluster, namespace, "shared") or {}).get("AUTH_SERVICE_URL") == "http://auth-v2:4001",
        what="key handed over",
    )


def test_the_oldest_servicelink_creates_a_new_configmap_whatever_the_order_of_reconciles(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, crd: Path, tmp_path: Path
) -> None:
    cluster.apply(
        [service("auth-service", namespace, 3001), servicelink("z-older", namespace, "shared", *GATEWAY_LINKS[:1])]
    )
    time.sleep(1.2)  # creationTimestamp has 1 s resolution
    cluster.apply(servicelink("a-younger", namespace, "shared", {"key": "OTHER_URL", "service": "auth-service"}))
    # Started now, the operator knows both at once and queues "a-younger" first by name.
    process = start_operator_process(kubeconfig_env, tmp_path / "operator.log")
    try:
        wait_condition(cluster, namespace, "z-older", "Synced", "True")
        refused = wait_condition(cluster, namespace, "a-younger", "Synced", "False", "ConfigMapNotShared")
        assert "kubectl annotate configmap shared" in refused["message"]  # before and after "shared" exists
        owners = cluster.get("configmap", "shared", "-n", namespace)["metadata"]["ownerReferences"]
        assert [ref["name"] for ref in owners] == ["z-older"]
        assert data(cluster, namespace, "shared") == {"AUTH_SERVICE_URL": "http://auth-service:3001"}
        # Once the older one and its ConfigMap are gone, the next oldest creates it.
        cluster.kubectl("delete", "servicelink", "z-older", "-n", namespace, "--timeout=30s")
        wait_condition(cluster, namespace, "a-younger", "Synced", "True", timeout=90)
        owners = cluster.get("configmap", "shared", "-n", namespace)["metadata"]["ownerReferences"]
        assert [ref["name"] for ref in owners] == ["a-younger"]
        assert data(cluster, namespace, "shared") == {"OTHER_URL": "http://auth-service:3001"}
    finally:
        process.stop()
        print(f"\n[servicelink] operator log {process.log_path}:\n{process.log()[-20000:]}", file=sys.stderr)


def _written(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """What servicelink may write in a namespace: each ConfigMap's, Deployment's and Event's resourceVersion, and
    each ServiceLink as objects.servicelink_state shows it."""
    found: dict[str, Any] = {}
    for kind in ("configmaps", "deployments", "events"):
        for item in cluster.get(kind, "-n", namespace)["items"]:
            found[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    for item in cluster.get("servicelinks", "-n", namespace)["items"]:
        found[f"servicelinks/{item['metadata']['name']}"] = servicelink_state(item)
    return found


def test_idle_and_restart_write_nothing(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess, tmp_path: Any
) -> None:
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            service("app-service", namespace, 3002),
            deployment("gateway-service", namespace, env_from="gateway-service-config"),
            servicelink("gateway-service", namespace, "gateway-service-config", *GATEWAY_LINKS),
        ]
    )
    wait_condition(cluster, namespace, "gateway-service", "Ready", "True")
    wait_until_acted(cluster, namespace, "gateway-service", "auth-service")  # whatever the first reconciles write
    before = _written(cluster, namespace)
    time.sleep(RESYNC_SECONDS)  # a resync falls in here, then a reconcile that comes after it
    wait_until_acted(cluster, namespace, "gateway-service", "app-service")
    assert _written(cluster, namespace) == before
    operator_process.stop()
    restarted = start_operator_process(cluster.kubeconfig, tmp_path / "again.log")
    try:
        wait_until_acted(cluster, namespace, "gateway-service", "auth-service")  # a reconcile of the new process
        assert _written(cluster, namespace) == before
    finally:
        restarted.stop()
