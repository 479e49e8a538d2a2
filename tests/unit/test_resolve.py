"""resolve.py: links plus Services as they are now give URLs, or a named reason why not."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from servicelink import conditions
from servicelink.model import Link, parse_spec
from servicelink.resolve import LinkResult, SecretUse, escape_userinfo, resolve_link, resolve_links
from servicelink.views import Endpoints, ObjectKey, SecretView, ServicePort, ServiceView

HERE = "gallery"
OTHER = "identity"


def service_body(
    name: str = "auth-service",
    namespace: str = HERE,
    *,
    ports: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    type_: str | None = None,
    external_name: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "ports": [{"name": "http", "port": 3001, "targetPort": 8080, "protocol": "TCP"}] if ports is None else ports
    }
    if type_ is not None:
        spec["type"] = type_
    if external_name is not None:
        spec["externalName"] = external_name
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": "u-1"}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def world(*bodies: dict[str, Any]) -> dict[ObjectKey, ServiceView]:
    views = [ServiceView.from_body(body) for body in bodies]
    return {(view.namespace, view.name): view for view in views}


def resolve(
    raw_link: dict[str, Any],
    *bodies: dict[str, Any],
    namespace: str = HERE,
    endpoints: dict[ObjectKey, Endpoints] | None = None,
    cluster_domain: str = "cluster.local",
) -> LinkResult:
    return resolve_link(
        Link.model_validate(raw_link),
        namespace=namespace,
        services=world(*bodies),
        endpoints=endpoints or {},
        cluster_domain=cluster_domain,
    )


AUTH = {"key": "AUTH_SERVICE_URL", "service": "auth-service"}


# --- ServiceView.from_body ----------------------------------------------------------------------------------


def test_from_body_reads_a_clusterip_service() -> None:
    view = ServiceView.from_body(
        service_body(
            ports=[{"name": "http", "port": 80}, {"port": 9090}],
            annotations={"servicelink.dev/expose-to": "gallery, shop  billing"},
        )
    )
    assert view.namespace == HERE
    assert view.name == "auth-service"
    assert view.type == "ClusterIP"
    assert view.ports == (ServicePort(name="http", port=80), ServicePort(name=None, port=9090))
    assert view.external_name is None
    assert view.expose_to == frozenset({"gallery", "shop", "billing"})


def test_from_body_reads_an_external_name_service() -> None:
    view = ServiceView.from_body(
        service_body("mongodb", ports=[], type_="ExternalName", external_name="mongo.example.com")
    )
    assert (view.type, view.external_name, view.ports) == ("ExternalName", "mongo.example.com", ())


def test_from_body_tolerates_a_bare_service() -> None:
    view = ServiceView.from_body({"metadata": {"name": "bare", "namespace": HERE}})
    assert view.ports == ()
    assert view.type == "ClusterIP"
    assert view.expose_to == frozenset()


def test_from_body_treats_an_empty_port_name_as_unnamed() -> None:
    view = ServiceView.from_body(service_body(ports=[{"name": "", "port": 8080}]))
    assert view.ports == (ServicePort(name=None, port=8080),)
    assert view.ports[0].describe() == "8080"


def test_allows_own_namespace_listed_namespaces_and_star() -> None:
    closed = ServiceView.from_body(service_body(namespace=OTHER))
    listed = ServiceView.from_body(service_body(namespace=OTHER, annotations={"servicelink.dev/expose-to": "gallery"}))
    star = ServiceView.from_body(service_body(namespace=OTHER, annotations={"servicelink.dev/expose-to": "*"}))
    assert closed.allows(OTHER)
    assert not closed.allows(HERE)
    assert listed.allows(HERE)
    assert not listed.allows("shop")
    assert star.allows(HERE)
    assert star.allows("shop")


# --- same namespace -----------------------------------------------------------------------------------------


def test_same_namespace_uses_the_short_host() -> None:
    result = resolve(AUTH, service_body())
    assert result.resolved
    assert result.value == "http://auth-service:3001"
    assert result.reason == conditions.RESOLVED
    assert result.service == "gallery/auth-service"


def test_namespace_spelled_out_as_own_still_uses_the_short_host() -> None:
    assert resolve({**AUTH, "namespace": HERE}, service_body()).value == "http://auth-service:3001"


def test_scheme_and_path_are_used() -> None:
    result = resolve({**AUTH, "scheme": "https", "path": "/v1"}, service_body())
    assert result.value == "https://auth-service:3001/v1"


def test_template_host_alone_gives_the_bare_service_name() -> None:
    mongo = service_body("mongodb", ports=[{"port": 27017}])
    assert resolve({"key": "MONGODB_HOST", "service": "mongodb", "template": "{host}"}, mongo).value == "mongodb"


def test_every_placeholder_is_filled() -> None:
    template = "{scheme}|{host}|{port}|{path}|{service}|{namespace}|{fqdn}"
    result = resolve({**AUTH, "template": template, "path": "/x"}, service_body())
    assert result.value == "http|auth-service|3001|/x|auth-service|gallery|auth-service.gallery.svc.cluster.local"


# --- cross namespace ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("expose_to", ["gallery", "shop,gallery", "shop gallery", "*"])
def test_cross_namespace_allowed_uses_the_fqdn(expose_to: str) -> None:
    svc = service_body(namespace=OTHER, annotations={"servicelink.dev/expose-to": expose_to})
    result = resolve({**AUTH, "namespace": OTHER}, svc)
    assert result.value == "http://auth-service.identity.svc.cluster.local:3001"
    assert result.service == "identity/auth-service"


def test_cross_namespace_host_uses_the_cluster_domain_setting() -> None:
    svc = service_body(namespace=OTHER, annotations={"servicelink.dev/expose-to": "*"})
    result = resolve({**AUTH, "namespace": OTHER, "template": "{host}"}, svc, cluster_domain="corp.internal")
    assert result.value == "auth-service.identity.svc.corp.internal"


@pytest.mark.parametrize(
    "annotations",
    [
        None,
        {},
        {"servicelink.dev/expose-to": "shop"},
        {"servicelink.dev/expose-to": ""},
        {"servicelink.dev/expose-to": "gallery-2"},
    ],
)
def test_cross_namespace_not_exposed_is_forbidden(annotations: dict[str, str] | None) -> None:
    svc = service_body(namespace=OTHER, annotations=annotations)
    result = resolve({**AUTH, "namespace": OTHER}, svc)
    assert not result.resolved
    assert result.value is None
    assert result.reason == conditions.CROSS_NAMESPACE_FORBIDDEN
    assert result.keeps_last_value is False


def test_cross_namespace_forbidden_says_the_same_whether_or_not_the_service_exists() -> None:
    closed = resolve(
        {**AUTH, "namespace": OTHER},
        service_body(namespace=OTHER),
        endpoints={(OTHER, "auth-service"): Endpoints(ready=2, total=3)},
    )
    absent = resolve({**AUTH, "namespace": OTHER})
    assert closed.reason == absent.reason == conditions.CROSS_NAMESPACE_FORBIDDEN
    assert closed.message == absent.message
    assert closed.endpoints is None
    assert absent.endpoints is None
    assert "3001" not in closed.message


def test_cross_namespace_from_a_namespace_that_is_exposed_to_does_not_open_a_third() -> None:
    svc = service_body(namespace=OTHER, annotations={"servicelink.dev/expose-to": "gallery"})
    result = resolve({**AUTH, "namespace": OTHER}, svc, namespace="shop")
    assert result.reason == conditions.CROSS_NAMESPACE_FORBIDDEN


# --- not found, ports -------------------------------------------------------------------------------------


def test_missing_service_in_own_namespace_is_service_not_found() -> None:
    result = resolve(AUTH)
    assert not result.resolved
    assert result.reason == conditions.SERVICE_NOT_FOUND
    assert "gallery/auth-service" in result.message
    assert result.keeps_last_value is True


def test_service_of_the_same_name_in_another_namespace_does_not_count() -> None:
    assert resolve(AUTH, service_body(namespace=OTHER)).reason == conditions.SERVICE_NOT_FOUND


def test_named_port_resolves_to_its_number() -> None:
    svc = service_body(ports=[{"name": "http", "port": 3001}, {"name": "metrics", "port": 9090}])
    assert resolve({**AUTH, "port": "metrics"}, svc).value == "http://auth-service:9090"


def test_port_number_present_on_the_service_is_used() -> None:
    svc = service_body(ports=[{"name": "http", "port": 3001}, {"name": "metrics", "port": 9090}])
    assert resolve({**AUTH, "port": 3001}, svc).value == "http://auth-service:3001"


def test_multi_port_service_without_port_is_port_not_found_listing_the_ports() -> None:
    svc = service_body(ports=[{"name": "http", "port": 3001}, {"name": "metrics", "port": 9090}, {"port": 7000}])
    result = resolve(AUTH, svc)
    assert not result.resolved
    assert result.reason == conditions.PORT_NOT_FOUND
    for described in ("http:3001", "metrics:9090", "7000"):
        assert described in result.message
    assert "AUTH_SERVICE_URL" in result.message


@pytest.mark.parametrize("port", [8080, "grpc"])
def test_absent_port_is_port_not_found_listing_the_ports(port: int | str) -> None:
    result = resolve({**AUTH, "port": port}, service_body())
    assert result.reason == conditions.PORT_NOT_FOUND
    assert "http:3001" in result.message
    assert str(port) in result.message


def test_service_without_ports_is_port_not_found() -> None:
    result = resolve(AUTH, service_body(ports=[]))
    assert result.reason == conditions.PORT_NOT_FOUND
    assert result.value is None


def test_single_unnamed_port_is_picked_without_port() -> None:
    assert resolve(AUTH, service_body(ports=[{"port": 80}])).value == "http://auth-service:80"


# --- ExternalName -------------------------------------------------------------------------------------------


def test_external_name_resolves_to_the_external_name_as_host() -> None:
    svc = service_body("mongodb", ports=[], type_="ExternalName", external_name="mongo.example.com")
    result = resolve({"key": "MONGODB_HOST", "service": "mongodb", "template": "{host}"}, svc)
    assert result.value == "mongo.example.com"


def test_external_name_with_a_port_number_uses_it() -> None:
    svc = service_body("mongodb", ports=[], type_="ExternalName", external_name="mongo.example.com")
    result = resolve({"key": "MONGODB_URL", "service": "mongodb", "port": 27017, "scheme": "mongodb"}, svc)
    assert result.value == "mongodb://mongo.example.com:27017"


def test_external_name_without_any_port_and_a_port_template_is_port_not_found() -> None:
    svc = service_body("mongodb", ports=[], type_="ExternalName", external_name="mongo.example.com")
    result = resolve({"key": "MONGODB_URL", "service": "mongodb"}, svc)
    assert result.reason == conditions.PORT_NOT_FOUND
    assert result.value is None


def test_cross_namespace_external_name_resolves_to_the_external_name() -> None:
    svc = service_body(
        "mongodb",
        OTHER,
        ports=[],
        type_="ExternalName",
        external_name="mongo.example.com",
        annotations={"servicelink.dev/expose-to": "*"},
    )
    result = resolve({"key": "MONGODB_HOST", "service": "mongodb", "namespace": OTHER, "template": "{host}"}, svc)
    assert result.value == "mongo.example.com"


# --- endpoints, many links ----------------------------------------------------------------------------------


def test_endpoints_are_passed_through() -> None:
    eps = Endpoints(ready=2, total=3)
    result = resolve(AUTH, service_body(), endpoints={(HERE, "auth-service"): eps})
    assert result.endpoints == eps


def test_no_endpoint_slices_gives_no_endpoints() -> None:
    assert resolve(AUTH, service_body()).endpoints is None


def test_resolve_links_keeps_spec_order_and_reports_each() -> None:
    parsed = parse_spec(
        {
            "configMapName": "gateway-service-config",
            "links": [
                {"key": "MONGODB_HOST", "service": "mongodb", "template": "{host}"},
                {"key": "AUTH_SERVICE_URL", "service": "auth-service"},
                {"key": "CART_URL", "service": "cart"},
            ],
        }
    )
    results = resolve_links(
        parsed,
        namespace=HERE,
        services=world(service_body(), service_body("mongodb", ports=[{"port": 27017}])),
        endpoints={},
        cluster_domain="cluster.local",
    )
    assert [(r.key, r.value, r.reason) for r in results] == [
        ("MONGODB_HOST", "mongodb", conditions.RESOLVED),
        ("AUTH_SERVICE_URL", "http://auth-service:3001", conditions.RESOLVED),
        ("CART_URL", None, conditions.SERVICE_NOT_FOUND),
    ]


# --- Links with credentials ---------------------------------------------------------------------------------

PASSWORD = "p@ss:w/rd%20é"
DB = {"key": "DATABASE_URL", "service": "db", "scheme": "postgres", "path": "/app", "credentials": {"secretName": "pg"}}


def secret_body(
    data: dict[str, str], *, readable_by: str | None = "app", name: str = "pg", version: str = "7"
) -> dict[str, Any]:
    annotations = {} if readable_by is None else {"servicelink.dev/readable-by": readable_by}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": HERE, "resourceVersion": version, "annotations": annotations},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def resolve_db(
    secrets: dict[str, SecretView] | None, raw_link: dict[str, Any] = DB, *, salt: str = "uid-1"
) -> LinkResult:
    return resolve_link(
        Link.model_validate(raw_link),
        namespace=HERE,
        services=world(service_body("db", ports=[{"port": 5432}])),
        endpoints={},
        cluster_domain="cluster.local",
        servicelink="app",
        salt=salt,
        secrets=secrets,
    )


def shared(*bodies: dict[str, Any]) -> dict[str, SecretView]:
    return {view.name: view for view in map(SecretView.from_body, bodies)}


def test_a_url_with_credentials_escapes_them_and_round_trips_through_url_parsing() -> None:
    result = resolve_db(shared(secret_body({"username": "app", "password": PASSWORD})))
    assert result.resolved
    assert result.secret_value is not None
    parsed = urlsplit(result.secret_value)
    assert (parsed.scheme, parsed.hostname, parsed.port, parsed.path) == ("postgres", "db", 5432, "/app")
    assert (unquote(parsed.username or ""), unquote(parsed.password or "")) == ("app", PASSWORD)
    assert result.credentials == SecretUse(secret="pg", keys=("username", "password"), resource_version="7")


def test_the_value_outside_the_secret_is_a_digest_that_changes_with_the_password_alone() -> None:
    first = resolve_db(shared(secret_body({"username": "app", "password": PASSWORD})))
    again = resolve_db(shared(secret_body({"username": "app", "password": PASSWORD, "other": "x"}, version="8")))
    rotated = resolve_db(shared(secret_body({"username": "app", "password": PASSWORD + "!"})))
    assert first.value is not None
    assert first.value.startswith("sha256:")
    assert PASSWORD not in first.value
    assert first.value == again.value  # another key of the Secret changed: not this value
    assert first.value != rotated.value
    assert first.value != resolve_db(shared(secret_body({"username": "app", "password": PASSWORD})), salt="u2").value


def test_nothing_of_the_password_shows_in_a_repr() -> None:
    views = shared(secret_body({"username": "app", "password": PASSWORD}))
    result = resolve_db(views)
    assert "p@ss" not in repr(result)
    assert "p@ss" not in repr(views)
    assert "p%40ss" not in repr(result)


def test_custom_keys_and_template() -> None:
    link = {
        **DB,
        "template": "mongodb://{username}:{password}@{host}:{port}/?authSource=admin",
        "credentials": {"secretName": "pg", "usernameKey": "user", "passwordKey": "pass"},
    }
    result = resolve_db(shared(secret_body({"user": "root", "pass": "a b"})), link)
    assert result.secret_value == "mongodb://root:a%20b@db:5432/?authSource=admin"


@pytest.mark.parametrize(
    ("secrets", "reason", "says"),
    [
        (None, conditions.SECRETS_DISABLED, "secrets.enabled=true"),
        ({}, conditions.SECRET_NOT_SHARED, "kubectl label secret pg -n gallery servicelink.dev/shared=true"),
        (
            shared(secret_body({"username": "a", "password": PASSWORD}, readable_by="other")),
            conditions.SECRET_NOT_SHARED,
            "kubectl annotate secret pg -n gallery servicelink.dev/readable-by=app",
        ),
        (shared(secret_body({"username": PASSWORD})), conditions.SECRET_KEY_NOT_FOUND, "has no key password (keys:"),
    ],
    ids=["no secret access", "not labelled or absent", "not readable by this ServiceLink", "key missing"],
)
def test_a_secret_not_there_for_this_link_is_a_named_problem(
    secrets: dict[str, SecretView] | None, reason: str, says: str
) -> None:
    result = resolve_db(secrets)
    assert (result.value, result.secret_value, result.reason) == (None, None, reason)
    assert says in result.message
    assert "p@ss" not in result.message  # it names keys, never values


def test_readable_by_star_shares_with_every_servicelink_of_the_namespace() -> None:
    assert resolve_db(shared(secret_body({"username": "a", "password": "b"}, readable_by="*"))).resolved


def test_escape_userinfo_keeps_only_unreserved_characters() -> None:
    assert escape_userinfo("aZ09-._~") == "aZ09-._~"
    assert escape_userinfo("@:/%?#[] é") == "%40%3A%2F%25%3F%23%5B%5D%20%C3%A9"
    assert unquote(escape_userinfo(PASSWORD)) == PASSWORD


def test_a_template_without_port_needs_none_from_a_service_of_several_ports() -> None:
    two = service_body("db", ports=[{"name": "sql", "port": 5432}, {"name": "metrics", "port": 9187}])
    result = resolve({"key": "DB_HOST", "service": "db", "template": "{host}"}, two)
    assert (result.value, result.reason) == ("db", conditions.RESOLVED)
