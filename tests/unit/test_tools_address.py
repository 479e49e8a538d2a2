"""tools/address.py: reading addresses in values, and links that render them byte for byte."""

from __future__ import annotations

import re

import pytest
from console import REPO

from servicelink.tools.address import (
    ADDRESS_KEY_SUFFIXES,
    CARRIES_CREDENTIALS,
    CARRIES_USER_ONLY,
    CREDENTIAL_KEY_SUFFIXES,
    NOT_ESCAPED,
    Address,
    credentials_secret_name,
    hide_credentials,
    link_fields,
    parse_address,
    propose_link,
    read_address,
    read_userinfo,
    service_of,
    values_secret_name,
)
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
        ("postgres://app:s3cret@db:5432/app", Address("db", "postgres", 5432, "/app", credentials=True)),
        ("amqp://guest@rabbit", Address("rabbit", "amqp", credentials=True)),
        ("mongodb://u:p@ss:w@mongo:27017", Address("mongo", "mongodb", 27017, credentials=True)),
        ("app:s3cret@db:5432", Address("db", None, 5432, credentials=True)),
        ("ops@mail", Address("mail", credentials=True)),
        ("hello world", None),
        ("two words:1", None),
        ("", None),
    ],
)
def test_parse_address(value: str, address: Address | None) -> None:
    assert parse_address(value) == address


def test_parse_address_keeps_no_credentials() -> None:
    address = parse_address("postgres://app:s3cret@db:5432/app")
    kept = "s3cret" in repr(address) or "app:" in repr(address)
    assert not kept, "the Address keeps the user or password"


@pytest.mark.parametrize(
    ("key", "value", "read"),
    [
        ("DB_HOST", "db", Address("db")),
        ("mongodb_uri", "mongodb", Address("mongodb")),
        ("PGHOST", "db", Address("db")),
        ("REDIS_ENDPOINT", "redis:6379", Address("redis", None, 6379)),
        ("CACHE", "redis:6379", Address("redis", None, 6379)),
        ("MODE", "shop", "not a service address"),
        ("POSTGRES_PASSWORD", "shop", "a credential or database name: never linked"),
        ("POSTGRES_USER", "shop", "a credential or database name: never linked"),
        ("POSTGRES_DB", "shop", "a credential or database name: never linked"),
        ("PGDATABASE", "shop", "a credential or database name: never linked"),
        ("DB_NAME", "shop", "a credential or database name: never linked"),
        ("API_TOKEN", "http://auth:3001", "a credential or database name: never linked"),
        ("MONGODB", "mongodb://mongo:27017", Address("mongo", "mongodb", 27017)),
    ],
)
def test_a_bare_host_needs_an_address_key_and_a_credential_key_holds_no_address(
    key: str, value: str, read: Address | str
) -> None:
    assert read_address(key, value) == read


def test_the_docs_list_the_key_suffixes_the_tools_read() -> None:
    text = (REPO / "docs" / "how-to" / "troubleshoot.md").read_text()
    assert set(re.findall(r"`…(\w+)`", text)) == {*ADDRESS_KEY_SUFFIXES, *CREDENTIAL_KEY_SUFFIXES}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("postgres://app:s3cret@db:5432/app", "postgres://***@db:5432/app"),
        ("mongodb://u:p@ss:w@mongo:27017", "mongodb://***@mongo:27017"),
        ("postgres://app:${DB_PASSWORD}@db/app", "postgres://***@db/app"),
        ("app:s3cret@db:5432", "***@db:5432"),
        ("http://auth:3001", "http://auth:3001"),
        ("postgres://app:pass word@db/app", "postgres://***@db/app"),
        ("plain words", "plain words"),
    ],
)
def test_hide_credentials(value: str, shown: str) -> None:
    assert hide_credentials(value) == shown


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
        ("auth", {"key": "K_HOST", "service": "auth", "template": "{host}"}),
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
    key = str(fields["key"])
    link = propose_link(key, value, namespace="gallery", services=SERVICES, cluster_domain="cluster.local")
    assert not isinstance(link, str), link
    assert link_fields(link) == fields


@pytest.mark.parametrize(
    ("value", "fields"),
    [
        (
            "postgres://app:s3cret@auth:3001/app",
            {"key": "K", "service": "auth", "scheme": "postgres", "path": "/app"},
        ),
        # A percent-encoded password is kept encoded: the operator encodes the Secret's p@ss so.
        ("postgres://app:p%40ss@auth:3001", {"key": "K", "service": "auth", "scheme": "postgres"}),
        ("redis://:pw@auth:3001/0", {"key": "K", "service": "auth", "scheme": "redis", "path": "/0"}),
        ("app:pw@auth:3001", {"key": "K", "service": "auth", "template": "{username}:{password}@{host}:{port}"}),
        (
            "amqp://app:pw@auth/v",
            {
                "key": "K",
                "service": "auth",
                "scheme": "amqp",
                "path": "/v",
                "template": "{scheme}://{username}:{password}@{host}{path}",
            },
        ),
    ],
)
def test_a_value_with_credentials_gets_a_link_reading_them_from_a_secret(value: str, fields: dict[str, object]) -> None:
    link = propose_link(
        "K", value, namespace="gallery", services=SERVICES, cluster_domain="cluster.local", credentials=True
    )
    assert not isinstance(link, str), link
    assert link_fields(link) == {**fields, "credentials": {"secretName": "auth-credentials"}}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("amqp://guest@auth:3001", CARRIES_USER_ONLY),
        ("postgres://app:p!ss@auth:3001", NOT_ESCAPED),
        ("postgres://app:s3cret@auth:3002", "the closest link renders 'Service gallery/auth has no port 3002"),
    ],
)
def test_a_value_with_credentials_and_no_exact_link_says_why_without_them(value: str, why: str) -> None:
    got = propose_link(
        "K", value, namespace="gallery", services=SERVICES, cluster_domain="cluster.local", credentials=True
    )
    assert isinstance(got, str)
    assert got.startswith(why)
    assert "s3cret" not in got
    assert "p!ss" not in got


def test_read_userinfo_decodes_what_a_url_reader_decodes() -> None:
    assert read_userinfo("postgres://app:p%40ss@db:5432/app") == ("app", "p@ss")
    assert read_userinfo("mongodb://u:p@ss:w@mongo:27017") == ("u", "p@ss:w")
    assert read_userinfo("amqp://guest@rabbit") == ("guest", None)
    assert read_userinfo("http://auth:3001") is None


def test_secret_names() -> None:
    assert (credentials_secret_name("db"), values_secret_name("shop-config"), values_secret_name("app")) == (
        "db-credentials",
        "shop-secrets",
        "app-secrets",
    )


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("http://localhost:3001", "points at localhost, the container itself"),
        ("http://cart:1", "cart is not a Service"),
        ("not an address!", "not a service address"),
        ("auth", "not a service address"),
        ("postgres://app:s3cret@auth:3001/app", CARRIES_CREDENTIALS),
        (
            "http://auth:3002",
            "the closest link renders 'Service gallery/auth has no port 3002 (ports: http:3001); "
            "fix links[key=K].port', not the value",
        ),
    ],
)
def test_values_without_an_exact_link_say_why(value: str, why: str) -> None:
    assert propose_link("K", value, namespace="gallery", services=SERVICES, cluster_domain="cluster.local") == why
