"""render.py: the ConfigMap apply body, the hash of values, and the plan of one ConfigMap write."""

from __future__ import annotations

import re
from typing import Any

import pytest

from servicelink.model import FIELD_MANAGER
from servicelink.render import (
    managed_keys,
    plan_configmap,
    render_configmap,
    render_data_size,
    render_hash,
    render_owner_reference,
)

URL = "http://auth-service:3001"
NEW_URL = "http://auth-service:4000"
UID = "sl-uid-1"


def fields(*keys: str) -> dict[str, Any]:
    return {"f:data": {".": {}, **{f"f:{key}": {} for key in keys}}}


def entry(manager: str, *keys: str, operation: str = "Apply") -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "time": "2026-01-01T00:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields(*keys),
    }


def configmap(data: dict[str, str], *managed: dict[str, Any], owner_uid: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "gateway-service-config",
        "namespace": "gallery",
        "resourceVersion": "7",
        "managedFields": list(managed),
    }
    if owner_uid is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "servicelink.dev/v1alpha1",
                "kind": "ServiceLink",
                "name": "gateway-service",
                "uid": owner_uid,
                "controller": True,
            }
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def plan(
    cm: dict[str, Any] | None,
    desired: dict[str, str],
    previous: dict[str, str] | None = None,
    siblings: frozenset[str] = frozenset(),
) -> Any:
    return plan_configmap(
        cm, desired=desired, previous=previous or {}, siblings=siblings, owner_uid=UID, manager=FIELD_MANAGER
    )


# --- render_hash --------------------------------------------------------------------------------------------


def test_hash_is_eight_hex_digits() -> None:
    assert re.fullmatch(r"[0-9a-f]{8}", render_hash({"AUTH_SERVICE_URL": URL}))
    assert re.fullmatch(r"[0-9a-f]{8}", render_hash({}))


def test_hash_is_stable_across_releases() -> None:
    # A changed digest would roll every consumer in every cluster on upgrade.
    assert render_hash({"AUTH_SERVICE_URL": URL}) == "2a24c958"


def test_hash_ignores_key_order() -> None:
    assert render_hash({"A": "1", "B": "2"}) == render_hash({"B": "2", "A": "1"})


def test_hash_changes_when_a_value_changes() -> None:
    assert render_hash({"AUTH_SERVICE_URL": URL}) != render_hash({"AUTH_SERVICE_URL": NEW_URL})


def test_hash_changes_when_a_key_is_added_removed_or_renamed() -> None:
    base = render_hash({"A": "1"})
    assert render_hash({"A": "1", "B": "2"}) != base
    assert render_hash({}) != base
    assert render_hash({"B": "1"}) != base


def test_hash_does_not_confuse_key_and_value_boundaries() -> None:
    assert render_hash({"A": "1", "B": "2"}) != render_hash({"A": '1","B":"2'})
    assert render_hash({"AB": ""}) != render_hash({"A": "B"})


def test_hash_of_equal_values_is_equal() -> None:
    assert render_hash({"A": URL, "B": "mongodb"}) == render_hash(dict([("A", URL), ("B", "mongodb")]))


# --- render_configmap, owner, size --------------------------------------------------------------------------


def test_render_configmap_with_owner() -> None:
    owner = render_owner_reference(
        name="gateway-service", uid=UID, api_version="servicelink.dev/v1alpha1", kind="ServiceLink"
    )
    body = render_configmap(
        name="gateway-service-config",
        namespace="gallery",
        data={"MONGODB_HOST": "mongodb", "AUTH_SERVICE_URL": URL},
        owner=owner,
    )
    assert body == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "gateway-service-config",
            "namespace": "gallery",
            "ownerReferences": [
                {
                    "apiVersion": "servicelink.dev/v1alpha1",
                    "kind": "ServiceLink",
                    "name": "gateway-service",
                    "uid": UID,
                    "controller": True,
                }
            ],
        },
        "data": {"AUTH_SERVICE_URL": URL, "MONGODB_HOST": "mongodb"},
    }
    assert list(body["data"]) == ["AUTH_SERVICE_URL", "MONGODB_HOST"]


def test_render_configmap_without_owner_has_no_owner_references() -> None:
    body = render_configmap(name="cm", namespace="gallery", data={"A": "1"}, owner=None)
    assert "ownerReferences" not in body["metadata"]
    assert body["data"] == {"A": "1"}


def test_render_configmap_with_a_resource_version_applies_only_to_that_version() -> None:
    body = render_configmap(name="cm", namespace="gallery", data={"A": "1"}, owner=None, resource_version="42")
    assert body["metadata"] == {"name": "cm", "namespace": "gallery", "resourceVersion": "42"}
    assert "resourceVersion" not in render_configmap(name="cm", namespace="gallery", data={}, owner=None)["metadata"]


def test_render_configmap_with_no_data_withdraws_everything() -> None:
    assert render_configmap(name="cm", namespace="gallery", data={}, owner=None)["data"] == {}


def test_data_size_counts_utf8_bytes_of_keys_and_values() -> None:
    assert render_data_size({"AB": "cde", "K": "é"}) == 2 + 3 + 1 + 2


