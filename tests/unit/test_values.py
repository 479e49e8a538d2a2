"""values.py: which value each key gets, kept or resolved, and the keys an earlier ServiceLink holds."""

from __future__ import annotations

from servicelink import conditions as c
from servicelink.resolve import LinkResult, SecretUse
from servicelink.values import decide_values, desired_values, sibling_conflicts
from servicelink.views import Claim

T0 = "2026-01-01T00:00:00Z"
AUTH = "http://auth-service.identity.svc.cluster.local:3001"
AUTH_OK = LinkResult(key="AUTH_SERVICE_URL", service="identity/auth-service", value=AUTH, reason=c.RESOLVED, message="")
CART_MISSING = LinkResult(
    key="CART_URL", service="gallery/cart", value=None, reason=c.SERVICE_NOT_FOUND, message="not found"
)
FORBIDDEN = LinkResult(
    key="OTHER", service="b/x", value=None, reason=c.CROSS_NAMESPACE_FORBIDDEN, message="", keeps_last_value=False
)
OLDER = Claim(namespace="shop", name="a", uid="1", created=T0, configmap="cfg", keys=frozenset({"A", "Z"}))


def test_desired_values_keep_the_last_value_only_where_it_may_stay() -> None:
    previous = {"AUTH_SERVICE_URL": "old", "CART_URL": "http://cart:1", "OTHER": "secret"}
    assert desired_values([AUTH_OK, CART_MISSING, FORBIDDEN], previous) == {
        "AUTH_SERVICE_URL": AUTH,
        "CART_URL": "http://cart:1",
    }


def test_sibling_conflicts_name_the_earlier_servicelink() -> None:
    conflicts = sibling_conflicts({"A": "x", "B": "y"}, earlier=[OLDER], namespace="shop", configmap="cfg")
    assert conflicts == {
        "A": "key A of ConfigMap shop/cfg is already written by ServiceLink shop/a; remove it from one of them"
    }


def test_decide_values_leaves_out_what_an_earlier_servicelink_holds_and_keeps_what_may_stay() -> None:
    a = LinkResult(key="A", service="shop/a", value="http://a", reason=c.RESOLVED, message="")
    decided = decide_values(
        [a, CART_MISSING, FORBIDDEN],
        services={},
        previous={"CART_URL": "http://cart:1", "OTHER": "x"},
        earlier=[OLDER],
        siblings=frozenset({"A", "Z"}),
        namespace="shop",
        configmap="cfg",
    )
    assert decided.desired == {"CART_URL": "http://cart:1"}
    assert set(decided.conflicts) == {"A"}
    assert decided.siblings == frozenset({"A", "Z"})
    assert decided.creator is None


def test_values_of_links_with_credentials_go_to_the_secret_alone() -> None:
    url = LinkResult(
        key="DATABASE_URL",
        service="shop/db",
        value="sha256:0123456789abcdef",
        reason=c.RESOLVED,
        message="",
        credentials=SecretUse(secret="pg", keys=("username", "password"), resource_version="7"),
        secret_value="postgres://app:pw@db:5432/app",
    )
    unshared = LinkResult(key="CACHE_URL", service="shop/cache", value=None, reason=c.SECRET_NOT_SHARED, message="")
    decided = decide_values(
        [AUTH_OK, url, unshared],
        services={},
        previous={"CACHE_URL": "redis://old"},  # before the link had credentials: not kept in the ConfigMap
        earlier=[],
        siblings=frozenset(),
        namespace="shop",
        configmap="cfg",
        secret_keys=frozenset({"DATABASE_URL", "CACHE_URL"}),
    )
    assert decided.desired == {"AUTH_SERVICE_URL": AUTH}
    assert decided.secret == {"DATABASE_URL": "postgres://app:pw@db:5432/app"}
    assert "app:pw" not in repr(decided)
