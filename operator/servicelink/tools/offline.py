"""What the operator would write for ServiceLinks and Services given as objects, not read from a cluster (pure).

It runs the operator's own steps (``resolve_links``, ``decide_values``,
``judge_*``, ``render_link_entries``, ``render_configmap``), so ``servicelink render`` and a running operator
cannot disagree about a value, a reason or a message.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from servicelink import conditions as c
from servicelink.cache import Cache, claim_of, linked_services
from servicelink.consent import judge_configmap_write
from servicelink.model import (
    MAPPING_KIND,
    REPORTED_KINDS,
    SHARED_LABEL,
    WORKLOAD_RESOURCES,
    ServiceLinkSpec,
    WorkloadResource,
    mapped_kind_name,
    parse_mapping,
    parse_spec,
)
from servicelink.render import render_configmap, render_hash
from servicelink.resolve import LinkResult, resolve_links
from servicelink.status import (
    Verdict,
    describe_invalid_spec,
    judge_resolution,
    judge_sync,
    render_link_entries,
)
from servicelink.values import decide_values
from servicelink.views import Claim


@dataclass(frozen=True)
class LinkedServiceLink:
    """One ServiceLink as the operator would leave it: its spec, results, values and verdicts."""

    namespace: str
    name: str
    configmap: str
    spec: ServiceLinkSpec | None  # None: the spec is invalid
    results: tuple[LinkResult, ...]
    values: Mapping[str, str]
    conflicts: Mapping[str, str]
    resolved: Verdict
    synced: Verdict
    # The values of the links with credentials, for the Secret spec.secretName: never in a repr or the report.
    secret_values: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """Whether every link resolved and every key would be written."""
        return self.resolved.ok and self.synced.ok

    def status_links(self) -> list[dict[str, Any]]:
        """``status.links`` as the operator would write it."""
        return [entry.model_dump(exclude_none=True) for entry in render_link_entries(self.results, self.conflicts)]


def place(body: Mapping[str, Any], *, namespace: str) -> dict[str, Any]:
    """Return ``body`` in ``namespace`` if it names none, as ``kubectl apply -n`` places it."""
    metadata = dict(body.get("metadata") or {})
    metadata["namespace"] = metadata.get("namespace") or namespace
    return {**body, "metadata": metadata}


@dataclass(frozen=True)
class MappedKinds:
    """The kinds WorkloadMappings map, by their name ``Kind.group``, and the mappings that map none."""

    resources: Mapping[str, WorkloadResource]
    skipped: tuple[str, ...] = ()  # "WorkloadMapping NAME: why", one per mapping the operator would not follow


def parse_mappings(bodies: Iterable[Mapping[str, Any]]) -> MappedKinds:
    """Return the kinds the WorkloadMappings among ``bodies`` map (other kinds ignored), as the operator parses them.

    A mapping the operator refuses (a built-in kind, a name or spec the CRD
    would refuse) maps nothing: it is named in ``skipped`` with the reason.
    """
    resources: dict[str, WorkloadResource] = {}
    skipped: list[str] = []
    for body in bodies:
        if body.get("kind") != MAPPING_KIND:
            continue
        name = str((body.get("metadata") or {}).get("name", ""))
        spec = body.get("spec")
        try:
            resource = parse_mapping(name, spec if isinstance(spec, Mapping) else {})
        except ValueError as error:  # BuiltInKindError too
            skipped.append(f"WorkloadMapping {name or '(no name)'}: {error}")
            continue
        resources[resource.kind] = resource
    return MappedKinds(resources=resources, skipped=tuple(skipped))


def name_mapped_kind(body: Mapping[str, Any], resources: Mapping[str, WorkloadResource]) -> Mapping[str, Any]:
    """Return ``body`` with its ``kind`` set to ``Kind.group`` when a mapping maps its kind; else ``body`` itself.

    An object of a mapped kind is matched by the group of its ``apiVersion`` and its
    ``kind``; any version: files may hold another served version than the one mapped.
    """
    kind = str(body.get("kind", ""))
    group, slash, _ = str(body.get("apiVersion", "")).rpartition("/")
    if not slash or kind in resources:
        return body
    mapped = mapped_kind_name(kind, group)
    return {**body, "kind": mapped} if mapped in resources else body


def encode_string_data(secret: Mapping[str, Any]) -> dict[str, Any]:
    """Return a Secret manifest with its ``stringData`` merged into ``data``, as the API server stores it."""
    text = secret.get("stringData") or {}
    encoded = {key: base64.b64encode(str(value).encode()).decode() for key, value in text.items()}
    return {**secret, "data": {**(secret.get("data") or {}), **encoded}}


def build_world(
    bodies: Iterable[Mapping[str, Any]],
    *,
    namespace: str,
    mapped: Mapping[str, WorkloadResource] | None = None,
) -> Cache:
    """Return the operator's cache holding ``bodies`` (other kinds ignored), each placed by ``place``.

    An object of a kind in ``mapped`` (by ``Kind.group``: see ``name_mapped_kind``) is a workload of that kind.
    """
    world = Cache()
    world.keep_secrets()  # the Secrets among ``bodies`` that servicelink would see: those its label shares
    mapped = mapped or {}
    for body in bodies:
        placed = place(body, namespace=namespace)
        kind = str(name_mapped_kind(body, mapped).get("kind", ""))  # first: a mapped kind may be called Service
        if kind == "ServiceLink":
            world.put_servicelink(placed)
        elif kind == "Service":
            world.put_service(placed)
        elif kind == "EndpointSlice":
            world.put_endpointslice(placed)
        elif kind in WORKLOAD_RESOURCES:
            world.put_workload(WORKLOAD_RESOURCES[kind], placed)
        elif kind in REPORTED_KINDS:
            world.put_job(placed)
        elif kind == "Secret" and SHARED_LABEL in ((placed.get("metadata") or {}).get("labels") or {}):
            world.put_secret(encode_string_data(placed))
        elif kind in mapped:
            world.put_workload(mapped[kind], placed)
    return world


def link_servicelinks(world: Cache, *, cluster_domain: str) -> list[LinkedServiceLink]:
    """Resolve each ServiceLink of ``world`` as the operator's first reconcile would, in namespace/name order.

    Key conflicts between ServiceLinks of one ConfigMap follow the operator's
    rule: the older keeps the key, then the first by name (objects not yet
    created have no age, so by name). The ConfigMap is created for the first
    valid ServiceLink that names it, so by the same order; the others may not
    write into it (``ConfigMapNotShared``) until its owner shares it.
    """
    linked: list[LinkedServiceLink] = []
    creators = _configmap_creators(world)
    for namespace, name in sorted(world.servicelink_keys()):
        body = world.servicelink(namespace, name) or {}
        raw_spec = body.get("spec") or {}
        configmap = str(raw_spec.get("configMapName", "")) if isinstance(raw_spec, Mapping) else ""
        try:
            spec = parse_spec(raw_spec)
        except ValidationError as error:
            invalid = Verdict(False, c.INVALID_SPEC, describe_invalid_spec(error))
            linked.append(LinkedServiceLink(namespace, name, configmap, None, (), {}, {}, invalid, invalid))
            continue
        refs = linked_services(namespace, raw_spec)
        results = resolve_links(
            spec,
            namespace=namespace,
            services={key: svc for key in refs if (svc := world.service(key)) is not None},
            endpoints={key: eps for key in refs if (eps := world.endpoints(key)) is not None},
            cluster_domain=cluster_domain,
            servicelink=name,
            secrets=world.secrets(namespace),
        )
        me = claim_of(body)
        earlier = [cl for cl in world.claims(namespace, configmap) if me is not None and cl.precedes(me)]
        decided = decide_values(
            results,
            services={},
            previous={},
            earlier=earlier,
            siblings=frozenset(),
            namespace=namespace,
            configmap=configmap,
            secret_keys=spec.secret_keys,
        )
        values, conflicts = decided.desired, decided.conflicts
        synced = judge_sync(namespace=namespace, configmap=configmap, ours=values, conflicts=conflicts)
        if creators.get((namespace, configmap), name) != name:
            existing = {"metadata": {"name": configmap, "namespace": namespace}}
            refusal = judge_configmap_write(existing, servicelink=name, uid="")
            values, synced = {}, Verdict(False, c.CONFIGMAP_NOT_SHARED, refusal or "")
        linked.append(
            LinkedServiceLink(
                namespace=namespace,
                name=name,
                configmap=configmap,
                spec=spec,
                results=tuple(results),
                values=values,
                conflicts=conflicts,
                resolved=judge_resolution(results),
                synced=synced,
                secret_values=decided.secret,
            )
        )
    return linked


def _configmap_creators(world: Cache) -> dict[tuple[str, str], str]:
    """The ServiceLink each ConfigMap is created for: the first valid one naming it, oldest then by name."""
    first: dict[tuple[str, str], Claim] = {}
    for namespace, name in world.servicelink_keys():
        body = world.servicelink(namespace, name) or {}
        claim = claim_of(body)
        if claim is None:
            continue
        try:
            parse_spec(body.get("spec") or {})
        except ValidationError:
            continue  # the operator writes nothing for it, so creates nothing
        key = (namespace, claim.configmap)
        if key not in first or claim.precedes(first[key]):
            first[key] = claim
    return {key: claim.name for key, claim in first.items()}


def render_configmaps(linked: Sequence[LinkedServiceLink]) -> list[dict[str, Any]]:
    """Return the ConfigMaps the operator would write: one per ConfigMap, the keys of all its ServiceLinks.

    Without the ownerReference the operator adds: a ServiceLink not yet created has no uid.
    """
    data: dict[tuple[str, str], dict[str, str]] = {}
    for sl in linked:
        if sl.spec is not None:
            data.setdefault((sl.namespace, sl.configmap), {}).update(sl.values)
    return [
        render_configmap(name=name, namespace=namespace, data=values, owner=None)
        for (namespace, name), values in sorted(data.items())
    ]


def render_secrets(linked: Sequence[LinkedServiceLink]) -> list[dict[str, Any]]:
    """Return the Secrets the operator would write (spec.secretName), their values in ``stringData``."""
    data: dict[tuple[str, str], dict[str, str]] = {}
    for sl in linked:
        if sl.spec is not None and sl.spec.secret_name is not None:
            data.setdefault((sl.namespace, sl.spec.secret_name), {}).update(sl.secret_values)
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "stringData": values}
        for (namespace, name), values in sorted(data.items())
    ]


def render_report(linked: Sequence[LinkedServiceLink]) -> str:
    """A per-link report: each ServiceLink's Resolved and Synced verdicts, each link's value or reason and message."""
    lines: list[str] = []
    for sl in linked:
        ready = "ok" if sl.ok else "NOT READY"
        lines.append(f"ServiceLink {sl.namespace}/{sl.name} -> ConfigMap {sl.namespace}/{sl.configmap}: {ready}")
        if sl.spec is None:
            lines.append(f"  InvalidSpec: {sl.resolved.message}")
            continue
        for verdict_type, verdict in (("Resolved", sl.resolved), ("Synced", sl.synced)):
            lines.append(f"  {verdict_type}={verdict.ok} {verdict.reason}: {verdict.message}")
        width = max(len(r.key) for r in sl.results)
        for entry in sl.status_links():
            key = entry["key"]
            if "reason" in entry:
                shown = f"{entry['reason']}: {entry['message']}"
            elif key in sl.secret_values and sl.spec.secret_name is not None:
                shown = f"in Secret {sl.namespace}/{sl.spec.secret_name} (--show-secrets prints it)"
            else:
                shown = sl.values.get(key, f"{sl.synced.reason}: not written")
            lines.append(f"  {key:<{width}}  {shown}")
        if sl.values:
            lines.append(f"  hash {render_hash(sl.values)}")
    return "\n".join(lines) + ("\n" if lines else "")
