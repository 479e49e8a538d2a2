"""Which ServiceLinks the operator serves under --ignore-namespaces and --namespace-selector, as namespaces'
labels change."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runtimes import bare_runtime

from servicelink.settings import Settings
from servicelink.views import ObjectKey


def _link(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "servicelink.dev/v1alpha1",
        "kind": "ServiceLink",
        "metadata": {"namespace": namespace, "name": "links", "generation": 1, "uid": f"uid-{namespace}"},
        "spec": {"configMapName": "links-config", "links": [{"key": "A", "service": "a"}]},
    }


def _namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


class _Kube:
    """A cluster with one ServiceLink in each of the namespaces pay, search and legacy."""

    def list_mappings(self) -> list[dict[str, Any]]:
        return []

    def list_objects(self, *, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        return [_link(ns) for ns in ("pay", "search", "legacy") if namespace in (None, ns)]


class _Queue:
    def __init__(self) -> None:
        self.added: list[ObjectKey] = []

    def add_all(self, keys: list[ObjectKey]) -> None:
        self.added.extend(keys)


def test_a_namespace_that_comes_to_match_the_selector_is_served_and_one_that_leaves_is_forgotten() -> None:
    settings = Settings(namespace_selector="team in (pay,search)", ignore_namespaces=("legacy",))
    queue = _Queue()

    async def run() -> None:
        with ThreadPoolExecutor(2) as executor:
            runtime = bare_runtime(settings, kube=_Kube(), executor=executor, queue=queue)
            for body in (_namespace("pay", team="pay"), _namespace("search"), _namespace("legacy", team="pay")):
                assert runtime._put_namespace(body) == []
            runtime.started = True
            await runtime.relist()
            assert runtime.cache.servicelink_keys() == [("pay", "links")]
            assert not runtime.serves("legacy")  # matches, but the ignore list wins

            runtime._put_namespace(_namespace("search", team="search"))  # labelled: its ServiceLinks listed
            await asyncio.gather(*runtime.selecting)
            assert queue.added == [("search", "links")]
            assert sorted(runtime.cache.servicelink_keys()) == [("pay", "links"), ("search", "links")]

            runtime._put_namespace(_namespace("pay"))  # unlabelled: forgotten, nothing to reconcile
            assert not runtime.serves("pay")
            assert runtime.cache.servicelink_keys() == [("search", "links")]
            runtime._drop_namespace("", "search")  # deleted
            assert runtime.cache.servicelink_keys() == []
            assert queue.added == [("search", "links")]

    asyncio.run(run())
