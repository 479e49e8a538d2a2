"""The views the cache keeps of watched objects, and how each is read from an API body (pure)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

from servicelink.model import (
    CONFIG_HASH_ANNOTATION,
    COOLDOWN_ANNOTATION,
    EXPOSE_TO_ANNOTATION,
    MAX_COOLDOWN_SECONDS,
    READABLE_BY_ANNOTATION,
    REPORTED_RESOURCES,
    ROLLABLE_BY_ANNOTATION,
    ROLLED_AT_ANNOTATION,
    ROLLED_TEMPLATE_LABEL,
    ROLLOUT_ANNOTATION,
    ROLLOUT_NEVER,
    ROLLOUT_RESTART,
    ROLLOUT_WINDOWS_ANNOTATION,
    WORKLOAD_RESOURCES,
    WorkloadKind,
    WorkloadResource,
    parse_name_list,
)

ObjectKey = tuple[str, str]  # (namespace, name) of a Service, a ServiceLink or any namespaced object
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``body`` without what no view and no reconcile reads: managedFields and kubectl's last-applied copy.

    Both are a good part of each object's size. A shallow copy: the rest is
    shared with ``body``, which nobody changes.
    """
    kept = dict(body)
    metadata = {k: v for k, v in (kept.get("metadata") or {}).items() if k != "managedFields"}
    annotations = metadata.get("annotations") or {}
    if LAST_APPLIED_ANNOTATION in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED_ANNOTATION}
    kept["metadata"] = metadata
    return kept


@dataclass(frozen=True)
class ServicePort:
    """One entry of a Service's ``spec.ports``."""

    name: str | None
    port: int

    def describe(self) -> str:
        """Return ``name:port``, or the number alone for an unnamed port."""
        return f"{self.name}:{self.port}" if self.name else str(self.port)


@dataclass(frozen=True)
class ServiceView:
    """The parts of a Service that resolution reads."""

    namespace: str
    name: str
    type: str
    ports: tuple[ServicePort, ...]
    external_name: str | None
    expose_to: frozenset[str]

    @classmethod
    def from_body(cls, body: Mapping[str, object]) -> ServiceView:
        """Build a view from a Service as the API returns it; tolerate absent fields."""
        metadata = body.get("metadata") or {}
        spec = body.get("spec") or {}
        assert isinstance(metadata, Mapping)
        assert isinstance(spec, Mapping)
        annotations = metadata.get("annotations") or {}
        ports = tuple(
            ServicePort(name=p.get("name") or None, port=int(p["port"]))
            for p in spec.get("ports") or ()
            if isinstance(p, Mapping) and "port" in p
        )
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            type=str(spec.get("type") or "ClusterIP"),
            ports=ports,
            external_name=spec.get("externalName") or None,
            expose_to=parse_name_list(annotations.get(EXPOSE_TO_ANNOTATION)),
        )

    def allows(self, namespace: str) -> bool:
        """Return whether a ServiceLink in ``namespace`` may resolve this Service."""
        return namespace == self.namespace or "*" in self.expose_to or namespace in self.expose_to


@dataclass(frozen=True)
class SecretView:
    """A Secret shared with servicelink (it carries the label servicelink.dev/shared=true), its data decoded.

    ``data`` never shows in a repr, so a log line or a traceback that prints a view leaks nothing.
    """

    namespace: str
    name: str
    resource_version: str
    readable_by: frozenset[str]
    data: Mapping[str, str] = field(repr=False, compare=False)

    @classmethod
    def from_body(cls, body: Mapping[str, object]) -> SecretView:
        """Build a view from a Secret as the API returns it: base64 data decoded, a key not UTF-8 text left out."""
        metadata = body.get("metadata") or {}
        assert isinstance(metadata, Mapping)
        annotations = metadata.get("annotations") or {}
        raw = body.get("data") or {}
        data: dict[str, str] = {}
        for key, encoded in raw.items() if isinstance(raw, Mapping) else ():
            with contextlib.suppress(ValueError):  # binascii.Error and UnicodeDecodeError are ValueErrors
                data[str(key)] = base64.b64decode(str(encoded), validate=True).decode()
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            resource_version=str(metadata.get("resourceVersion", "")),
            readable_by=parse_name_list(annotations.get(READABLE_BY_ANNOTATION)),
            data=data,
        )


@dataclass(frozen=True)
class Endpoints:
    """Ready and total endpoints behind a Service, from its EndpointSlices."""

    ready: int
    total: int


