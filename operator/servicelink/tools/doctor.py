"""Check every service address a workload reads against the cluster, with the fix for each problem (pure).

The checks and fixes are the troubleshooting table of docs/how-to/troubleshoot.md (itself grown from
the seed's "Common Issues & Solutions"). Each workload also lists the ServiceLinks that do not roll it,
as their ``status.skipped`` says: an owner's opt-out or an ignored kind is no problem, but it is why
pods keep old values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from servicelink.cache import Cache
from servicelink.model import BUILT_IN_RESOURCES, REPORTED_KINDS, WORKLOAD_KINDS, WorkloadResource
from servicelink.resolve import service_fqdn
from servicelink.tools.address import hide_credentials, parse_address, read_address, service_of
from servicelink.tools.offline import name_mapped_kind
from servicelink.views import ServiceView, job_finished

SERVICE_NOT_FOUND = "ServiceNotFound"
SHORT_NAME_ACROSS_NAMESPACES = "ShortNameAcrossNamespaces"
PORT_NOT_FOUND = "PortNotFound"
NO_READY_ENDPOINTS = "NoReadyEndpoints"
EXTERNAL_NAME_EMPTY = "ExternalNameEmpty"
STALE_PODS = "StalePods"
STALE_JOB_PODS = "StaleJobPods"
CONFIGMAP_NOT_FOUND = "ConfigMapNotFound"
CREDENTIALS_IN_PLAIN_TEXT = "CredentialsInPlainText"
HAND_WRITTEN = "hand-written"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a value, and what to do about it."""

    check: str
    message: str
    fix: str


@dataclass(frozen=True)
class Finding:
    """One environment value of a workload that is (or should be) a service address."""

    variable: str
    value: str  # with user[:pass]@ hidden
    source: str  # "env", or "configmap/NAME" (key = variable unless said)
    managed_by: str  # "ServiceLink NAME", or "hand-written"
    service: str  # "ns/name", "ns/name -> external.host", or "-"
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class NotRolled:
    """A ServiceLink that does not roll a workload: an entry of its ``status.skipped``."""

    servicelink: str
    reason: str  # WorkloadNotOptedIn, WorkloadOptedOut or KindIgnored
    message: str


@dataclass(frozen=True)
class WorkloadReport:
    """What doctor found in one workload."""

    kind: str
    namespace: str
    name: str
    findings: tuple[Finding, ...]
    problems: tuple[Problem, ...] = ()  # about the workload as a whole (a missing ConfigMap)
    not_rolled: tuple[NotRolled, ...] = ()

    @property
    def problem_count(self) -> int:
        """Problems of the workload and of its values."""
        return len(self.problems) + sum(len(f.problems) for f in self.findings)


@dataclass
class ClusterState:
    """What doctor reads of the cluster: the operator's cache, plus ConfigMaps and Pods."""

    world: Cache
    configmaps: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    pods: list[Mapping[str, Any]] = field(default_factory=list)
    workloads: list[Mapping[str, Any]] = field(default_factory=list)  # each with kind: built-in, or Kind.group
    namespaces: set[str] = field(default_factory=set)  # namespaces whose Services were read
    mapped: Mapping[str, WorkloadResource] = field(default_factory=dict)  # kinds WorkloadMappings map, by Kind.group
    # By (namespace, kind, name) of a workload, the ServiceLinks whose status.skipped lists it.
    not_rolled: dict[tuple[str, str, str], list[NotRolled]] = field(default_factory=dict)

    @classmethod
    def from_objects(
        cls, bodies: Sequence[Mapping[str, Any]], *, mapped: Mapping[str, WorkloadResource] | None = None
    ) -> ClusterState:
        """Sort listed objects (each with ``kind``) into the state; those of a kind in ``mapped`` are workloads."""
        state = cls(world=Cache(), mapped=dict(mapped or {}))
        for raw in bodies:
            body = name_mapped_kind(raw, state.mapped)
            kind, meta = body.get("kind"), body.get("metadata") or {}
            key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            if kind == "ConfigMap":
                state.configmaps[key] = body
            elif kind == "Pod":
                state.pods.append(body)
            elif kind == "Service":
                state.world.put_service(body)
                state.namespaces.add(key[0])
            elif kind == "EndpointSlice":
                state.world.put_endpointslice(body)
            elif kind == "ServiceLink":
                state.world.put_servicelink(body)
                for entry in (body.get("status") or {}).get("skipped") or ():
                    workload = (key[0], str(entry.get("kind", "")), str(entry.get("name", "")))
                    found = NotRolled(key[1], str(entry.get("reason", "")), str(entry.get("message", "")))
                    state.not_rolled.setdefault(workload, []).append(found)
            elif kind in WORKLOAD_KINDS or kind in state.mapped or (kind in REPORTED_KINDS and not job_finished(body)):
                state.workloads.append(body)  # a finished Job runs nothing: nothing of it to check
        return state

    def resource_of(self, kind: str) -> WorkloadResource:
        """The kind of a workload ``from_objects`` kept: built-in, or mapped (``Kind.group``)."""
        return BUILT_IN_RESOURCES.get(kind) or self.mapped[kind]

    def services_named(self, name: str) -> list[ServiceView]:
        """Every Service of this name, in any namespace read."""
        return [v for ns in sorted(self.namespaces) if (v := self.world.service((ns, name))) is not None]


