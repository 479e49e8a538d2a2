"""RBAC_RULES is exactly what the code calls: kube.py's requests and kopf's watches, no more, no less."""

from __future__ import annotations

import inspect
import re
from types import SimpleNamespace
from typing import Any

from servicelink import handlers
from servicelink.kube import (
    _LISTERS,
    OPTIONAL_RBAC_RULES,
    RBAC_RULES,
    SECRET_RBAC_RULES,
    Kube,
    listed_source,
    shared_secrets_source,
    workload_source,
)
from servicelink.model import WORKLOAD_KINDS, WORKLOAD_RESOURCES


class _Recorder:
    """Stands in for the client's ApiClient: records each request kube.py makes and answers 200 with no items."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []  # (HTTP method, path, content type)

    def param_serialize(
        self, *, method: str, resource_path: str, header_params: dict[str, str], query_params: Any = (), **_: Any
    ) -> tuple:
        kind = "watch" if ("watch", "true") in list(query_params) else header_params.get("Content-Type", "")
        self.requests.append((method, resource_path, kind))
        return (method, resource_path)

    def call_api(self, *_: Any, **__: Any) -> Any:
        body = SimpleNamespace(
            data=b'{"items": [], "metadata": {}}',
            drain_conn=lambda: None,
            release_conn=lambda: None,
            stream=lambda amount: iter(()),
        )
        return SimpleNamespace(status=200, response=body)


def authorized_as(method: str, path: str, content_type: str) -> set[tuple[str, str, str]]:
    """The (group, resource, verb) triples the API server authorizes a request as."""
    if path.rstrip("/") == "/version":
        return set()  # a non-resource URL every authenticated identity may read (system:discovery)
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if not rest:
        return set()  # discovery of a group version: a non-resource URL everyone may read (system:discovery)
    if rest[:1] == ["namespaces"]:
        rest = rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2:]
    resource = "/".join([resource, *sub])
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method) or ("get" if name else "list")
    if content_type == "watch":
        verb = "watch"
    verbs = {verb, "create"} if content_type == "application/apply-patch+yaml" else {verb}  # apply may create
    return {(group, resource, v) for v in verbs}


def requested() -> set[tuple[str, str, str]]:
    """Call every method of Kube once and return what its requests are authorized as."""
    recorder = _Recorder()
    kube = Kube(recorder)
    meta = {"metadata": {"name": "n", "namespace": "ns"}}
    kube.get_lease(namespace="ns", name="n")
    kube.write_lease(body=meta, create=True)
    kube.write_lease(body=meta, create=False)
    kube.check_api()
    for namespace in (None, "ns"):
        sources = [listed_source(kind, namespace) for kind in _LISTERS if kind != "ServiceLink"]  # kopf's watch
        sources += [workload_source(WORKLOAD_RESOURCES[kind], namespace) for kind in WORKLOAD_KINDS]
        for source in [*sources, shared_secrets_source(namespace)]:  # what the informers list and watch
            kube.list_source(source)
            kube.list_page(source, None)
            list(kube.watch_source(source, resource_version="1"))
        kube.list_objects(kind="ServiceLink", namespace=namespace)
    kube.get_configmap(namespace="ns", name="n")
    kube.get_secret(namespace="ns", name="n")
    kube.apply_secret(body=meta, force=False)
    kube.list_mappings()
    kube.patch_mapping_status(name="clonesets.apps.kruise.io", status={})
    kube.served_kind(group="apps.kruise.io", version="v1alpha1", plural="clonesets")
    kube.may(group="apps.kruise.io", plural="clonesets", verb="patch")
    kube.apply_configmap(body=meta, force=False)
    kube.patch_servicelink_status(namespace="ns", name="n", status={})
    kube.set_servicelink_finalizers(namespace="ns", name="n", finalizers=[], resource_version="1")
    for workload in WORKLOAD_KINDS:
        kube.list_workloads(resource=WORKLOAD_RESOURCES[workload], namespace=None)  # the CLI reads a mapped kind
        kube.set_workload_config_hash(
            resource=WORKLOAD_RESOURCES[workload],
            namespace="ns",
            name="n",
            annotation="a",
            value="v",
            resource_version="",
        )
    kube.restart_rollout(namespace="ns", name="n", at="2026-12-07T10:00:00Z")
    for _ in range(2):  # the second one patches the first one's count
        kube.record_event(involved={"namespace": "ns", "name": "n"}, reason="R", message="m")
    return set().union(*(authorized_as(*request) for request in recorder.requests))


# kopf itself: it watches CRDs to notice ones installed later, and namespaces for --namespace patterns.
KOPF_OWN = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
}


def watched() -> set[tuple[str, str, str]]:
    registry = handlers.REGISTRY
    found = set()
    for handler in [*registry._watching.get_all_handlers(), *registry._indexing.get_all_handlers()]:
        selector = handler.selector
        for verb in ("list", "watch"):
            found.add((selector.group or "", selector.any_name, verb))
    return found


def test_every_public_method_of_kube_is_called_above() -> None:
    public = {name for name in vars(Kube) if not name.startswith("_")}
    called = set(re.findall(r"kube\.(\w+)\(", inspect.getsource(requested)))
    assert public == called


def test_rbac_rules_are_exactly_what_the_code_uses() -> None:
    """The optional kinds' calls are granted apart, in OPTIONAL_RBAC_RULES; the core rules name none of them."""
    optional_watches = {
        (r.group, r.plural, verb) for r in WORKLOAD_RESOURCES.values() if r.optional for verb in ("list", "watch")
    }
    needed = requested() | watched() | optional_watches | KOPF_OWN
    granted = {(group, resource, verb) for group, resource, verbs in RBAC_RULES for verb in verbs}
    optional = {(group, resource, verb) for group, resource, verbs in OPTIONAL_RBAC_RULES for verb in verbs}
    secrets = {(group, resource, verb) for group, resource, verbs in SECRET_RBAC_RULES for verb in verbs}
    assert granted | optional | secrets == needed
    assert not granted & (optional | secrets)
    assert {resource for _, resource, _ in optional} == {"rollouts"}
    assert {resource for _, resource, _ in secrets} == {"secrets"}
