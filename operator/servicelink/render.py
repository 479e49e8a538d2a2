"""Render values into a ConfigMap apply body and a short hash of them, and plan the write of one ConfigMap (pure)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The API server refuses objects over 1 MiB; keep our share well clear of that
# so the rest of the object (metadata, managedFields, foreign keys) still fits.
CONFIGMAP_DATA_LIMIT = 1024 * 1024 - 64 * 1024


def render_hash(values: Mapping[str, str]) -> str:
    """Return an 8-hex-digit digest of ``values`` that changes exactly when a key or value changes."""
    canonical = json.dumps(dict(sorted(values.items())), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def render_data_size(data: Mapping[str, str]) -> int:
    """Return the bytes ``data`` takes in a ConfigMap, keys and values together."""
    return sum(len(key.encode()) + len(value.encode()) for key, value in data.items())


def render_configmap(
    *,
    name: str,
    namespace: str,
    data: Mapping[str, str],
    owner: Mapping[str, Any] | None,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """Return the server-side-apply body that owns exactly ``data`` (and ``owner`` if given).

    Keys left out are released: the API server removes them when no other
    field manager owns them, so an empty ``data`` withdraws all of ours. With
    ``resource_version`` the apply succeeds only on that version of the object.
    """
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(sorted(data.items()))}


def render_secret(
    *,
    name: str,
    namespace: str,
    data: Mapping[str, str],
    owner: Mapping[str, Any] | None,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """Return the server-side-apply body of a Secret that owns exactly ``data``, base64-encoded, as
    ``render_configmap`` does for a ConfigMap. No ``type``: a Secret created by it is Opaque, and the type of one
    shared with us stays its owner's."""
    body = render_configmap(name=name, namespace=namespace, data={}, owner=owner, resource_version=resource_version)
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in sorted(data.items())}
    return {**body, "kind": "Secret", "data": encoded}


def decode_secret(secret: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return ``secret`` with its data decoded to text, the form ``plan_configmap`` plans on; None stays None.

    A value that is not base64 of UTF-8 text is kept as it is: it cannot equal a value we write.
    """
    if secret is None:
        return None
    decoded: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            decoded[key] = base64.b64decode(str(value), validate=True).decode()
        except ValueError:
            decoded[key] = str(value)
    return {**secret, "data": decoded}


def render_owner_reference(*, name: str, uid: str, api_version: str, kind: str) -> dict[str, Any]:
    """Return an ownerReference that lets the garbage collector delete the ConfigMap with its owner."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
    }


def managed_keys(configmap: Mapping[str, Any], *, manager: str) -> dict[str, set[str]]:
    """Return, for each ``data`` key, the field managers that own it (from ``managedFields``)."""
    owners: dict[str, set[str]] = {}
    for entry in (configmap.get("metadata") or {}).get("managedFields") or ():
        fields = (entry.get("fieldsV1") or {}).get("f:data") or {}
        name = str(entry.get("manager", ""))
        if name == manager and entry.get("operation") != "Apply":
            name = f"{manager} ({entry.get('operation')})"  # only our applies count as ours
        for field in fields:
            if field.startswith("f:"):
                owners.setdefault(field[2:], set()).add(name)
    return owners


@dataclass(frozen=True)
class ConfigMapPlan:
    """What one write to a ConfigMap must do, and what it changes."""

    apply_data: dict[str, str]  # every key we own after the write, ours and our sibling ServiceLinks'
    write: bool  # False: the ConfigMap already holds exactly this
    creates: bool  # the ConfigMap does not exist yet
    force: bool  # True: take back keys another manager changed under us
    with_owner: bool  # carry our ownerReference (we created the ConfigMap)
    changes: tuple[tuple[str, str | None, str | None], ...]  # (key, old, new); new None: key removed
    foreign: dict[str, str]  # keys held by another field manager that we never wrote: key -> manager
    restored: dict[str, str]  # keys another manager changed after we wrote them: key -> manager
    size: int  # bytes of data after the write


def plan_configmap(
    configmap: Mapping[str, Any] | None,
    *,
    desired: Mapping[str, str],
    previous: Mapping[str, str],
    siblings: frozenset[str],
    owner_uid: str,
    manager: str,
) -> ConfigMapPlan:
    """Plan the smallest apply that makes ``configmap`` hold ``desired`` and nothing else of ours.

    ``previous`` are the values we last wrote (a key there that another manager
    now holds is drift, taken back); ``siblings`` are keys other ServiceLinks of
    this ConfigMap claim, kept as they are.
    """
    current: dict[str, str] = dict((configmap or {}).get("data") or {})
    owners = managed_keys(configmap or {}, manager=manager)
    ours = {key for key, names in owners.items() if manager in names}
    foreign: dict[str, str] = {}
    restored: dict[str, str] = {}
    apply_data: dict[str, str] = {}
    for key, value in desired.items():
        others = sorted(owners.get(key, set()) - {manager})
        if key in current and key not in ours and others:
            if key in previous:
                restored[key] = others[0]
            else:
                foreign[key] = others[0]
                continue
        apply_data[key] = value
    apply_data.update({key: current[key] for key in ours & siblings if key not in apply_data and key in current})
    released = sorted(key for key in ours if key not in apply_data)
    # A released key another manager also owns stays in the ConfigMap.
    removed = [key for key in released if key in current and not owners.get(key, set()) - {manager}]
    owner_refs = (configmap or {}).get("metadata", {}).get("ownerReferences") or ()
    with_owner = configmap is None or any(ref.get("uid") == owner_uid for ref in owner_refs)
    changes = tuple(
        [(key, current.get(key), value) for key, value in sorted(apply_data.items()) if current.get(key) != value]
        + [(key, current[key], None) for key in removed]
    )
    write = (
        configmap is None or bool(changes) or bool(restored) or bool(released) or any(k not in ours for k in apply_data)
    )
    after = {key: value for key, value in current.items() if key not in removed} | apply_data
    return ConfigMapPlan(
        apply_data=apply_data,
        write=write,
        creates=configmap is None,
        force=bool(restored),
        with_owner=with_owner,
        changes=changes,
        foreign=foreign,
        restored=restored,
        size=render_data_size(after),
    )