# What a pod template reads of one ConfigMap or Secret: a set of keys, or None for all of it.
Reads = frozenset[str] | None

# A view's reads of no object at all, shared: most workloads read no Secret, and a view stays slim.
NO_READS: Mapping[str, Reads] = MappingProxyType({})


@dataclass(frozen=True)
class _SourceFields:
    """Where a pod spec names the objects of one kind it reads, ConfigMaps or Secrets: the fields differ by kind."""

    env_from: str  # containers[].envFrom[].<env_from>.name: every key
    key_ref: str  # containers[].env[].valueFrom.<key_ref>: {name, key}
    volume: str  # volumes[].<volume> and volumes[].projected.sources[].<volume>; items restrict the keys
    volume_name: str  # the field of volumes[].<volume> that names it (a projected source always says "name")


_CONFIGMAP_FIELDS = _SourceFields(
    env_from="configMapRef", key_ref="configMapKeyRef", volume="configMap", volume_name="name"
)
_SECRET_FIELDS = _SourceFields(env_from="secretRef", key_ref="secretKeyRef", volume="secret", volume_name="secretName")


def _merge(reads: dict[str, Reads], name: str, keys: Reads) -> None:
    if name in reads:
        old = reads[name]
        reads[name] = None if old is None or keys is None else old | keys
    else:
        reads[name] = keys


def _volume_reads(source: Mapping[str, Any]) -> Reads:
    items = source.get("items")
    return frozenset(str(i["key"]) for i in items if "key" in i) if items else None


def _read_sources(pod_spec: Mapping[str, Any], fields: _SourceFields) -> dict[str, Reads]:
    """Return, for each object of the kind ``fields`` describes that a pod spec reads, the keys it reads
    (None: every key).

    Counts ``envFrom``, ``env[].valueFrom`` key references, volumes and
    ``projected`` volume sources, in containers and init containers.
    """
    reads: dict[str, Reads] = {}
    for container in [*(pod_spec.get("initContainers") or ()), *(pod_spec.get("containers") or ())]:
        for source in container.get("envFrom") or ():
            ref = source.get(fields.env_from)
            if ref and ref.get("name"):
                _merge(reads, ref["name"], None)
        for env in container.get("env") or ():
            ref = (env.get("valueFrom") or {}).get(fields.key_ref)
            if ref and ref.get("name") and ref.get("key"):
                _merge(reads, ref["name"], frozenset({ref["key"]}))
    for volume in pod_spec.get("volumes") or ():
        source = volume.get(fields.volume)
        if source and source.get(fields.volume_name):
            _merge(reads, source[fields.volume_name], _volume_reads(source))
        for projected in (volume.get("projected") or {}).get("sources") or ():
            source = projected.get(fields.volume)
            if source and source.get("name"):
                _merge(reads, source["name"], _volume_reads(source))
    return reads


def read_configmaps(pod_spec: Mapping[str, Any]) -> dict[str, Reads]:
    """Return, for each ConfigMap a pod spec reads, the keys it reads (None: every key); see ``_read_sources``."""
    return _read_sources(pod_spec, _CONFIGMAP_FIELDS)


def read_secrets(pod_spec: Mapping[str, Any]) -> dict[str, Reads]:
    """Return, for each Secret a pod spec reads, the keys it reads (None: every key); see ``_read_sources``.

    Names and keys only: a pod spec names Secrets, it holds none of their data.
    """
    return _read_sources(pod_spec, _SECRET_FIELDS)


RolloutState = Literal["Complete", "Progressing", "Stalled"]


@dataclass(frozen=True)
class Progress:
    """Where a workload's rollout stands, from its own status; the message is stable while the state holds."""

    state: RolloutState
    message: str = ""


def rolling(kind: WorkloadKind, namespace: str, name: str) -> Progress:
    """The progress of a workload whose new pods are not all available yet."""
    return Progress("Progressing", f"{kind} {namespace}/{name}: new pods not yet available")


def patched(workload: WorkloadView) -> Progress:
    """The progress of a workload whose pod template was just patched: rolling, unless its kind starts no rollout.

    A CronJob's patched template is only what its next Jobs run: there is nothing to wait for.
    """
    if not workload.resource.rolls:
        return Progress("Complete")
    return rolling(workload.kind, workload.namespace, workload.name)


def _count(status: Mapping[str, Any], field_name: str) -> int:
    return int(status.get(field_name) or 0)