FIXES = {
    SERVICE_NOT_FOUND: "create the Service, or fix the name (kubectl get svc -n {namespace})",
    SHORT_NAME_ACROSS_NAMESPACES: (
        "use the FQDN {fqdn} (a short name resolves only in the pod's own namespace); "
        "a ServiceLink writes it for you, and the target opens with servicelink.dev/expose-to"
    ),
    PORT_NOT_FOUND: "use one of the Service's ports; a ServiceLink follows port changes for you",
    NO_READY_ENDPOINTS: (
        "kubectl describe service {name} -n {namespace} shows its selector and endpoints; "
        "check that pods match it and pass their readiness probes"
    ),
    EXTERNAL_NAME_EMPTY: "set spec.externalName of Service {service}",
    STALE_PODS: (
        "kubectl rollout restart {workload}; a ServiceLink on the key rolls consumers when it changes "
        "(servicelink adopt)"
    ),
    STALE_JOB_PODS: (
        "a Job's pods keep the values they started on: let {workload} finish, or delete it and create it again "
        "(a CronJob's next Jobs read the current values)"
    ),
    CONFIGMAP_NOT_FOUND: "create ConfigMap {configmap}, or mark the reference optional",
    CREDENTIALS_IN_PLAIN_TEXT: (
        "move it to a ServiceLink link with credentials: the user and password go to a Secret its owner shares, "
        "and servicelink writes the value to a Secret the pods read (secretKeyRef or envFrom secretRef); {how}"
    ),
}
# How to start, by where the value is read from: adopt proposes the link for a ConfigMap's value.
CREDENTIALS_HOW = {
    "env": "for a literal env value, write that ServiceLink (links[].credentials.secretName, spec.secretName)",
    "configmap": "servicelink adopt -n {namespace} configmap/{configmap} proposes the link",
}
# StalePods of an Argo Rollout: kubectl rollout restart knows no Rollout; Argo's own kubectl plugin restarts one.
STALE_ROLLOUT_PODS_FIX = (
    "kubectl argo rollouts restart {name} -n {namespace} (Argo Rollouts' kubectl plugin: it sets spec.restartAt,"
    " and Argo Rollouts replaces the pods, without a new revision's steps); a ServiceLink on the key rolls"
    " consumers when it changes (servicelink adopt)"
)
# StalePods of a mapped kind: kubectl rollout restart knows only Kubernetes' own kinds.
STALE_MAPPED_PODS_FIX = (
    "change an annotation in {workload}'s pod template (at {template}) so its controller starts new pods, or delete"
    " the stale ones; a ServiceLink on the key rolls consumers when it changes (servicelink adopt)"
)


def _problem(check: str, message: str, **fix: str) -> Problem:
    return Problem(check, message, FIXES[check].format(**fix))


def _check_address(
    variable: str, value: str, *, namespace: str, state: ClusterState, cluster_domain: str
) -> tuple[str, tuple[Problem, ...]] | None:
    """Return (service column, problems) for a variable that holds a cluster service address, else None."""
    address = read_address(variable, value)
    if isinstance(address, str) or address.local:
        return None
    found = service_of(address.host, namespace=namespace, cluster_domain=cluster_domain)
    if found is None:
        return None
    (target_ns, name), form = found
    bare = address.scheme is None and address.port is None
    if form == "{service}.{namespace}" and target_ns not in state.namespaces | {namespace}:
        return None  # "name.word": a domain more likely than a Service in a namespace never seen
    service = state.world.service((target_ns, name))
    ref = f"{target_ns}/{name}"
    if service is None:
        elsewhere = [v for v in state.services_named(name) if v.namespace != namespace] if form == "{host}" else []
        if elsewhere:
            fqdn = service_fqdn(name, elsewhere[0].namespace, cluster_domain)
            where = ", ".join(v.namespace for v in elsewhere)
            message = (
                f"no Service {name} in namespace {namespace}; it exists in {where}, "
                "and a short name does not reach across namespaces (connection timeout)"
            )
            return ref, (_problem(SHORT_NAME_ACROSS_NAMESPACES, message, fqdn=fqdn),)
        if bare:
            return None  # a bare word that names no Service anywhere: not an address
        return ref, (
            _problem(SERVICE_NOT_FOUND, f"Service {ref} not found (DNS resolution fails)", namespace=target_ns),
        )
    if service.type == "ExternalName":
        if not service.external_name:
            return ref, (_problem(EXTERNAL_NAME_EMPTY, f"Service {ref} is ExternalName with no target", service=ref),)
        return f"{ref} -> {service.external_name}", ()
    problems: list[Problem] = []
    if address.port is not None and all(p.port != address.port for p in service.ports):
        listed = ", ".join(p.describe() for p in service.ports) or "none"
        message = f"Service {ref} has no port {address.port} (ports: {listed}; connection refused)"
        problems.append(_problem(PORT_NOT_FOUND, message))
    endpoints = state.world.endpoints((target_ns, name))
    if endpoints is None or endpoints.ready == 0:
        counted = f"{endpoints.ready}/{endpoints.total}" if endpoints else "0/0"
        message = f"Service {ref} has no ready endpoint ({counted}): the name resolves, nothing answers (503)"
        problems.append(_problem(NO_READY_ENDPOINTS, message, name=name, namespace=target_ns))
    return ref, tuple(problems)


