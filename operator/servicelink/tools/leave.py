"""What ``servicelink leave`` changes so that servicelink can be uninstalled and no pod loses a value (pure).

Three things tie an object to servicelink: the ServiceLink's ownerReference on a ConfigMap or Secret it
created (the garbage collector deletes it with the ServiceLink, so with the CRD), servicelink's field
manager on the keys it wrote (a reinstalled operator would withdraw them), and the finalizer on a
ServiceLink that co-manages a ConfigMap (its deletion withdraws the keys). Leaving undoes all three and
changes no value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from servicelink.model import FIELD_MANAGER, FINALIZER, GROUP, KIND

LEFT_MANAGER = "servicelink-left"  # the field manager that holds the keys once servicelink has left
WrittenKind = Literal["ConfigMap", "Secret"]


@dataclass(frozen=True)
class Release:
    """What to change on one ConfigMap or Secret a ServiceLink writes."""

    kind: str  # ConfigMap or Secret
    namespace: str
    name: str
    resource_version: str
    owner_references: list[dict[str, Any]] | None  # the ones to keep; None when no ServiceLink owns it
    dropped_owners: tuple[str, ...]  # names of the ServiceLinks whose ownerReference goes
    managed_fields: list[dict[str, Any]] | None  # servicelink's entries renamed; None when it has none
    keys: tuple[str, ...]  # the data keys servicelink's field manager owns

    @property
    def changes(self) -> bool:
        """Whether anything of servicelink's is left on the object."""
        return self.owner_references is not None or self.managed_fields is not None

    def patch(self) -> dict[str, Any]:
        """The merge patch that makes the change, on the version read only."""
        metadata: dict[str, Any] = {"resourceVersion": self.resource_version}
        if self.owner_references is not None:
            metadata["ownerReferences"] = self.owner_references
        if self.managed_fields is not None:
            metadata["managedFields"] = self.managed_fields
        return {"metadata": metadata}


def is_servicelink_owner(reference: Mapping[str, Any]) -> bool:
    """Whether an ownerReference names a ServiceLink (of any version of our group)."""
    return reference.get("kind") == KIND and str(reference.get("apiVersion", "")).startswith(f"{GROUP}/")


def servicelink_keys(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The data keys of ``body`` that field manager ``servicelink`` owns, as its managedFields list them, sorted."""
    keys: set[str] = set()
    for entry in (body.get("metadata") or {}).get("managedFields") or ():
        if entry.get("manager") != FIELD_MANAGER:
            continue
        data = (entry.get("fieldsV1") or {}).get("f:data") or {}
        keys.update(field.removeprefix("f:") for field in data if field.startswith("f:"))
    present = body.get("data") or {}
    return tuple(sorted(key for key in keys if key in present))


def hand_over_fields(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """``managedFields`` with field manager ``servicelink``'s entries renamed ``LEFT_MANAGER``; None when none is.

    Applying the same values under another manager would not do: a value two managers apply alike is owned
    by both, force or not, and servicelink would still own it. Renaming moves every field, values unchanged.
    An entry ``LEFT_MANAGER`` already has for the same operation and subresource takes the fields over too.
    """
    if not any(entry.get("manager") == FIELD_MANAGER for entry in entries):
        return None
    renamed: dict[tuple[str, str, str], dict[str, Any]] = {}
    for entry in entries:
        moved = {**entry, "manager": LEFT_MANAGER} if entry.get("manager") == FIELD_MANAGER else dict(entry)
        slot = (str(moved.get("manager")), str(moved.get("operation")), str(moved.get("subresource", "")))
        if slot in renamed:
            kept = renamed[slot]
            fields = _merge_fields(kept.get("fieldsV1") or {}, moved.get("fieldsV1") or {})
            renamed[slot] = {**kept, "fieldsV1": fields}
        else:
            renamed[slot] = moved
    return list(renamed.values())


def _merge_fields(one: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """The union of two ``fieldsV1`` sets."""
    merged = dict(one)
    for field, inner in other.items():
        merged[field] = _merge_fields(merged.get(field) or {}, inner or {}) if field in merged else inner
    return merged


def plan_release(body: Mapping[str, Any]) -> Release:
    """What to change on ``body`` (a ConfigMap or Secret as read) so servicelink no longer owns it nor its keys."""
    metadata = body["metadata"]
    references = metadata.get("ownerReferences") or []
    ours = [r for r in references if is_servicelink_owner(r)]
    return Release(
        kind=body["kind"],
        namespace=metadata["namespace"],
        name=metadata["name"],
        resource_version=metadata.get("resourceVersion", ""),
        owner_references=[r for r in references if not is_servicelink_owner(r)] if ours else None,
        dropped_owners=tuple(sorted(str(r.get("name")) for r in ours)),
        managed_fields=hand_over_fields(metadata.get("managedFields") or ()),
        keys=servicelink_keys(body),
    )


def plan_finalizers(servicelink: Mapping[str, Any]) -> list[str] | None:
    """The finalizers to leave on a ServiceLink once servicelink's is gone; None when it has none of ours."""
    finalizers = list((servicelink.get("metadata") or {}).get("finalizers") or ())
    if FINALIZER not in finalizers:
        return None
    return [f for f in finalizers if f != FINALIZER]


def written_objects(servicelink: Mapping[str, Any]) -> list[tuple[WrittenKind, str]]:
    """The (kind, name) of the ConfigMap and, with ``spec.secretName``, the Secret a ServiceLink writes."""
    spec = servicelink.get("spec") or {}
    written: list[tuple[WrittenKind, str]] = (
        [("ConfigMap", str(spec["configMapName"]))] if spec.get("configMapName") else []
    )
    if spec.get("secretName"):
        written.append(("Secret", str(spec["secretName"])))
    return written


def describe_release(release: Release) -> str:
    """One line saying what leaving changes on the object (key names only: never a Secret's values)."""
    done: list[str] = []
    if release.owner_references is not None:
        owners = ", ".join(release.dropped_owners)
        done.append(f"ownerReference to ServiceLink {owners} removed")
    if release.managed_fields is not None:
        keys = ", ".join(release.keys) or "its fields"
        done.append(f"{keys} handed to field manager {LEFT_MANAGER}")
    return f"{release.kind} {release.namespace}/{release.name}: {'; '.join(done) or 'nothing of servicelink left'}"