def read_progress(resource: WorkloadResource, body: Mapping[str, Any]) -> Progress:
    """Return whether the workload's newest pod template runs available everywhere, as ``kubectl rollout status`` tells.

    Deployments: the controller saw the generation, every replica is updated,
    no old one is left, and the updated ones are available; ``Stalled`` with the
    Deployment's own message once it reports ``ProgressDeadlineExceeded``.
    StatefulSets and DaemonSets: updated and available counts from their
    status (they have no deadline, so never stall); with ``OnDelete`` nothing
    rolls by itself, so there is nothing to wait for. A CronJob is always
    ``Complete``: a patched template starts no rollout, only its next Jobs
    run it, and a Job already running is not ours to wait for. An Argo Rollout:
    its controller's own verdict (``read_argo_progress``). The message
    names no count, so a replica coming up does not change it.
    """
    if not resource.rolls:
        return Progress("Complete")
    kind = resource.kind
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    what = f"{kind} {metadata.get('namespace', '')}/{metadata.get('name', '')}"
    waiting = rolling(kind, str(metadata.get("namespace", "")), str(metadata.get("name", "")))
    if kind == "Rollout":
        return read_argo_progress(what, waiting=waiting, metadata=metadata, spec=spec, status=status)
    if kind not in WORKLOAD_RESOURCES:
        return read_mapped_progress(what, waiting=waiting, metadata=metadata, spec=spec, status=status)
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


def read_mapped_progress(
    what: str, *, waiting: Progress, metadata: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]
) -> Progress:
    """Return the progress of an object of a mapped kind, from the conventions most workload controllers follow.

    Until ``status.observedGeneration`` reaches the generation, its controller
    has not seen the patch: ``Progressing``. Then, with replica counts (as
    Deployments and OpenKruise's CloneSets report them), every wanted replica
    updated and available (or ready); without them, a ``Ready`` condition
    (as Knative reports), ``False`` being still ``Progressing``. A kind that
    reports none of these has nothing to wait for: ``Complete``.
    """
    if "observedGeneration" in status and int(status.get("observedGeneration") or 0) < int(
        metadata.get("generation") or 0
    ):
        return waiting
    if "updatedReplicas" in status:
        wanted = int(spec.get("replicas", 1))
        available = _count(status, "availableReplicas" if "availableReplicas" in status else "readyReplicas")
        return Progress("Complete") if _count(status, "updatedReplicas") >= wanted and available >= wanted else waiting
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready" and condition.get("status") != "True":
            return waiting
    return Progress("Complete")


def read_argo_progress(
    what: str, *, waiting: Progress, metadata: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]
) -> Progress:
    """Return an Argo Rollout's progress from the phase its controller reports, once it saw the generation.

    Argo Rollouts sums its canary or blue-green steps up in ``status.phase``:
    ``Healthy`` is ``Complete``; ``Degraded`` (an aborted rollout, a progress
    deadline passed) is ``Stalled`` with its ``status.message``; ``Paused`` (a
    pause step, or one waiting for a promotion) and ``Progressing`` are
    ``Progressing``. Until ``status.observedGeneration`` (a string there) equals
    the generation, the phase is the old revision's: ``Progressing``. A restart
    asked for (``spec.restartAt``) is ``Progressing`` until the controller says
    it restarted every pod (``status.restartedAt`` at that time).
    """
    if str(status.get("observedGeneration") or "") != str(metadata.get("generation") or ""):
        return waiting
    asked, restarted = str(spec.get("restartAt") or ""), str(status.get("restartedAt") or "")
    if asked and restarted < asked:
        return Progress("Progressing", f"{what}: restarting its pods")
    phase = status.get("phase")
    if phase == "Healthy":
        return Progress("Complete")
    if phase == "Degraded":
        return Progress("Stalled", f"{what}: {status.get('message') or 'degraded'}")
    if phase == "Paused":
        return Progress("Progressing", f"{what}: paused; its steps go on once promoted or resumed")
    return waiting


