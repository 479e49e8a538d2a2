"""tools/adopt.py: a ServiceLink that renders each hand-written value exactly, and the keys to hand over."""

from __future__ import annotations

from typing import Any

from servicelink.tools.adopt import adopt_configmap
from servicelink.tools.commands import adoption_notes, dump_yaml
from servicelink.tools.offline import build_world, link_servicelinks, render_configmaps

SERVICES = [
    {
        "kind": "Service",
        "metadata": {"name": "auth-service"},
        "spec": {"ports": [{"name": "http", "port": 3001}]},
    },
    {
        "kind": "Service",
        "metadata": {"name": "app-service"},
        "spec": {"ports": [{"name": "http", "port": 3002}]},
    },
]
PASSWORD = "pw-not-to-copy"
SEED = {"AUTH_SERVICE_URL": "http://auth-service:3001", "APP_SERVICE_URL": "http://app-service:3002"}


def hand_written(data: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "ConfigMap",
        "metadata": {
            "name": "gateway-service-config",
            "namespace": "gallery",
            "managedFields": [
                {
                    "manager": "kubectl-create",
                    "operation": "Update",
                    "fieldsV1": {"f:data": {f"f:{k}": {} for k in data}},
                }
            ],
        },
        "data": data,
    }


def test_the_seeds_configmap_is_adopted_byte_for_byte() -> None:
    world = build_world(SERVICES, namespace="gallery")
    adoption = adopt_configmap(hand_written(SEED), world=world, cluster_domain="cluster.local")
    assert adoption.left == []
    assert adoption.servicelink is not None
    assert adoption.servicelink["spec"] == {
        "configMapName": "gateway-service-config",
        "links": [
            {"key": "APP_SERVICE_URL", "service": "app-service"},
            {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
        ],
    }
    assert adoption.owners == {"APP_SERVICE_URL": ["kubectl-create"], "AUTH_SERVICE_URL": ["kubectl-create"]}
    assert adoption.handover == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "gateway-service-config", "namespace": "gallery"},
        "data": dict(sorted(SEED.items())),
    }
    # What the operator would write from the proposal is what is there.
    rendered = render_configmaps(
        link_servicelinks(build_world([*SERVICES, adoption.servicelink], namespace="gallery"), cluster_domain="x")
    )
    assert rendered[0]["data"] == SEED


def test_values_without_a_service_and_keys_of_servicelinks_are_left_alone() -> None:
    world = build_world(
        [
            *SERVICES,
            {
                "kind": "ServiceLink",
                "metadata": {"name": "other"},
                "spec": {"configMapName": "gateway-service-config", "links": [{"key": "OWNED", "service": "x"}]},
            },
        ],
        namespace="gallery",
    )
    data = {
        **SEED,
        "LOG_LEVEL": "info",
        "CART_URL": "http://cart:1",
        "OWNED": "v",
        "AUTH_OLD": "http://auth-service:1",
        "UPSTREAM": "app-service",
        "AUTH_PASSWORD": "auth-service",
    }
    adoption = adopt_configmap(hand_written(data), world=world, cluster_domain="cluster.local")
    assert adoption.servicelink is not None
    assert [link["key"] for link in adoption.servicelink["spec"]["links"]] == ["APP_SERVICE_URL", "AUTH_SERVICE_URL"]
    assert adoption.left == [
        (
            "AUTH_OLD",
            "the closest link renders 'Service gallery/auth-service has no port 1 (ports: http:3001); "
            "fix links[key=AUTH_OLD].port', not the value",
        ),
        ("AUTH_PASSWORD", "a credential or database name: never linked"),
        ("CART_URL", "cart is not a Service"),
        ("LOG_LEVEL", "not a service address"),
        ("OWNED", "already written by ServiceLink other"),
        ("UPSTREAM", "not a service address"),
    ]


def test_nothing_to_adopt() -> None:
    adoption = adopt_configmap(hand_written({"A": "b c"}), world=build_world([], namespace="g"), cluster_domain="c")
    assert (adoption.servicelink, adoption.handover, adoption.left) == (None, None, [("A", "not a service address")])


def test_a_url_with_credentials_gets_a_link_reading_a_secret_and_the_password_shows_nowhere() -> None:
    world = build_world(SERVICES, namespace="gallery")
    data = {**SEED, "DATABASE_URL": f"postgres://gallery:{PASSWORD}@app-service:3002/gallery"}
    adoption = adopt_configmap(hand_written(data), world=world, cluster_domain="cluster.local")
    assert adoption.left == []
    assert adoption.servicelink is not None
    assert adoption.servicelink["spec"] == {
        "configMapName": "gateway-service-config",
        "secretName": "gateway-service-secrets",
        "links": [
            {"key": "APP_SERVICE_URL", "service": "app-service"},
            {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
            {
                "key": "DATABASE_URL",
                "service": "app-service",
                "scheme": "postgres",
                "path": "/gallery",
                "credentials": {"secretName": "app-service-credentials"},
            },
        ],
    }
    assert adoption.credentials == {"DATABASE_URL": "app-service-credentials"}
    # The key goes to the Secret spec.secretName: it is not handed over into the ConfigMap.
    assert adoption.handover is not None
    assert adoption.handover["data"] == dict(sorted(SEED.items()))
    assert set(adoption.owners) == set(SEED)
    assert adoption.create_secrets == [
        "kubectl create secret generic app-service-credentials -n gallery"
        " --from-literal=username='<the username>' --from-literal=password='<the password>'; "
        "kubectl label secret app-service-credentials -n gallery servicelink.dev/shared=true; "
        "kubectl annotate secret app-service-credentials -n gallery servicelink.dev/readable-by=gateway-service-config"
    ]
    notes = adoption_notes(adoption)
    assert (
        "ConfigMap gallery/gateway-service-config: DATABASE_URL carries credentials: its link reads them from Secret"
        " app-service-credentials (keys username and password), and servicelink writes it to Secret"
        " gateway-service-secrets, not to the ConfigMap. Point its readers at Secret gateway-service-secrets"
        " (secretKeyRef or envFrom secretRef), then remove DATABASE_URL from the ConfigMap"
    ) in notes
    shown = repr(adoption) + dump_yaml([adoption.servicelink, adoption.handover]) + "\n".join(notes)
    leaked = PASSWORD in shown or "gallery:" in shown
    assert not leaked, "the user or password shows in what adopt prints"


def test_a_user_without_a_password_and_an_unencoded_password_are_left_alone() -> None:
    world = build_world(SERVICES, namespace="gallery")
    data = {"AMQP_URL": "amqp://guest@app-service:3002", "DATABASE_URL": "postgres://app:p!ss@app-service:3002/app"}
    adoption = adopt_configmap(hand_written(data), world=world, cluster_domain="cluster.local")
    assert adoption.servicelink is None
    assert adoption.left == [
        ("AMQP_URL", "carries a user and no password: not linked (a link's credentials are a username and a password)"),
        (
            "DATABASE_URL",
            "its user or password is not percent-encoded as servicelink writes it (RFC 3986: every byte but letters,"
            " digits and -._~ as %XX), so no link renders it byte for byte; encode it in the value first",
        ),
    ]
