"""What the operator knows of the cluster: views of watched objects, kept by watch events (pure).

kopf's ``@kopf.index`` would keep these too, but its readiness gate (every
object's handlers wait until all indexes are listed) costs time quadratic in
the number of objects: at 5,000 Services the operator spent minutes before its
first reconcile. This cache is filled by one paginated list per kind at start
(so no reconcile sees a half-listed cluster), kept by kopf's ``on.event``
handlers, and rebuilt from a fresh list at each resync (so a deletion missed
between the two can not linger).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from servicelink.model import WorkloadKind, WorkloadResource
from servicelink.rollout import WorkloadKey, follow_rollouts, rollout_settled
from servicelink.views import (
    Claim,
    Endpoints,
    JobView,
    ObjectKey,
    Progress,
    SecretView,
    ServiceView,
    WorkloadView,
    slim,
)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
Reader = TypeVar("Reader", WorkloadKey, ObjectKey)


def _index(readers: defaultdict[ObjectKey, set[Reader]], namespace: str, read: Iterable[str], key: Reader) -> None:
    """Enter ``key`` as a reader of each object named in ``read`` (ConfigMaps or Secrets of ``namespace``)."""
    for name in read:
        readers[(namespace, name)].add(key)


def _unindex(readers: defaultdict[ObjectKey, set[Reader]], namespace: str, read: Iterable[str], key: Reader) -> None:
    """Take ``key`` out as a reader of each object named in ``read``; an object left without readers goes."""
    for name in read:
        entries = readers.get((namespace, name))
        if entries is not None:
            entries.discard(key)
            if not entries:
                del readers[(namespace, name)]


def _meta(body: Mapping[str, Any]) -> ObjectKey:
    metadata = body.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


def needs_reconcile(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> bool:
    """Whether a ServiceLink event changed anything a reconcile acts on.

    A change of only its status or resourceVersion is the operator's own write
    coming back; reconciling on it would cost a read per write and change nothing.
    """
    if before is None:
        return True
    old_meta, new_meta = before.get("metadata") or {}, after.get("metadata") or {}
    return (
        before.get("spec") != after.get("spec")
        or old_meta.get("deletionTimestamp") != new_meta.get("deletionTimestamp")
        or old_meta.get("finalizers") != new_meta.get("finalizers")
        or old_meta.get("uid") != new_meta.get("uid")
    )


def linked_services(namespace: str, spec: Mapping[str, Any]) -> set[ObjectKey]:
    """The (namespace, name) of the Services a ServiceLink's raw spec points at; tolerant of bad input."""
    links = spec.get("links")
    if not isinstance(links, list):
        return set()
    return {
        (str(link.get("namespace") or namespace), str(link["service"]))
        for link in links
        if isinstance(link, Mapping) and link.get("service")
    }


def linked_secrets(namespace: str, spec: Mapping[str, Any]) -> set[ObjectKey]:
    """The (namespace, name) of the Secrets a ServiceLink's raw spec takes credentials from; tolerant of bad input."""
    links = spec.get("links")
    if not isinstance(links, list):
        return set()
    return {
        (namespace, str(link["credentials"]["secretName"]))
        for link in links
        if isinstance(link, Mapping)
        and isinstance(link.get("credentials"), Mapping)
        and link["credentials"].get("secretName")
    }


def claim_of(body: Mapping[str, Any]) -> Claim | None:
    """The keys a ServiceLink writes into its ConfigMap; None while it is being deleted or malformed."""
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    configmap, links = spec.get("configMapName"), spec.get("links")
    if not isinstance(configmap, str) or not isinstance(links, list) or metadata.get("deletionTimestamp"):
        return None
    namespace, name = _meta(body)
    keys = frozenset(str(link["key"]) for link in links if isinstance(link, Mapping) and link.get("key"))
    return Claim(
        namespace=namespace,
        name=name,
        uid=str(metadata.get("uid", "")),
        created=str(metadata.get("creationTimestamp", "")),
        configmap=configmap,
        keys=keys,
    )