# --- managed_keys -------------------------------------------------------------------------------------------


def test_managed_keys_reads_managed_fields() -> None:
    cm = configmap(
        {"LOG_LEVEL": "info", "AUTH_SERVICE_URL": URL, "SHARED": "x"},
        entry("helm", "LOG_LEVEL", "SHARED", operation="Update"),
        entry("servicelink", "AUTH_SERVICE_URL", "SHARED"),
    )
    assert managed_keys(cm, manager="servicelink") == {
        "LOG_LEVEL": {"helm"},
        "AUTH_SERVICE_URL": {"servicelink"},
        "SHARED": {"helm", "servicelink"},
    }


def test_managed_keys_counts_only_our_applies_as_ours() -> None:
    cm = configmap({"AUTH_SERVICE_URL": URL}, entry("servicelink", "AUTH_SERVICE_URL", operation="Update"))
    owners = managed_keys(cm, manager="servicelink")
    assert "servicelink" not in owners["AUTH_SERVICE_URL"]


def test_managed_keys_ignores_entries_without_data_and_configmaps_without_managed_fields() -> None:
    cm = configmap(
        {"A": "1"},
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {}}}},
    )
    assert managed_keys(cm, manager="servicelink") == {}
    assert managed_keys({"data": {"A": "1"}}, manager="servicelink") == {}


# --- plan_configmap -----------------------------------------------------------------------------------------


def test_new_configmap_is_written_with_owner() -> None:
    result = plan(None, {"AUTH_SERVICE_URL": URL, "MONGODB_HOST": "mongodb"})
    assert result.write
    assert result.with_owner
    assert not result.force
    assert result.apply_data == {"AUTH_SERVICE_URL": URL, "MONGODB_HOST": "mongodb"}
    assert set(result.changes) == {("AUTH_SERVICE_URL", None, URL), ("MONGODB_HOST", None, "mongodb")}
    assert result.foreign == {}
    assert result.restored == {}


def test_existing_foreign_configmap_keeps_its_keys_and_gets_no_owner() -> None:
    helm = configmap({"LOG_LEVEL": "info"}, entry("helm", "LOG_LEVEL", operation="Update"))
    result = plan(helm, {"AUTH_SERVICE_URL": URL})
    assert result.write
    assert not result.with_owner
    assert result.apply_data == {"AUTH_SERVICE_URL": URL}  # LOG_LEVEL is not ours to apply, so it is left alone
    assert result.changes == (("AUTH_SERVICE_URL", None, URL),)
    assert result.size == render_data_size({"LOG_LEVEL": "info", "AUTH_SERVICE_URL": URL})


def test_configmap_we_created_keeps_its_owner() -> None:
    cm = configmap({"AUTH_SERVICE_URL": URL}, entry("servicelink", "AUTH_SERVICE_URL"), owner_uid=UID)
    assert plan(cm, {"AUTH_SERVICE_URL": NEW_URL}, {"AUTH_SERVICE_URL": URL}).with_owner


def test_configmap_owned_by_another_servicelink_gets_no_owner_from_us() -> None:
    cm = configmap({"CART_URL": "http://cart:80"}, entry("servicelink", "CART_URL"), owner_uid="another-uid")
    result = plan(cm, {"AUTH_SERVICE_URL": URL}, siblings=frozenset({"CART_URL"}))
    assert not result.with_owner


def test_up_to_date_configmap_is_not_written() -> None:
    cm = configmap(
        {"LOG_LEVEL": "info", "AUTH_SERVICE_URL": URL},
        entry("helm", "LOG_LEVEL", operation="Update"),
        entry("servicelink", "AUTH_SERVICE_URL"),
    )
    result = plan(cm, {"AUTH_SERVICE_URL": URL}, {"AUTH_SERVICE_URL": URL})
    assert not result.write
    assert result.changes == ()
    assert not result.force


def test_changed_value_is_written_and_reported() -> None:
    cm = configmap({"AUTH_SERVICE_URL": URL}, entry("servicelink", "AUTH_SERVICE_URL"), owner_uid=UID)
    result = plan(cm, {"AUTH_SERVICE_URL": NEW_URL}, {"AUTH_SERVICE_URL": URL})
    assert result.write
    assert not result.force
    assert result.changes == (("AUTH_SERVICE_URL", URL, NEW_URL),)
    assert result.apply_data == {"AUTH_SERVICE_URL": NEW_URL}


def test_same_value_held_only_by_another_manager_is_claimed_with_a_write() -> None:
    # The key holds the right value, but SSA ownership only comes with an apply.
    cm = configmap({"AUTH_SERVICE_URL": URL}, entry("servicelink", "AUTH_SERVICE_URL", operation="Update"))
    result = plan(cm, {"AUTH_SERVICE_URL": URL}, {"AUTH_SERVICE_URL": URL})
    assert result.write
    assert result.changes == ()


