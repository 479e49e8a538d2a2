"""Decide which workloads consume which ConfigMap keys and which to roll (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from servicelink.model import (
    CONFIG_HASH_ANNOTATION,
    ROLLABLE_BY_ANNOTATION,
    LabelSelector,
    WorkloadKind,
    Workloads,
    parse_name_list,
)
from servicelink.render import render_hash

# What a pod template reads of one ConfigMap: a set of keys, or None for all of it.
Reads = frozenset[str] | None


def _merge(reads: dict[str, Reads], configmap: str, keys: Reads) -> None:
    if configmap in reads:
        old = reads[configmap]
        reads[configmap] = None if old is None or keys is None else old | keys
    else:
        reads[configmap] = keys


def _volume_reads(source: Mapping[str, Any]) -> Reads:
    items = source.get("items")
    return frozenset(str(i["key"]) for i in items if "key" in i) if items else None


def read_configmaps(pod_spec: Mapping[str, Any]) -> dict[str, Reads]:
    """Return, for each ConfigMap a pod spec reads, the keys it reads (None: every key).

    Counts ``envFrom``, ``env[].valueFrom.configMapKeyRef``, ``configMap`` volumes
    and ``projected`` volumes, in containers and init containers.
    """
    reads: dict[str, Reads] = {}
    for container in [*(pod_spec.get("initContainers") or ()), *(pod_spec.get("containers") or ())]:
        for source in container.get("envFrom") or ():
            ref = source.get("configMapRef")
            if ref and ref.get("name"):
                _merge(reads, ref["name"], None)
        for env in container.get("env") or ():
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
            if ref and ref.get("name") and ref.get("key"):
                _merge(reads, ref["name"], frozenset({ref["key"]}))
    for volume in pod_spec.get("volumes") or ():
        if volume.get("configMap") and volume["configMap"].get("name"):
            _merge(reads, volume["configMap"]["name"], _volume_reads(volume["configMap"]))
        for projected in (volume.get("projected") or {}).get("sources") or ():
            source = projected.get("configMap")
            if source and source.get("name"):
                _merge(reads, source["name"], _volume_reads(source))
    return reads


@dataclass(frozen=True)
class WorkloadView:
    """The parts of a Deployment, StatefulSet or DaemonSet that rollout decisions read."""

    kind: WorkloadKind
    namespace: str
    name: str
    labels: Mapping[str, str]
    reads: Mapping[str, Reads]
    config_hash: str | None
    rollable_by: frozenset[str] = frozenset()  # the ServiceLinks its owner lets roll it (ROLLABLE_BY_ANNOTATION)

    @classmethod
    def from_body(cls, kind: WorkloadKind, body: Mapping[str, Any]) -> WorkloadView:
        """Build a view from a workload as the API returns it."""
        metadata = body.get("metadata") or {}
        template = (body.get("spec") or {}).get("template") or {}
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        return cls(
            kind=kind,
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            labels=dict(metadata.get("labels") or {}),
            reads=read_configmaps(template.get("spec") or {}),
            config_hash=annotations.get(CONFIG_HASH_ANNOTATION),
            rollable_by=parse_name_list((metadata.get("annotations") or {}).get(ROLLABLE_BY_ANNOTATION)),
        )


def _matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    if not selector.match_labels and not selector.match_expressions:
        return False  # an empty selector here selects nothing rather than everything
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        value = labels.get(requirement.key)
        if requirement.operator == "In" and value not in requirement.values:
            return False
        if requirement.operator == "NotIn" and present and value in requirement.values:
            return False
        if requirement.operator == "Exists" and not present:
            return False
        if requirement.operator == "DoesNotExist" and present:
            return False
    return True


def select_consumers(
    workloads: Iterable[WorkloadView], *, spec: Workloads, configmap: str
) -> list[tuple[WorkloadView, Reads]]:
    """Return the workloads to keep in step with ``configmap``, with the keys each consumes.

    Auto-detected consumers read what their template reads; workloads named or
    selected in the spec without reading the ConfigMap count as reading all of it.
    """
    named = {(ref.kind, ref.name) for ref in spec.names}
    chosen: list[tuple[WorkloadView, Reads]] = []
    for workload in sorted(workloads, key=lambda w: (w.kind, w.name)):
        reads = workload.reads.get(configmap, ...)
        if spec.auto and reads is not ...:
            chosen.append((workload, reads))
        elif (workload.kind, workload.name) in named or (
            spec.selector is not None and _matches(spec.selector, workload.labels)
        ):
            chosen.append((workload, None if reads is ... else reads))
    return chosen


def consumed(values: Mapping[str, str], reads: Reads) -> dict[str, str]:
    """Return the part of ``values`` a consumer with ``reads`` sees."""
    return dict(values) if reads is None else {k: v for k, v in values.items() if k in reads}


@dataclass(frozen=True)
class Rollout:
    """One pod-template patch: set the workload's config hash to ``hash``."""

    kind: WorkloadKind
    namespace: str
    name: str
    hash: str
    changed_keys: tuple[str, ...]


def plan_rollouts(
    consumers: Iterable[tuple[WorkloadView, Reads]],
    *,
    managed: Mapping[str, str],
    baseline: Mapping[str, str],
    desired: Mapping[str, str],
) -> list[Rollout]:
    """Return the patches that bring each consumer's pod template in step with the ConfigMap.

    ``managed`` is every servicelink-owned key of the ConfigMap as it will be;
    a consumer's hash covers the part of it that the consumer reads. A consumer
    that already carries a hash is patched when that hash differs. One without
    a hash (never rolled by us) is patched only when a key it reads changed
    between ``baseline`` (the values its pods were last rolled to) and
    ``desired``; so a consumer created after the fact is not rolled again.
    """
    changed = {k for k in desired.keys() | baseline.keys() if desired.get(k) != baseline.get(k)}
    plans: list[Rollout] = []
    for workload, reads in consumers:
        seen = consumed(managed, reads)
        target = render_hash(seen)
        touched = tuple(sorted(k for k in changed if reads is None or k in reads))
        due = workload.config_hash != target if workload.config_hash is not None else bool(touched)
        if due:
            plans.append(
                Rollout(
                    kind=workload.kind,
                    namespace=workload.namespace,
                    name=workload.name,
                    hash=target,
                    changed_keys=touched,
                )
            )
    return plans