def _key_changed_at(configmap: Mapping[str, Any], key: str) -> str:
    """When a ConfigMap key last changed: the newest managedFields time of a manager owning it."""
    metadata = configmap.get("metadata") or {}
    times = [
        str(entry.get("time", ""))
        for entry in metadata.get("managedFields") or ()
        if f"f:{key}" in ((entry.get("fieldsV1") or {}).get("f:data") or {})
    ]
    return max(times, default=str(metadata.get("creationTimestamp", "")))


def _pods_of(workload: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The running pods of a workload, by its selector: none for a CronJob, which has none (its next Jobs
    read the ConfigMap afresh)."""
    metadata = workload.get("metadata") or {}
    selector = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return [
        pod
        for pod in pods
        if (pod.get("metadata") or {}).get("namespace") == metadata.get("namespace")
        and selector
        and all(((pod.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in selector.items())
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]


def _started_at(pod: Mapping[str, Any]) -> str | None:
    """When the pod's first running container started, which is when it read its environment; None if none runs.

    A pod still waiting for its ConfigMap reads the current value when it starts, so it is not stale.
    """
    times = [
        str(((status.get("state") or {}).get("running") or {}).get("startedAt"))
        for status in (pod.get("status") or {}).get("containerStatuses") or ()
        if ((status.get("state") or {}).get("running") or {}).get("startedAt")
    ]
    return min(times, default=None)


def _managed_by(state: ClusterState, namespace: str, configmap: str, key: str) -> str:
    for claim in state.world.claims(namespace, configmap):
        if key in claim.keys:
            return f"ServiceLink {claim.name}"
    return HAND_WRITTEN


def examine_workload(workload: Mapping[str, Any], *, state: ClusterState, cluster_domain: str) -> WorkloadReport:
    """Check each value a workload's containers read: literal ``env``, ``configMapKeyRef`` and ``envFrom``."""
    metadata = workload.get("metadata") or {}
    namespace, kind = str(metadata.get("namespace", "")), str(workload.get("kind", ""))
    # A built-in kind, a mapped one or a running Job: ClusterState.from_objects keeps no other.
    resource = state.resource_of(kind)
    pod_spec = resource.pod_template(workload).get("spec") or {}
    values: list[tuple[str, str, str | None, str]] = []  # (variable, value, configmap, key)
    problems: list[Problem] = []

    def configmap(name: str, optional: bool) -> Mapping[str, Any] | None:
        found = state.configmaps.get((namespace, name))
        if found is None and not optional:
            message = f"ConfigMap {namespace}/{name} not found: pods cannot start"
            problem = _problem(CONFIGMAP_NOT_FOUND, message, configmap=f"{namespace}/{name}")
            if problem not in problems:
                problems.append(problem)
        return found

    for container in [*(pod_spec.get("initContainers") or ()), *(pod_spec.get("containers") or ())]:
        for source in container.get("envFrom") or ():
            ref = source.get("configMapRef") or {}
            if ref.get("name"):
                body = configmap(ref["name"], bool(ref.get("optional")))
                for key, value in sorted(((body or {}).get("data") or {}).items()):
                    values.append((f"{source.get('prefix', '')}{key}", str(value), ref["name"], key))
        for env in container.get("env") or ():
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef") or {}
            if "value" in env:
                values.append((str(env["name"]), str(env["value"]), None, str(env["name"])))
            elif ref.get("name") and ref.get("key"):
                body = configmap(ref["name"], bool(ref.get("optional")))
                value = ((body or {}).get("data") or {}).get(ref["key"])
                if value is not None:
                    values.append((str(env["name"]), str(value), ref["name"], ref["key"]))
    pods = _pods_of(workload, state.pods)
    findings: list[Finding] = []
    for variable, value, cm_name, key in values:
        checked = _check_address(variable, value, namespace=namespace, state=state, cluster_domain=cluster_domain)
        if checked is None:
            continue
        service, found = checked
        if cm_name is None:
            source, managed = "env", HAND_WRITTEN
            how = CREDENTIALS_HOW["env"]
        else:
            source = f"configmap/{cm_name}" + ("" if key == variable else f" key {key}")
            managed = _managed_by(state, namespace, cm_name, key)
            how = CREDENTIALS_HOW["configmap"].format(namespace=namespace, configmap=cm_name)
        address = parse_address(value)
        if managed == HAND_WRITTEN and address is not None and address.credentials:
            where = "the pod template" if cm_name is None else f"ConfigMap {cm_name}"
            message = f"{variable} carries credentials (user:password@) in plain text: whoever reads {where} reads them"
            found = (*found, _problem(CREDENTIALS_IN_PLAIN_TEXT, message, how=how))
        if cm_name is not None:
            changed = _key_changed_at(state.configmaps[(namespace, cm_name)], key)
            stale = [p for p in pods if (started := _started_at(p)) is not None and started < changed]
            if stale:
                message = (
                    f"{len(stale)} of {len(pods)} pods' containers started before ConfigMap {cm_name}'s {key} "
                    f"changed ({changed}): they still use the old value"
                )
                workload_ref = f"{kind.lower()}/{metadata.get('name')}"
                if kind in state.mapped:
                    template = "." + ".".join(resource.template)
                    fix = STALE_MAPPED_PODS_FIX.format(workload=workload_ref, template=template)
                    stale_problem = Problem(STALE_PODS, message, fix)
                elif kind == "Rollout":
                    fix = STALE_ROLLOUT_PODS_FIX.format(name=metadata.get("name"), namespace=namespace)
                    stale_problem = Problem(STALE_PODS, message, fix)
                else:
                    check = STALE_JOB_PODS if kind in REPORTED_KINDS else STALE_PODS
                    stale_problem = _problem(check, message, workload=workload_ref)
                found = (*found, stale_problem)
        findings.append(Finding(variable, hide_credentials(value), source, managed, service, found))
    name = str(metadata.get("name", ""))
    not_rolled = tuple(state.not_rolled.get((namespace, kind, name), ()))
    return WorkloadReport(kind, namespace, name, tuple(findings), tuple(problems), not_rolled)


def examine(state: ClusterState, *, cluster_domain: str, only: tuple[str, str] | None = None) -> list[WorkloadReport]:
    """Check every workload read (or only ``(kind, name)``), in kind, namespace, name order."""
    chosen = [
        w for w in state.workloads if only is None or (w.get("kind"), (w.get("metadata") or {}).get("name")) == only
    ]
    reports = [examine_workload(w, state=state, cluster_domain=cluster_domain) for w in chosen]
    return sorted(reports, key=lambda r: (r.namespace, r.kind, r.name))


def format_text(reports: Sequence[WorkloadReport]) -> str:
    """A table per workload with a value to check, each problem under its value with its fix; first, each
    ServiceLink that does not roll it, and why."""
    lines: list[str] = []
    for report in reports:
        if not report.findings and not report.problems and not report.not_rolled:
            continue
        lines.append(f"{report.kind} {report.namespace}/{report.name}")
        for skip in report.not_rolled:
            lines.append(f"  not rolled by ServiceLink {skip.servicelink} ({skip.reason}): {skip.message}")
        for problem in report.problems:
            lines += [f"  {problem.check}: {problem.message}", f"    fix: {problem.fix}"]
        header = ("VARIABLE", "VALUE", "FROM", "MANAGED BY", "SERVICE", "CHECK")
        rows = [
            (f.variable, f.value, f.source, f.managed_by, f.service, ", ".join(p.check for p in f.problems) or "ok")
            for f in report.findings
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
        for row, finding in zip([header, *rows], [None, *report.findings], strict=True):
            lines.append("  " + "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))
            for problem in finding.problems if finding else ():
                lines += [f"    {problem.check}: {problem.message}", f"      fix: {problem.fix}"]
        lines.append("")
    total = sum(r.problem_count for r in reports)
    checked = sum(len(r.findings) for r in reports)
    held = sum(1 for r in reports if r.not_rolled)
    lines.append(
        f"{checked} service addresses in {len(reports)} workloads checked: {total} problems"
        + (f"; {held} workloads not rolled by a ServiceLink" if held else "")
    )
    return "\n".join(lines) + "\n"


def format_json(reports: Sequence[WorkloadReport]) -> str:
    """The reports as JSON, one object per workload."""
    return json.dumps([asdict(r) for r in reports], indent=2) + "\n"