def test_key_held_by_a_foreign_manager_is_never_written_by_us() -> None:
    cm = configmap(
        {"LOG_LEVEL": "info", "AUTH_SERVICE_URL": "http://legacy:80"},
        entry("helm", "LOG_LEVEL", "AUTH_SERVICE_URL", operation="Update"),
    )
    result = plan(cm, {"AUTH_SERVICE_URL": URL, "MONGODB_HOST": "mongodb"})
    assert result.foreign == {"AUTH_SERVICE_URL": "helm"}
    assert "AUTH_SERVICE_URL" not in result.apply_data
    assert result.apply_data == {"MONGODB_HOST": "mongodb"}
    assert not result.force
    assert all(key != "AUTH_SERVICE_URL" for key, _, _ in result.changes)


def test_only_foreign_keys_means_no_write() -> None:
    cm = configmap({"AUTH_SERVICE_URL": "http://legacy:80"}, entry("helm", "AUTH_SERVICE_URL", operation="Update"))
    result = plan(cm, {"AUTH_SERVICE_URL": URL})
    assert result.foreign == {"AUTH_SERVICE_URL": "helm"}
    assert not result.write


def test_key_we_wrote_before_now_held_by_another_manager_is_restored_with_force() -> None:
    cm = configmap(
        {"AUTH_SERVICE_URL": "http://hacked:1"},
        entry("kubectl-edit", "AUTH_SERVICE_URL", operation="Update"),
        entry("servicelink"),
    )
    result = plan(cm, {"AUTH_SERVICE_URL": URL}, {"AUTH_SERVICE_URL": URL})
    assert result.restored == {"AUTH_SERVICE_URL": "kubectl-edit"}
    assert result.force
    assert result.write
    assert result.foreign == {}
    assert result.apply_data == {"AUTH_SERVICE_URL": URL}
    assert result.changes == (("AUTH_SERVICE_URL", "http://hacked:1", URL),)


def test_key_we_no_longer_want_is_released() -> None:
    cm = configmap(
        {"AUTH_SERVICE_URL": URL, "OLD_URL": "http://old:80", "LOG_LEVEL": "info"},
        entry("servicelink", "AUTH_SERVICE_URL", "OLD_URL"),
        entry("helm", "LOG_LEVEL", operation="Update"),
    )
    result = plan(cm, {"AUTH_SERVICE_URL": URL}, {"AUTH_SERVICE_URL": URL, "OLD_URL": "http://old:80"})
    assert result.write
    assert result.apply_data == {"AUTH_SERVICE_URL": URL}
    assert result.changes == (("OLD_URL", "http://old:80", None),)
    assert result.size == render_data_size({"AUTH_SERVICE_URL": URL, "LOG_LEVEL": "info"})


def test_releasing_every_key_applies_empty_data() -> None:
    cm = configmap(
        {"AUTH_SERVICE_URL": URL, "LOG_LEVEL": "info"},
        entry("servicelink", "AUTH_SERVICE_URL"),
        entry("helm", "LOG_LEVEL", operation="Update"),
    )
    result = plan(cm, {})
    assert result.write
    assert result.apply_data == {}
    assert result.changes == (("AUTH_SERVICE_URL", URL, None),)


def test_sibling_servicelink_keys_are_kept_as_they_are() -> None:
    cm = configmap(
        {"AUTH_SERVICE_URL": URL, "CART_URL": "http://cart:80"}, entry("servicelink", "AUTH_SERVICE_URL", "CART_URL")
    )
    result = plan(cm, {"AUTH_SERVICE_URL": URL}, {"AUTH_SERVICE_URL": URL}, siblings=frozenset({"CART_URL"}))
    assert result.apply_data == {"AUTH_SERVICE_URL": URL, "CART_URL": "http://cart:80"}
    assert not result.write
    assert result.changes == ()


def test_sibling_keys_ride_along_when_our_value_changes() -> None:
    cm = configmap(
        {"AUTH_SERVICE_URL": URL, "CART_URL": "http://cart:80"}, entry("servicelink", "AUTH_SERVICE_URL", "CART_URL")
    )
    result = plan(cm, {"AUTH_SERVICE_URL": NEW_URL}, {"AUTH_SERVICE_URL": URL}, siblings=frozenset({"CART_URL"}))
    assert result.write
    assert result.apply_data == {"AUTH_SERVICE_URL": NEW_URL, "CART_URL": "http://cart:80"}
    assert result.changes == (("AUTH_SERVICE_URL", URL, NEW_URL),)


def test_size_counts_foreign_and_new_keys() -> None:
    cm = configmap({"LOG_LEVEL": "debug"}, entry("helm", "LOG_LEVEL", operation="Update"))
    result = plan(cm, {"A": "x" * 100})
    assert result.size == len("LOG_LEVEL") + len("debug") + 1 + 100


@pytest.mark.parametrize("data", [None, {}])
def test_existing_configmap_without_data_gets_our_keys(data: dict[str, str] | None) -> None:
    cm = configmap({})
    cm["data"] = data
    result = plan(cm, {"AUTH_SERVICE_URL": URL})
    assert result.write
    assert result.apply_data == {"AUTH_SERVICE_URL": URL}
    assert not result.with_owner