@dataclass(frozen=True)
class WorkloadView:
    """The parts of a Deployment, StatefulSet, DaemonSet, CronJob or Argo Rollout that rollout decisions read."""

    resource: WorkloadResource  # its kind's entry in the table of kinds
    namespace: str
    name: str
    labels: Mapping[str, str]
    reads: Mapping[str, Reads]  # ConfigMap name -> the keys its pods read
    config_hash: str | None
    secret_reads: Mapping[str, Reads] = field(default_factory=lambda: NO_READS)  # Secret name -> keys read
    rollable_by: frozenset[str] = frozenset()  # the ServiceLinks its owner lets roll it (ROLLABLE_BY_ANNOTATION)
    opted_out: bool = False  # its owner keeps every ServiceLink from rolling it (ROLLOUT_ANNOTATION: never)
    resource_version: str = ""  # guards a patch against a change seen too late
    progress: Progress = Progress("Complete")
    # A Rollout with spec.workloadRef: the Deployment whose pod template it runs (that one is patched), else None.
    workload_ref: str | None = None
    generation: int = 0  # metadata.generation: a Rollout's workload_generation is compared with a Deployment's
    # A Rollout with spec.workloadRef: the generation of that Deployment its controller last saw (a string there).
    workload_generation: str = ""
    # Whether it has a pod template where its kind holds one: a mapping whose spec.template misses says so.
    has_template: bool = True
    rolled_at: str | None = None  # when servicelink last rolled it (ROLLED_AT_ANNOTATION), RFC 3339
    # The digest of its pod template but the config hash (``template_digest``), and the record servicelink's last
    # patch left (ROLLED_TEMPLATE_LABEL): see ``template_record``.
    template_digest: str = ""
    rolled_template: str | None = None
    # Restarted in place, not given a new template: an Argo Rollout with an inline template whose owner asks for
    # restarts (ROLLOUT_ANNOTATION: restart), or a Deployment whose template such Rollouts run (``restarts``
    # names them; ``plan.with_restarts``). ``config_hash`` is then the one on its own metadata.
    restart: bool = False
    restarts: tuple[str, ...] = ()
    asks_restart: bool = False  # an Argo Rollout whose owner asks for restarts, inline template or workloadRef
    own_config_hash: str | None = None  # CONFIG_HASH_ANNOTATION on its own metadata: the hash it restarted for
    cooldown: int | None = None  # its owner's cooldown in seconds (COOLDOWN_ANNOTATION), over the ServiceLinks'
    windows: str | None = None  # its owner's rollout windows as written (ROLLOUT_WINDOWS_ANNOTATION)

    @property
    def kind(self) -> WorkloadKind:
        """Its kind, as spec.workloads.names and status name it."""
        return self.resource.kind

    @property
    def changed_since_rolled(self) -> bool:
        """Whether its owner changed its pod template since servicelink's last rollout (``kubectl rollout undo``,
        an edit); False when servicelink never left its record (ROLLED_TEMPLATE_LABEL)."""
        return self.rolled_template is not None and self.rolled_template != template_record(
            self.template_digest, self.config_hash
        )

    @classmethod
    def from_body(cls, resource: WorkloadResource, body: Mapping[str, Any]) -> WorkloadView:
        """Build a view from a workload of the kind ``resource`` as the API returns it."""
        metadata = body.get("metadata") or {}
        template = resource.pod_template(body)
        asks_restart = read_asks_restart(resource, body)
        restart = asks_restart and read_workload_ref(resource, body) is None
        own_hash = (metadata.get("annotations") or {}).get(CONFIG_HASH_ANNOTATION)
        # Restarted in place, its pods' hash is on its own metadata: its template stays the owner's.
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        return cls(
            resource=resource,
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            labels=dict(metadata.get("labels") or {}),
            reads=read_configmaps(template.get("spec") or {}),
            config_hash=own_hash if restart else annotations.get(CONFIG_HASH_ANNOTATION),
            secret_reads=read_secrets(template.get("spec") or {}) or NO_READS,
            rollable_by=parse_name_list((metadata.get("annotations") or {}).get(ROLLABLE_BY_ANNOTATION)),
            opted_out=read_opt_out(metadata),
            resource_version=str(metadata.get("resourceVersion", "")),
            progress=read_progress(resource, body),
            workload_ref=read_workload_ref(resource, body),
            generation=int(metadata.get("generation") or 0),
            workload_generation=str((body.get("status") or {}).get("workloadObservedGeneration") or ""),
            has_template=bool(template),
            rolled_at=(metadata.get("annotations") or {}).get(ROLLED_AT_ANNOTATION),
            template_digest=template_digest(template),
            restart=restart,
            asks_restart=asks_restart,
            own_config_hash=own_hash,
            rolled_template=(metadata.get("labels") or {}).get(ROLLED_TEMPLATE_LABEL),
            cooldown=read_cooldown(metadata),
            windows=(metadata.get("annotations") or {}).get(ROLLOUT_WINDOWS_ANNOTATION),
        )


