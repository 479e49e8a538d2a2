"""servicelink leave's plan: which ownerReferences, field managers and finalizers go (tools/leave.py)."""

from __future__ import annotations

from typing import Any

from servicelink.tools.leave import (
    LEFT_MANAGER,
    describe_release,
    hand_over_fields,
    plan_finalizers,
    plan_release,
    written_objects,
)

OWNER = {"apiVersion": "servicelink.dev/v1alpha1", "kind": "ServiceLink", "name": "web", "uid": "u1"}
HELM_OWNER = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "keeper", "uid": "u2"}


def managed(manager: str, *keys: str, operation: str = "Apply") -> dict[str, Any]:
    fields = {"f:data": {f"f:{key}": {} for key in keys}}
    return {"manager": manager, "operation": operation, "apiVersion": "v1", "fieldsV1": fields}


def configmap(*, owners: list[dict[str, Any]], fields: list[dict[str, Any]], data: dict[str, str]) -> dict[str, Any]:
    metadata = {"name": "web-config", "namespace": "shop", "resourceVersion": "7", "ownerReferences": owners}
    return {"kind": "ConfigMap", "metadata": {**metadata, "managedFields": fields}, "data": data}


def test_an_owned_configmap_loses_the_ownerreference_and_hands_its_keys_over() -> None:
    body = configmap(
        owners=[OWNER, HELM_OWNER],
        fields=[managed("servicelink", "API_URL", "DB_URL"), managed("helm", "LOG_LEVEL", operation="Update")],
        data={"API_URL": "http://api:80", "DB_URL": "postgres://db:5432", "LOG_LEVEL": "debug"},
    )
    release = plan_release(body)
    assert release.keys == ("API_URL", "DB_URL")
    assert release.patch() == {
        "metadata": {
            "resourceVersion": "7",
            "ownerReferences": [HELM_OWNER],
            "managedFields": [
                managed(LEFT_MANAGER, "API_URL", "DB_URL"),
                managed("helm", "LOG_LEVEL", operation="Update"),
            ],
        }
    }
    assert describe_release(release) == (
        "ConfigMap shop/web-config: ownerReference to ServiceLink web removed; "
        "API_URL, DB_URL handed to field manager servicelink-left"
    )


def test_a_configmap_servicelink_never_touched_is_left_alone() -> None:
    release = plan_release(configmap(owners=[HELM_OWNER], fields=[managed("helm", "A")], data={"A": "1"}))
    assert not release.changes
    assert release.patch() == {"metadata": {"resourceVersion": "7"}}


def test_an_earlier_leave_merges_into_the_same_entry() -> None:
    fields = hand_over_fields([managed(LEFT_MANAGER, "A"), managed("servicelink", "B")])
    assert fields == [{**managed(LEFT_MANAGER, "A"), "fieldsV1": {"f:data": {"f:A": {}, "f:B": {}}}}]


def test_only_our_finalizer_goes() -> None:
    body = {"metadata": {"finalizers": ["servicelink.dev/configmap-keys", "example.com/keep"]}}
    assert plan_finalizers(body) == ["example.com/keep"]
    assert plan_finalizers({"metadata": {"finalizers": ["example.com/keep"]}}) is None


def test_the_secret_is_released_with_the_configmap() -> None:
    spec = {"configMapName": "web-config", "secretName": "web-credentials", "links": []}
    assert written_objects({"spec": spec}) == [("ConfigMap", "web-config"), ("Secret", "web-credentials")]
    assert written_objects({"spec": {"configMapName": "web-config"}}) == [("ConfigMap", "web-config")]
