"""What an informer lists and watches, and how soon it lists again a kind the API server does not serve."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, cast

from servicelink.informer import UNSERVED_SECONDS, Informer, Keep, unserved_wait
from servicelink.kube import Kube, Source, listed_source, shared_secrets_source, workload_source
from servicelink.model import WORKLOAD_RESOURCES
from servicelink.settings import Settings
from servicelink.views import ObjectKey


def test_a_source_is_the_path_of_its_list_and_watch_and_names_itself_in_logs() -> None:
    services = listed_source("Service", "shop")
    assert services.path == "/api/v1/namespaces/shop/services"
    assert str(services) == "services in shop"
    rollouts = workload_source(WORKLOAD_RESOURCES["Rollout"], None)
    assert rollouts.path == "/apis/argoproj.io/v1alpha1/rollouts"
    assert str(rollouts) == "rollouts.argoproj.io"
    secrets = shared_secrets_source("shop")
    assert secrets.selector == "servicelink.dev/shared=true"
    assert str(secrets) == "secrets in shop labelled servicelink.dev/shared=true"


def test_an_unserved_kind_is_listed_every_two_seconds_at_first_then_less_often_up_to_once_a_minute() -> None:
    every, patience, longest = UNSERVED_SECONDS
    assert unserved_wait(0.0) == unserved_wait(patience - 1) == every == 2.0
    assert unserved_wait(patience) == patience  # then the waits double
    assert unserved_wait(45.0) == 45.0
    assert unserved_wait(3600.0) == longest == 60.0


def _body(namespace: str, name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": "7"}}


class _Kube:
    """A Kube whose list of Services holds one in each of two namespaces, in one page."""

    def list_page(self, source: Source, token: str | None) -> tuple[list[dict[str, Any]], str | None, str]:
        return [_body("shop", "db"), _body("kube-system", "dns")], None, "7"


def test_an_informer_passes_over_what_an_ignored_namespace_holds_in_lists_and_events() -> None:
    held: dict[ObjectKey, Mapping[str, Any]] = {("kube-system", "old"): {}}  # held before it was ignored

    def put(body: Mapping[str, Any]) -> list[ObjectKey]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        held[key] = body
        return [key]

    def drop(namespace: str, name: str) -> list[ObjectKey]:
        held.pop((namespace, name), None)
        return [(namespace, name)]

    due: list[ObjectKey] = []

    async def run(call: Callable[[], Any]) -> Any:
        return call()

    async def inform() -> None:
        informer = Informer(
            listed_source("Service", None),
            kube=cast("Kube", _Kube()),
            keep=Keep(put, drop, lambda namespace: list(held)),
            due=due.extend,
            run=run,
            serves=Settings(ignore_namespaces=("kube-system",)).serves,
        )
        assert await informer._list() == "7"
        assert informer.count == 1
        informer._apply("ADDED", _body("kube-system", "metrics"))
        informer._apply("DELETED", _body("kube-system", "dns"))
        informer._apply("MODIFIED", _body("shop", "web"))

    asyncio.run(inform())
    assert set(held) == {("shop", "db"), ("shop", "web")}
    # The list forgets what the cache held of the ignored namespace; nothing of it is put or due since.
    assert due == [("kube-system", "old"), ("shop", "db"), ("shop", "web")]
