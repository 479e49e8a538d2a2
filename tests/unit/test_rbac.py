"""RBAC_RULES is exactly what the code calls: kube.py's client methods and kopf's watches, no more, no less."""

from __future__ import annotations

import ast
from pathlib import Path

from servicelink import handlers
from servicelink.kube import _LISTERS, RBAC_RULES
from servicelink.model import GROUP

KUBE = Path(__file__).resolve().parents[2] / "operator" / "servicelink" / "kube.py"
# kubernetes client method -> the (group, resource, verb) triples the API server authorizes it as.
CLIENT_CALLS = {
    "read_namespaced_config_map": {("", "configmaps", "get")},
    # Server-side apply is a patch, authorized as create when it creates the object.
    "patch_namespaced_config_map": {("", "configmaps", "patch"), ("", "configmaps", "create")},
    "patch_namespaced_custom_object": {(GROUP, "servicelinks", "patch")},
    "patch_namespaced_custom_object_status": {(GROUP, "servicelinks/status", "patch")},
    "patch_namespaced_deployment": {("apps", "deployments", "patch")},
    "patch_namespaced_stateful_set": {("apps", "statefulsets", "patch")},
    "patch_namespaced_daemon_set": {("apps", "daemonsets", "patch")},
    "create_namespaced_event": {("", "events", "create")},
    "list_cluster_custom_object": {(GROUP, "servicelinks", "list")},
    # GET /version: a non-resource URL every authenticated identity may read (system:discovery).
    "get_code": set(),
    "read_namespaced_lease": {("coordination.k8s.io", "leases", "get")},
    "create_namespaced_lease": {("coordination.k8s.io", "leases", "create")},
    "replace_namespaced_lease": {("coordination.k8s.io", "leases", "update")},
    "list_namespaced_custom_object": {(GROUP, "servicelinks", "list")},
}
_LIST_RESOURCES = {
    "Service": ("", "services"),
    "EndpointSlice": ("discovery.k8s.io", "endpointslices"),
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
}
for _kind, (_api, _stem) in _LISTERS.items():
    _group, _resource = _LIST_RESOURCES[_kind]
    for _name in (f"list_{_stem}_for_all_namespaces", f"list_namespaced_{_stem}"):
        CLIENT_CALLS[_name] = {(_group, _resource, "list")}
# kopf itself: it watches CRDs to notice ones installed later, and namespaces for --namespace patterns.
KOPF_OWN = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
}


def called_methods() -> set[str]:
    """Client methods kube.py names: attribute calls, and method names kept as strings (the workload patchers)."""
    tree = ast.parse(KUBE.read_text())
    names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    # list_objects builds its method names from _LISTERS.
    names |= {f"list_{stem}_for_all_namespaces" for _, stem in _LISTERS.values()}
    names |= {f"list_namespaced_{stem}" for _, stem in _LISTERS.values()}
    return names & CLIENT_CALLS.keys()


def watched() -> set[tuple[str, str, str]]:
    registry = handlers.REGISTRY
    found = set()
    for handler in [*registry._watching.get_all_handlers(), *registry._indexing.get_all_handlers()]:
        selector = handler.selector
        for verb in ("list", "watch"):
            found.add((selector.group or "", selector.any_name, verb))
    return found


def test_every_client_method_used_is_mapped() -> None:
    tree = ast.parse(KUBE.read_text())
    apis = {"_core", "_apps", "_custom", "_discovery", "_version", "_coordination"}
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr in apis
    }
    assert used - {"getattr"} <= CLIENT_CALLS.keys()


def test_rbac_rules_are_exactly_what_the_code_uses() -> None:
    needed = set().union(*(CLIENT_CALLS[m] for m in called_methods())) | watched() | KOPF_OWN
    granted = {(group, resource, verb) for group, resource, verbs in RBAC_RULES for verb in verbs}
    assert granted == needed