def rolled_workloads(body: Mapping[str, Any]) -> set[WorkloadKey]:
    """The workloads a ServiceLink's ``status.rolledOut`` names; tolerant of bad input."""
    namespace, _ = _meta(body)
    return {
        (entry["kind"], namespace, str(entry["name"]))
        for entry in (body.get("status") or {}).get("rolledOut") or ()
        if isinstance(entry, Mapping) and isinstance(entry.get("kind"), str) and entry.get("name")
    }


def stale_jobs_of(body: Mapping[str, Any]) -> set[ObjectKey]:
    """The Jobs a ServiceLink's ``status.staleJobs`` names; tolerant of bad input."""
    namespace, _ = _meta(body)
    return {
        (namespace, str(entry["name"]))
        for entry in (body.get("status") or {}).get("staleJobs") or ()
        if isinstance(entry, Mapping) and entry.get("name")
    }


def ready_of(body: Mapping[str, Any]) -> tuple[str, str]:
    """The status and reason of a ServiceLink's Ready condition; ("Unknown", "") before its first status."""
    for condition in (body.get("status") or {}).get("conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown")), str(condition.get("reason", ""))
    return "Unknown", ""


def endpoints_of(body: Mapping[str, Any]) -> Endpoints:
    """Ready and total endpoints of one EndpointSlice; an absent ``ready`` means unknown, counted as ready."""
    endpoints = body.get("endpoints") or []
    ready = sum(1 for e in endpoints if (e.get("conditions") or {}).get("ready") is not False)
    return Endpoints(ready=ready, total=len(endpoints))