def template_digest(template: Mapping[str, Any]) -> str:
    """The digest of a pod template, its config-hash annotation left out: what its owner, not servicelink, wrote."""
    metadata = dict(template.get("metadata") or {})
    metadata["annotations"] = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k != CONFIG_HASH_ANNOTATION
    }
    text = json.dumps({**template, "metadata": metadata}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def template_record(digest: str, config_hash: str | None) -> str:
    """The ROLLED_TEMPLATE_LABEL of a pod template of ``digest`` (``template_digest``) carrying ``config_hash``."""
    return hashlib.sha256(f"{digest}\n{config_hash or ''}".encode()).hexdigest()[:8]


def read_cooldown(metadata: Mapping[str, Any]) -> int | None:
    """A workload's own cooldown in seconds (``servicelink.dev/cooldown-seconds``); None when unset or not a number
    from 0 to ``MAX_COOLDOWN_SECONDS``."""
    value = str((metadata.get("annotations") or {}).get(COOLDOWN_ANNOTATION) or "").strip()
    if not value.isdigit() or int(value) > MAX_COOLDOWN_SECONDS:
        return None
    return int(value)


def read_opt_out(metadata: Mapping[str, Any]) -> bool:
    """Whether a workload's own ``metadata`` opts it out of every rollout: ``servicelink.dev/rollout: never``.

    Read in any case and with spaces around it, as owners type it; any other value opts nothing out.
    """
    value = (metadata.get("annotations") or {}).get(ROLLOUT_ANNOTATION)
    return str(value or "").strip().lower() == ROLLOUT_NEVER


def read_asks_restart(resource: WorkloadResource, body: Mapping[str, Any]) -> bool:
    """Whether an Argo Rollout's owner asks for restarts, not new revisions (``servicelink.dev/rollout: restart``,
    in any case); any other kind: False."""
    if resource.kind != "Rollout":
        return False
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(ROLLOUT_ANNOTATION)
    return str(value or "").strip().lower() == ROLLOUT_RESTART


def read_workload_ref(resource: WorkloadResource, body: Mapping[str, Any]) -> str | None:
    """Return the Deployment an Argo Rollout's ``spec.workloadRef`` names, or None (another kind, an inline template).

    Only a Deployment counts: it is the workload servicelink patches for such a Rollout.
    """
    if resource.kind != "Rollout":
        return None
    ref = (body.get("spec") or {}).get("workloadRef") or {}
    if not isinstance(ref, Mapping) or ref.get("kind") != "Deployment" or not ref.get("name"):
        return None
    return str(ref["name"])


# A Job condition of status True that ends it, or is about to (the last two, since Kubernetes 1.31, come first:
# its pods are being stopped). Such a Job starts no pod again.
FINISHED_JOB_CONDITIONS = frozenset({"Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"})


def job_finished(body: Mapping[str, Any]) -> bool:
    """Whether a Job has finished, by its conditions; one not started yet, or with active pods, has not."""
    return any(
        cond.get("type") in FINISHED_JOB_CONDITIONS and cond.get("status") == "True"
        for cond in (body.get("status") or {}).get("conditions") or ()
    )


@dataclass(frozen=True)
class JobView:
    """The parts of a Job that the report of stale Jobs reads: what its pods read (ConfigMaps and Secrets), and the
    hash they started on."""

    namespace: str
    name: str
    reads: Mapping[str, Reads]  # ConfigMap name -> the keys its pods read
    config_hash: str | None
    running: bool
    secret_reads: Mapping[str, Reads] = field(default_factory=lambda: NO_READS)  # Secret name -> keys read

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> JobView:
        """Build a view from a Job as the API returns it."""
        metadata = body.get("metadata") or {}
        template = REPORTED_RESOURCES["Job"].pod_template(body)
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            reads=read_configmaps(template.get("spec") or {}),
            config_hash=annotations.get(CONFIG_HASH_ANNOTATION),
            running=not job_finished(body),
            secret_reads=read_secrets(template.get("spec") or {}) or NO_READS,
        )


class Ordered(Protocol):
    """A ServiceLink's place in the order of claims on a shared key."""

    @property
    def created(self) -> str: ...

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class Claim:
    """The keys one ServiceLink writes into one ConfigMap."""

    namespace: str
    name: str
    uid: str
    created: str
    configmap: str
    keys: frozenset[str]

    def precedes(self, other: Ordered) -> bool:
        """Whether this claim came first (older, then by name): the earlier one keeps a shared key."""
        return (self.created, self.name) < (other.created, other.name)
