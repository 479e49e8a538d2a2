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
    resource_version: str = ""  # guards a patch against a change seen too late

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
            resource_version=str(metadata.get("resourceVersion", "")),
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


def parse_config_hash(value: str | None) -> dict[str, str]:
    """Return the entries of a config-hash annotation, ConfigMap name to hash.

    A bare hash (the form for a workload that reads one servicelink ConfigMap,
    and the only form before several were told apart) is returned under "".
    """
    if not value:
        return {}
    if "=" not in value:
        return {"": value}
    entries = (entry.partition("=") for entry in value.split(","))
    return {name: digest for name, sep, digest in entries if sep and name and digest}


def sources_of(workload: WorkloadView, *, configmap: str, managed_configmaps: frozenset[str]) -> frozenset[str]:
    """Return the servicelink ConfigMaps whose hashes ``workload``'s annotation carries, seen from ``configmap``."""
    return frozenset(name for name in workload.reads if name in managed_configmaps) | {configmap}


def carried_hash(value: str | None, *, configmap: str, sources: frozenset[str], digest: str | None) -> str | None:
    """Return the hash the annotation ``value`` carries for ``configmap``, or None when it carries none.

    A bare hash belongs to the only source. With several sources (an annotation
    written before they were told apart) it belongs to ``configmap`` only if it
    equals ``digest``, so an upgrade rolls nothing already up to date; pass
    None when what the workload reads of ``configmap`` just changed, as the
    bare hash then matches another ConfigMap's values, not ours.
    """
    entries = parse_config_hash(value)
    if configmap in entries:
        return entries[configmap]
    bare = entries.get("")
    if bare is not None and (len(sources) == 1 or bare == digest):
        return bare
    return None


def render_config_hash(value: str | None, *, sources: frozenset[str], updates: Mapping[str, str]) -> str:
    """Return the annotation ``value`` with the hashes in ``updates`` (ConfigMap name to hash) set.

    One source: the bare hash, as before. Several: ``name=hash`` entries sorted
    by name and joined by commas, so each ServiceLink's entry is its own and
    none undoes another's. Entries of ConfigMaps that are no longer sources are
    dropped, and so is a bare hash: whose it was cannot be told, and a source
    without an entry rolls on its next change rather than at once.
    """
    if len(sources) == 1:
        (only,) = sources
        return updates[only]
    kept = {name: digest for name, digest in parse_config_hash(value).items() if name in sources} | dict(updates)
    return ",".join(f"{name}={digest}" for name, digest in sorted(kept.items()))


@dataclass(frozen=True)
class Rollout:
    """One ServiceLink's share of a pod-template patch: its ConfigMap's entry in the workload's config hash."""

    kind: WorkloadKind
    namespace: str
    name: str
    configmap: str
    hash: str  # the hash of what the workload reads of ``configmap``
    sources: frozenset[str]
    changed_keys: tuple[str, ...]


def plan_rollouts(
    consumers: Iterable[tuple[WorkloadView, Reads]],
    *,
    configmap: str,
    managed_configmaps: frozenset[str],
    managed: Mapping[str, str],
    baseline: Mapping[str, str],
    desired: Mapping[str, str],
) -> list[Rollout]:
    """Return the consumers whose config hash must change for ``configmap``, with its new entry.

    ``managed`` is every servicelink-owned key of ``configmap`` as it will be;
    a consumer's entry is the hash of the part of it that the consumer reads.
    ``managed_configmaps`` are the namespace's ConfigMaps that servicelink
    writes: a workload reading several carries one entry per ConfigMap, and
    each ServiceLink compares and sets only its own, so two ServiceLinks never
    undo each other. A consumer that carries an entry for ``configmap`` is due
    when it differs. One without (never rolled for it) is due only when a key
    it reads changed between ``baseline`` (the values its pods were last rolled
    to) and ``desired``; so a consumer created after the fact is not rolled.
    """
    changed = {k for k in desired.keys() | baseline.keys() if desired.get(k) != baseline.get(k)}
    plans: list[Rollout] = []
    for workload, reads in consumers:
        target = render_hash(consumed(managed, reads))
        sources = sources_of(workload, configmap=configmap, managed_configmaps=managed_configmaps)
        touched = tuple(sorted(k for k in changed if reads is None or k in reads))
        carried = carried_hash(
            workload.config_hash, configmap=configmap, sources=sources, digest=None if touched else target
        )
        due = carried != target if carried is not None else bool(touched)
        if due:
            plans.append(
                Rollout(
                    kind=workload.kind,
                    namespace=workload.namespace,
                    name=workload.name,
                    configmap=configmap,
                    hash=target,
                    sources=sources,
                    changed_keys=touched,
                )
            )
    return plans


def merge_rollouts(value: str | None, rollouts: Iterable[Rollout]) -> str:
    """Return the config hash one patch sets for several ServiceLinks' shares in the same workload."""
    shares = list(rollouts)
    sources = frozenset().union(*(r.sources for r in shares))
    return render_config_hash(value, sources=sources, updates={r.configmap: r.hash for r in shares})