@dataclass
class Cache:
    """The ``World`` of reconcile. Mutated only from the event loop's thread.

    Every ``put_*`` and ``drop_*`` returns the ServiceLinks the change calls on
    to reconcile (often none), so a watch handler only queues what it is given.
    """

    _servicelinks: dict[ObjectKey, Mapping[str, Any]] = field(default_factory=dict)
    _links_to: dict[ObjectKey, set[ObjectKey]] = field(default_factory=dict)
    _links_by_service: defaultdict[ObjectKey, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))
    _writes_secret: dict[ObjectKey, ObjectKey] = field(default_factory=dict)  # ServiceLink -> its spec.secretName
    _secret_writers: defaultdict[ObjectKey, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))
    _secrets_of: dict[ObjectKey, set[ObjectKey]] = field(default_factory=dict)
    _links_by_secret: defaultdict[ObjectKey, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))
    # The Secrets shared with servicelink by its label (only those are watched), by (namespace, name); None when
    # this install reads no Secret (its setting is off).
    _secrets: dict[ObjectKey, SecretView] | None = None
    _claims: dict[ObjectKey, Claim] = field(default_factory=dict)
    _claims_by_configmap: defaultdict[ObjectKey, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))
    _rolled: dict[ObjectKey, set[WorkloadKey]] = field(default_factory=dict)  # from each status.rolledOut
    _rolled_by: defaultdict[WorkloadKey, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))
    _services: dict[ObjectKey, ServiceView] = field(default_factory=dict)
    _slices: dict[ObjectKey, tuple[ObjectKey, Endpoints]] = field(default_factory=dict)
    _slices_by_service: defaultdict[ObjectKey, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))
    _workloads: dict[WorkloadKey, WorkloadView] = field(default_factory=dict)
    # The workloads servicelink rolled (a rolled-at annotation) whose rollout is in progress: rollout slots taken.
    _rolling: dict[WorkloadKey, str] = field(default_factory=dict)
    # (namespace, ConfigMap) and (namespace, Secret) -> the workloads whose pods read it; two indexes, as a
    # ConfigMap and a Secret may share a name.
    _readers: defaultdict[ObjectKey, set[WorkloadKey]] = field(default_factory=lambda: defaultdict(set))
    _secret_readers: defaultdict[ObjectKey, set[WorkloadKey]] = field(default_factory=lambda: defaultdict(set))
    _by_namespace: defaultdict[str, set[WorkloadKey]] = field(default_factory=lambda: defaultdict(set))
    # (namespace, Deployment) -> the Rollouts whose spec.workloadRef names it: Events and conditions name them.
    _templated_by: defaultdict[ObjectKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    # Running Jobs that read a ConfigMap or a Secret, only: a finished one never runs again, and most Jobs are
    # finished.
    _jobs: dict[ObjectKey, JobView] = field(default_factory=dict)
    _job_readers: defaultdict[ObjectKey, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))
    _job_secret_readers: defaultdict[ObjectKey, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))
    _stale: dict[ObjectKey, set[ObjectKey]] = field(default_factory=dict)  # from each status.staleJobs
    _stale_in: defaultdict[ObjectKey, set[ObjectKey]] = field(default_factory=lambda: defaultdict(set))
    _ready: dict[ObjectKey, tuple[str, str]] = field(default_factory=dict)  # each Ready (status, reason)
    _ready_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Event order: each put or drop gets the next tick, so a relist can tell which objects
    # changed after its list began (the event is newer than the list) and leave those alone.
    _tick: int = 0
    _seen: dict[ObjectKey, int] = field(default_factory=dict)  # ServiceLink -> tick of its last event

    def held(self, kind: str, namespace: str | None) -> list[ObjectKey]:
        """The objects of ``kind`` (a Service, EndpointSlice, Job, Secret or workload kind) the cache holds in
        ``namespace`` (None: all): what an informer's list forgets when it no longer lists them."""
        tables: dict[str, Mapping[ObjectKey, object]] = {
            "Service": self._services,
            "EndpointSlice": self._slices,
            "Job": self._jobs,
            "Secret": self._secrets or {},
        }
        kept = tables.get(kind)
        keys = list(kept) if kept is not None else [(ns, name) for k, ns, name in self._workloads if k == kind]
        return [key for key in keys if namespace is None or key[0] == namespace]

    def without_template(self, kind: WorkloadKind, namespace: str | None) -> list[ObjectKey]:
        """The workloads of ``kind`` held in ``namespace`` (None: all) with no pod template where their kind holds
        one: what a WorkloadMapping's TemplateNotFound names."""
        return [
            (ns, name)
            for (k, ns, name), view in self._workloads.items()
            if k == kind and (namespace is None or ns == namespace) and not view.has_template
        ]

    def mark(self) -> int:
        """The current tick: take it before a relist's list of ServiceLinks, hand it to ``replace_servicelinks``."""
        return self._tick

    def _touch(self, key: ObjectKey) -> None:
        """A ServiceLink was seen by an event: a relist whose list began before it must not undo it."""
        self._tick += 1
        self._seen[key] = self._tick

    # --- ServiceLinks --------------------------------------------------------------------------

    def put_servicelink(self, body: Mapping[str, Any]) -> list[ObjectKey]:
        """Record a ServiceLink as last seen; return the ServiceLinks to reconcile for it.

        None when only its status or resourceVersion changed (``needs_reconcile``),
        else it and the others sharing its ConfigMap (a freed key moves).
        """
        key = _meta(body)
        before = self._servicelinks.get(key)
        self._forget_servicelink(key)
        self._touch(key)
        self._servicelinks[key] = slim(body)
        targets = linked_services(key[0], body.get("spec") or {})
        self._links_to[key] = targets
        for service in targets:
            self._links_by_service[service].add(key)
        target = (body.get("spec") or {}).get("secretName")
        if isinstance(target, str) and target:
            self._writes_secret[key] = (key[0], target)
            self._secret_writers[(key[0], target)].add(key)
        self._secrets_of[key] = linked_secrets(key[0], body.get("spec") or {})
        for secret in self._secrets_of[key]:
            self._links_by_secret[secret].add(key)
        claim = claim_of(body)
        if claim is not None:
            self._claims[key] = claim
            self._claims_by_configmap[(claim.namespace, claim.configmap)].add(key)
        self._rolled[key] = rolled_workloads(body)
        for workload in self._rolled[key]:
            self._rolled_by[workload].add(key)
        self._stale[key] = stale_jobs_of(body)
        for job in self._stale[key]:
            self._stale_in[job].add(key)
        self._ready[key] = ready_of(body)
        self._ready_counts[self._ready[key]] += 1
        return self._sharing_configmap(key, body) if needs_reconcile(before, body) else []

    def drop_servicelink(self, namespace: str, name: str) -> list[ObjectKey]:
        """Forget a deleted ServiceLink; return it and the others sharing its ConfigMap, to reconcile."""
        key = (namespace, name)
        body = self._forget_servicelink(key)
        self._touch(key)
        return self._sharing_configmap(key, body or {})

    def _sharing_configmap(self, key: ObjectKey, body: Mapping[str, Any]) -> list[ObjectKey]:
        configmap = (body.get("spec") or {}).get("configMapName")
        siblings = self.claims(key[0], configmap) if isinstance(configmap, str) else []
        return [key, *((claim.namespace, claim.name) for claim in siblings)]

    def _forget_servicelink(self, key: ObjectKey) -> Mapping[str, Any] | None:
        body = self._servicelinks.pop(key, None)
        for service in self._links_to.pop(key, ()):
            self._links_by_service[service].discard(key)
            if not self._links_by_service[service]:
                del self._links_by_service[service]
        target = self._writes_secret.pop(key, None)
        if target is not None:
            self._secret_writers[target].discard(key)
            if not self._secret_writers[target]:
                del self._secret_writers[target]
        for secret in self._secrets_of.pop(key, ()):
            self._links_by_secret[secret].discard(key)
            if not self._links_by_secret[secret]:
                del self._links_by_secret[secret]
        claim = self._claims.pop(key, None)
        if claim is not None:
            self._claims_by_configmap[(claim.namespace, claim.configmap)].discard(key)
        for workload in self._rolled.pop(key, ()):
            self._rolled_by[workload].discard(key)
            if not self._rolled_by[workload]:
                del self._rolled_by[workload]
        for job in self._stale.pop(key, ()):
            self._stale_in[job].discard(key)
            if not self._stale_in[job]:
                del self._stale_in[job]
        ready = self._ready.pop(key, None)
        if ready is not None:
            self._ready_counts[ready] -= 1
            if not self._ready_counts[ready]:
                del self._ready_counts[ready]
        return body

    def servicelink(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._servicelinks.get((namespace, name))

    def ready_counts(self) -> dict[tuple[str, str], int]:
        """How many ServiceLinks hold each Ready (status, reason). Safe to call from another thread (the metrics
        server's): one copy of a dict of a few entries, which CPython makes without letting the loop in."""
        return dict(self._ready_counts)

    def servicelink_keys(self) -> list[ObjectKey]:
        """Every ServiceLink known."""
        return list(self._servicelinks)

    def servicelinks_of(self, service: ObjectKey) -> list[ObjectKey]:
        """The ServiceLinks pointing at ``service``."""
        return sorted(self._links_by_service.get(service, ()))

    def servicelinks_rolling(self, workload: WorkloadKey) -> list[ObjectKey]:
        """The ServiceLinks that may have rolled ``workload``: those of the ConfigMaps and Secrets its pods read,
        and those whose ``status.rolledOut`` names it.

        The first set covers a rollout that completes before the status naming it comes back.
        """
        found = set(self._rolled_by.get(workload, ()))
        view = self._workloads.get(workload)
        for configmap in view.reads if view is not None else ():
            found |= self._claims_by_configmap.get((workload[1], configmap), set())
        for secret in view.secret_reads if view is not None else ():
            found |= self._secret_writers.get((workload[1], secret), set())
        return sorted(found)

    def claims(self, namespace: str, configmap: str) -> list[Claim]:
        return [self._claims[key] for key in sorted(self._claims_by_configmap.get((namespace, configmap), ()))]

    # --- Secrets shared with servicelink --------------------------------------------------------------

    def keep_secrets(self) -> None:
        """From now on Secrets are kept (this install reads them); until then a link with credentials cannot resolve."""
        if self._secrets is None:
            self._secrets = {}

    def put_secret(self, body: Mapping[str, Any]) -> list[ObjectKey]:
        """Record a shared Secret; return the ServiceLinks that take credentials from it, if it changed."""
        if self._secrets is None:
            return []
        key = _meta(body)
        view = SecretView.from_body(body)
        changed = self._secrets.get(key) != view  # any new resourceVersion: a reconcile tells if a value changed
        self._secrets[key] = view
        return sorted(self._links_by_secret.get(key, ())) if changed else []

    def drop_secret(self, namespace: str, name: str) -> list[ObjectKey]:
        """Forget a Secret deleted or no longer shared; return the ServiceLinks that took credentials from it."""
        key = (namespace, name)
        if self._secrets is None or self._secrets.pop(key, None) is None:
            return []
        return sorted(self._links_by_secret.get(key, ()))

    def secret_writers(self, namespace: str, secret: str) -> list[str]:
        """The names of the ServiceLinks of ``namespace`` whose spec.secretName is ``secret``, sorted."""
        return sorted(name for _, name in self._secret_writers.get((namespace, secret), ()))

    def secrets(self, namespace: str) -> Mapping[str, SecretView] | None:
        """The shared Secrets of ``namespace`` by name; None when this install reads no Secret."""
        if self._secrets is None:
            return None
        return {name: view for (ns, name), view in self._secrets.items() if ns == namespace}

    # --- Services and their endpoints ------------------------------------------------------------

    def put_service(self, body: Mapping[str, Any]) -> list[ObjectKey]:
        """Record a Service as last seen; return the ServiceLinks pointing at it if a part they read changed.

        A label change, or the replay of the Services listed at start, returns none.
        """
        key = _meta(body)
        view = ServiceView.from_body(body)
        changed = self._services.get(key) != view
        self._services[key] = view
        return self.servicelinks_of(key) if changed else []

    def drop_service(self, namespace: str, name: str) -> list[ObjectKey]:
        """Forget a deleted Service; return the ServiceLinks pointing at it, if it was known."""
        key = (namespace, name)
        return self.servicelinks_of(key) if self._services.pop(key, None) is not None else []

    def service(self, key: ObjectKey) -> ServiceView | None:
        return self._services.get(key)

    def service_keys(self) -> list[ObjectKey]:
        """Every Service known."""
        return list(self._services)

    def put_endpointslice(self, body: Mapping[str, Any]) -> list[ObjectKey]:
        """Record an EndpointSlice; return the ServiceLinks of its Service if its endpoint counts changed."""
        key = _meta(body)
        service = ((body.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        entry = ((key[0], str(service)), endpoints_of(body)) if service else None
        if entry is not None and self._slices.get(key) == entry:
            return []
        self._forget_endpointslice(key)
        if entry is None:
            return []
        self._slices[key] = entry
        self._slices_by_service[entry[0]].add(key)
        return self.servicelinks_of(entry[0])

    def drop_endpointslice(self, namespace: str, name: str) -> list[ObjectKey]:
        """Forget an EndpointSlice; return the ServiceLinks of the Service it belonged to."""
        key = (namespace, name)
        service = self._forget_endpointslice(key)
        return self.servicelinks_of(service) if service is not None else []

    def _forget_endpointslice(self, key: ObjectKey) -> ObjectKey | None:
        entry = self._slices.pop(key, None)
        if entry is None:
            return None
        self._slices_by_service[entry[0]].discard(key)
        return entry[0]

    def endpoints(self, key: ObjectKey) -> Endpoints | None:
        slices = [self._slices[s][1] for s in self._slices_by_service.get(key, ())]
        if not slices:
            return None
        return Endpoints(ready=sum(s.ready for s in slices), total=sum(s.total for s in slices))

    # --- workloads ------------------------------------------------------------------------------

    def put_workload(self, resource: WorkloadResource, body: Mapping[str, Any]) -> list[ObjectKey]:
        """Record a Deployment, StatefulSet, DaemonSet, CronJob, Rollout or mapped kind, by the ConfigMaps and
        Secrets its pods read.

        Return the ServiceLinks that may have rolled it when its rollout completes
        or stalls (``rollout_settled``); a replica coming up returns none. A
        Rollout with ``spec.workloadRef`` settles the Deployment it names too:
        that Deployment's progress is the Rollout's (``follow_rollouts``).
        """
        namespace, name = _meta(body)
        key: WorkloadKey = (resource.kind, namespace, name)
        view = WorkloadView.from_body(resource, body)
        old = self._workloads.get(key)
        following = self._following(key, old, view)
        before = {k: self._progress(k) for k in following}
        self._forget_workload(key)
        self._workloads[key] = view
        if view.rolled_at is not None and view.progress.state == "Progressing":
            self._rolling[key] = view.rolled_at
        self._by_namespace[namespace].add(key)
        _index(self._readers, namespace, view.reads, key)
        _index(self._secret_readers, namespace, view.secret_reads, key)
        if view.workload_ref is not None:
            self._templated_by[(namespace, view.workload_ref)].add(name)
        return self._settled(before)

    def drop_workload(self, kind: WorkloadKind, namespace: str, name: str) -> list[ObjectKey]:
        """Forget a deleted workload; return the ServiceLinks of the Deployment a deleted Rollout's
        ``spec.workloadRef`` named, if its progress settles so (a deleted workload itself rolls nothing)."""
        key: WorkloadKey = (kind, namespace, name)
        following = [k for k in self._following(key, self._workloads.get(key), None) if k != key]
        before = {k: self._progress(k) for k in following}
        # A rollout in flight that goes frees its slot: its ServiceLinks' reconcile hands it on.
        freed = self.servicelinks_rolling(key) if key in self._rolling else []
        self._forget_workload(key)
        return [*freed, *self._settled(before)]

    @staticmethod
    def _following(key: WorkloadKey, old: WorkloadView | None, new: WorkloadView | None) -> list[WorkloadKey]:
        """The workloads whose progress a change of ``key`` from ``old`` to ``new`` may move: it, and the
        Deployments its ``spec.workloadRef`` names before and after."""
        refs = {view.workload_ref for view in (old, new) if view is not None and view.workload_ref is not None}
        return [key, *(("Deployment", key[1], ref) for ref in sorted(refs))]

    def _progress(self, key: WorkloadKey) -> Progress | None:
        """A workload's progress as RolledOut reads it (``follow_rollouts`` for a Deployment Rollouts run); None
        when unknown."""
        view = self._workloads.get(key)
        if view is None:
            return None
        if key[0] != "Deployment":
            return view.progress
        rollouts = (self._workloads.get(("Rollout", key[1], r)) for r in self.rollouts_templated_by(key[1], key[2]))
        return follow_rollouts(view, [r for r in rollouts if r is not None])

    def _settled(self, before: Mapping[WorkloadKey, Progress | None]) -> list[ObjectKey]:
        """The ServiceLinks that may have rolled each workload of ``before`` whose rollout settled since."""
        found: list[ObjectKey] = []
        for key, progress in before.items():
            after = self._progress(key)
            if after is not None and rollout_settled(progress, after):
                found.extend(self.servicelinks_rolling(key))
        return found

    def _forget_workload(self, key: WorkloadKey) -> WorkloadView | None:
        self._rolling.pop(key, None)
        view = self._workloads.pop(key, None)
        if view is not None:
            self._by_namespace[key[1]].discard(key)
            _unindex(self._readers, key[1], view.reads, key)
            _unindex(self._secret_readers, key[1], view.secret_reads, key)
            if view.workload_ref is not None:
                rollouts = self._templated_by[(key[1], view.workload_ref)]
                rollouts.discard(key[2])
                if not rollouts:
                    del self._templated_by[(key[1], view.workload_ref)]
        return view

    def workloads(self, namespace: str, *, reading: str | None) -> list[WorkloadView]:
        keys = (
            self._by_namespace.get(namespace, set())
            if reading is None
            else self._readers.get((namespace, reading), set())
        )
        return [self._workloads[key] for key in sorted(keys)]

    def workloads_reading_secret(self, namespace: str, *, secret: str) -> list[WorkloadView]:
        """The workloads of a namespace whose pods read the Secret ``secret`` (not a ConfigMap of that name)."""
        return [self._workloads[key] for key in sorted(self._secret_readers.get((namespace, secret), ()))]

    def workload(self, kind: WorkloadKind, namespace: str, name: str) -> WorkloadView | None:
        return self._workloads.get((kind, namespace, name))

    def rollouts_in_flight(self) -> dict[WorkloadKey, str]:
        return dict(self._rolling)

    def rollouts_templated_by(self, namespace: str, deployment: str) -> list[str]:
        return sorted(self._templated_by.get((namespace, deployment), ()))

    # --- Jobs -----------------------------------------------------------------------------------

    def put_job(self, body: Mapping[str, Any]) -> list[ObjectKey]:
        """Record a Job while it runs and reads a ConfigMap or a Secret; return the ServiceLinks to reconcile for it.

        Those whose ``status.staleJobs`` lists it, once it has finished: it
        leaves the list. A Job starting, or its pods coming and going, returns none.
        """
        key = _meta(body)
        self._forget_job(key)
        view = JobView.from_body(body)
        if view.running and (view.reads or view.secret_reads):
            self._jobs[key] = view
            _index(self._job_readers, key[0], view.reads, key)
            _index(self._job_secret_readers, key[0], view.secret_reads, key)
            return []
        return sorted(self._stale_in.get(key, ()))

    def drop_job(self, namespace: str, name: str) -> list[ObjectKey]:
        """Forget a deleted Job; return the ServiceLinks whose ``status.staleJobs`` lists it."""
        key = (namespace, name)
        self._forget_job(key)
        return sorted(self._stale_in.get(key, ()))

    def _forget_job(self, key: ObjectKey) -> None:
        view = self._jobs.pop(key, None)
        if view is not None:
            _unindex(self._job_readers, key[0], view.reads, key)
            _unindex(self._job_secret_readers, key[0], view.secret_reads, key)

    def jobs(self, namespace: str, *, reading: str) -> list[JobView]:
        return [self._jobs[key] for key in sorted(self._job_readers.get((namespace, reading), ()))]

    def jobs_reading_secret(self, namespace: str, *, secret: str) -> list[JobView]:
        """The running Jobs of a namespace whose pods read the Secret ``secret`` (not a ConfigMap of that name)."""
        return [self._jobs[key] for key in sorted(self._job_secret_readers.get((namespace, secret), ()))]

    # --- relists --------------------------------------------------------------------------------

    def replace_servicelinks(self, bodies: Iterable[Mapping[str, Any]], *, since: int) -> list[ObjectKey]:
        """Make the ServiceLinks those of a list begun at tick ``since``, but for events newer than it; return
        the ServiceLinks to reconcile for what changed."""
        listed = {_meta(body): body for body in bodies}
        due: set[ObjectKey] = set()
        for key in set(self._servicelinks) | listed.keys():
            if self._seen.get(key, 0) > since:
                continue  # an event newer than the list
            due.update(self.put_servicelink(listed[key]) if key in listed else self.drop_servicelink(*key))
        for key in [key for key, tick in self._seen.items() if tick <= since]:
            del self._seen[key]  # superseded by the list
        return sorted(due)
