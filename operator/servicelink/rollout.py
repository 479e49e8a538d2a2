"""Decide which workloads consume which ConfigMap keys and which to roll (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from servicelink.model import (
    CONFIG_HASH_ANNOTATION,
    ROLLABLE_BY_ANNOTATION,
    LabelSelector,
    RolledOut,
    WorkloadKind,
    Workloads,
    parse_name_list,
)
from servicelink.render import render_hash
from servicelink.resolve import LinkResult, ServiceKey, ServiceView

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


RolloutState = Literal["Complete", "Progressing", "Stalled"]


@dataclass(frozen=True)
class Progress:
    """Where a workload's rollout stands, from its own status; the message is stable while the state holds."""

    state: RolloutState
    message: str = ""


def rolling(kind: WorkloadKind, namespace: str, name: str) -> Progress:
    """The progress of a workload whose new pods are not all available yet."""
    return Progress("Progressing", f"{kind} {namespace}/{name}: new pods not yet available")


def _count(status: Mapping[str, Any], field_name: str) -> int:
    return int(status.get(field_name) or 0)


def read_progress(kind: WorkloadKind, body: Mapping[str, Any]) -> Progress:
    """Return whether the workload's newest pod template runs available everywhere, as ``kubectl rollout status`` tells.

    Deployments: the controller saw the generation, every replica is updated,
    no old one is left, and the updated ones are available; ``Stalled`` with the
    Deployment's own message once it reports ``ProgressDeadlineExceeded``.
    StatefulSets and DaemonSets: updated and available counts from their
    status (they have no deadline, so never stall); with ``OnDelete`` nothing
    rolls by itself, so there is nothing to wait for. The message names no
    count, so a replica coming up does not change it.
    """
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    what = f"{kind} {metadata.get('namespace', '')}/{metadata.get('name', '')}"
    waiting = rolling(kind, str(metadata.get("namespace", "")), str(metadata.get("name", "")))
    if int(status.get("observedGeneration") or 0) < int(metadata.get("generation") or 0):
        return waiting
    strategy = str((spec.get("updateStrategy") or {}).get("type") or "RollingUpdate")
    if kind == "Deployment":
        for condition in status.get("conditions") or ():
            if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
                return Progress("Stalled", f"{what}: {condition.get('message') or 'progress deadline exceeded'}")
        if spec.get("paused"):
            return Progress("Progressing", f"{what}: paused; rolls once resumed")
        wanted, updated = int(spec.get("replicas", 1)), _count(status, "updatedReplicas")
        done = updated >= wanted and _count(status, "replicas") <= updated
        done = done and _count(status, "availableReplicas") >= updated
    elif strategy == "OnDelete":
        return Progress("Complete")
    elif kind == "StatefulSet":
        wanted = int(spec.get("replicas", 1))
        partition = int(((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition") or 0)
        available = _count(status, "availableReplicas" if "availableReplicas" in status else "readyReplicas")
        done = _count(status, "updatedReplicas") >= wanted - partition and available >= wanted
    else:
        desired = _count(status, "desiredNumberScheduled")
        done = _count(status, "updatedNumberScheduled") >= desired and _count(status, "numberAvailable") >= desired
    return Progress("Complete") if done else waiting


def rollout_settled(before: Progress | None, after: Progress) -> bool:
    """Whether a workload event should reconcile the ServiceLinks that rolled it.

    Only when its rollout completes, stalls, or leaves a stall: the start of a
    rollout is reported by whoever patched it, and a replica coming up mid-way
    changes nothing a ServiceLink reports, so it costs no reconcile and no write.
    """
    if before is None or before.state == after.state:
        return False
    return after.state != "Progressing" or before.state == "Stalled"


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
    progress: Progress = Progress("Complete")

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
            progress=read_progress(kind, body),
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


def progress_of(
    rolled_out: Iterable[RolledOut],
    *,
    namespace: str,
    workloads: Mapping[tuple[WorkloadKind, str], WorkloadView],
    just_rolled: frozenset[tuple[WorkloadKind, str]],
) -> list[Progress]:
    """Return the progress of each workload a ServiceLink last rolled that still exists.

    One patched by this very reconcile is rolling, whatever the watch last
    said of it: that view predates the patch.
    """
    found: list[Progress] = []
    for entry in rolled_out:
        key = (entry.kind, entry.name)
        if key in just_rolled:
            found.append(rolling(entry.kind, namespace, entry.name))
        elif key in workloads:
            found.append(workloads[key].progress)
    return found


@dataclass(frozen=True)
class Deferred:
    """A key whose change is written but not yet rolled out: its Service had no ready endpoint."""

    key: str
    service: str  # "namespace/name"
    previous: str | None  # the value the consumers' pods still carry; None when it was unset


def restore_deferred(baseline: Mapping[str, str], deferred: Iterable[Deferred]) -> dict[str, str]:
    """Return ``baseline`` with each deferred key set back to the value the pods carry, so it counts as changed."""
    restored = dict(baseline)
    for entry in deferred:
        if entry.previous is None:
            restored.pop(entry.key, None)
        else:
            restored[entry.key] = entry.previous
    return restored


def _answers(result: LinkResult, services: Mapping[ServiceKey, ServiceView]) -> bool:
    namespace, _, name = result.service.partition("/")
    service = services.get((namespace, name))
    if service is not None and service.type == "ExternalName":
        return True  # no endpoints to wait for: it answers outside the cluster
    return result.endpoints is not None and result.endpoints.ready > 0


def plan_deferral(
    results: Iterable[LinkResult],
    *,
    services: Mapping[ServiceKey, ServiceView],
    baseline: Mapping[str, str],
    desired: Mapping[str, str],
) -> tuple[list[Deferred], list[Deferred]]:
    """Return the keys changed since the pods were last rolled, and those of them whose Service has no ready endpoint.

    With ``waitForEndpoints`` the consumers roll only once the second list is
    empty; until then the first is kept in the status, so the change still
    counts as one when an endpoint comes up (``restore_deferred``). A link
    whose Service is ExternalName is never waited for.
    """
    changed: list[Deferred] = []
    blocked: list[Deferred] = []
    for result in results:
        if result.key not in desired or desired[result.key] == baseline.get(result.key):
            continue
        entry = Deferred(key=result.key, service=result.service, previous=baseline.get(result.key))
        changed.append(entry)
        if not _answers(result, services):
            blocked.append(entry)
    return changed, blocked
