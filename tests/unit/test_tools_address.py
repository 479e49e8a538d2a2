"""tools/address.py: reading addresses in values, and links that render them byte for byte."""

from __future__ import annotations

import pytest

from servicelink.tools.address import Address, link_fields, parse_address, propose_link, service_of
from servicelink.views import ServiceView


def view(namespace: str, name: str, *ports: tuple[str | None, int], expose_to: str = "") -> ServiceView:
    return ServiceView.from_body(
        {
            "metadata": {"name": name, "namespace": namespace, "annotations": {"servicelink.dev/expose-to": expose_to}},
            "spec": {"ports": [{"name": n, "port": p} if n else {"port": p} for n, p in ports]},
        }
    )


SERVICES = {
    ("gallery", "auth"): view("gallery", "auth", ("http", 3001)),
    ("identity", "id"): view("identity", "id", ("a", 1), ("b", 2), expose_to="gallery"),
}


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("http://auth:3001", Address("auth", "http", 3001)),
        ("redis://redis:6379/0?x=1", Address("redis", "redis", 6379, "/0?x=1")),
        ("https://api.example.com", Address("api.example.com", "https")),
        ("db:5432", Address("db", None, 5432)),
        ("mongodb", Address("mongodb")),
        ("hello world", None),
        ("two words:1", None),
        ("", None),
    ],
)
def test_parse_address(value: str, address: Address | None) -> None:
    assert parse_address(value) == address


def test_service_of_reads_the_forms_cluster_dns_serves() -> None:
    assert service_of("auth", namespace="g", cluster_domain="cluster.local") == (("g", "auth"), "{host}")
    assert service_of("id.identity", namespace="g", cluster_domain="cluster.local") == (
        ("identity", "id"),
        "{service}.{namespace}",
    )
    assert service_of("id.identity.svc.corp", namespace="g", cluster_domain="corp") == (("identity", "id"), "{fqdn}")
    assert service_of("api.example.com", namespace="g", cluster_domain="cluster.local") is None


@pytest.mark.parametrize(
    ("value", "fields"),
    [
        ("http://auth:3001", {"key": "K", "service": "auth"}),
        ("auth", {"key": "K", "service": "auth", "template": "{host}"}),
        ("auth:3001", {"key": "K", "service": "auth", "template": "{host}:{port}"}),
        ("grpc://auth:3001/x", {"key": "K", "service": "auth", "scheme": "grpc", "path": "/x"}),
        ("http://auth", {"key": "K", "service": "auth", "template": "{scheme}://{host}{path}"}),
        (
            "http://id.identity.svc.cluster.local:2/v1",
            {"key": "K", "service": "id", "namespace": "identity", "port": "b", "path": "/v1"},
        ),
        (
            "id.identity:1",
            {
                "key": "K",
                "service": "id",
                "namespace": "identity",
                "port": "a",
                "template": "{service}.{namespace}:{port}",
            },
        ),
    ],
)
def test_proposed_links_render_the_value_exactly(value: str, fields: dict[str, object]) -> None:
    link = propose_link("K", value, namespace="gallery", services=SERVICES, cluster_domain="cluster.local")
    assert not isinstance(link, str), link
    assert link_fields(link) == fields


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("http://localhost:3001", "points at localhost, the container itself"),
        ("http://cart:1", "cart is not a Service"),
        ("not an address!", "not a service address"),
        (
            "http://auth:3002",
            "the closest link renders 'Service gallery/auth has no port 3002 (ports: http:3001); "
            "fix links[key=K].port', not the value",
        ),
    ],
)
def test_values_without_an_exact_link_say_why(value: str, why: str) -> None:
    assert propose_link("K", value, namespace="gallery", services=SERVICES, cluster_domain="cluster.local") == why
