"""Decide what one reconcile of a ServiceLink does, from what the watches know (pure).

Each step of ``reconcile.Reconciler`` asks one function here what to do and
then does it: which values to write and which keys conflict, what to apply to
the ConfigMap, which baseline a rollout compares against, the status and its
merge patch, which Events to record, when the finalizer comes and goes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from servicelink import conditions as c
from servicelink.cache import linked_services
from servicelink.consent import (
    Skipped,
    judge_configmap_create,
    judge_configmap_write,
    judge_secret_write,
    split_consumers,
)
from servicelink.messages import summarize
from servicelink.model import (
    API_VERSION,
    FIELD_MANAGER,
    FINALIZER,
    KIND,
    RolledOut,
    ServiceLinkSpec,
    StaleJob,
    WorkloadKind,
    parse_spec,
)
from servicelink.render import (
    CONFIGMAP_DATA_LIMIT,
    ConfigMapPlan,
    decode_secret,
    plan_configmap,
    render_configmap,
    render_owner_reference,
    render_secret,
)
from servicelink.resolve import digest_secret_value, resolve_links
from servicelink.rollout import (
    Deferred,
    Held,
    Rollout,
    SecretOutput,
    WorkloadKey,
    describe_workload,
    find_stale_jobs,
    needs_slot,
    parse_time,
    plan_deferral,
    plan_rollouts,
    plan_slots,
    plan_timing,
    progress_of,
    restore_deferred,
    select_consumers,
)
from servicelink.status import (
    Verdict,
    judge_rollout,
    judge_sync,
    parse_conditions,
    parse_deferred,
    render_invalid_status,
    render_status,
)
from servicelink.values import Values, decide_values
from servicelink.views import Claim, Endpoints, JobView, ObjectKey, SecretView, ServiceView, WorkloadView

# ConfigMaps are not watched (a cluster holds many, some large), so consent given to a
# refused ServiceLink is found by looking again this often, one GET each time.
CONSENT_RECHECK_SECONDS = 15.0
# False Synced and RolledOut reasons that deserve a Warning Event. Not RolloutInProgress nor
# WaitingForEndpoints: they pass. Not KeyConflict: each link that has one gets its own Event.
WARNED_CONDITION_REASONS = frozenset(
    {
        c.CONFIGMAP_TOO_LARGE,
        c.WRITE_FAILED,
        c.CONFIGMAP_NOT_SHARED,
        c.ROLLOUT_FAILED,
        c.WORKLOAD_NOT_OPTED_IN,
        c.ROLLOUT_STALLED,
    }
)


class World(Protocol):
    """What the operator's watches know about the cluster right now."""

    def servicelink(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The ServiceLink as last seen, or None when it is gone."""

    def service(self, key: ObjectKey) -> ServiceView | None:
        """The Service as last seen, or None when it does not exist."""

    def endpoints(self, key: ObjectKey) -> Endpoints | None:
        """Ready and total endpoints of a Service across its EndpointSlices, or None if it has none."""

    def claims(self, namespace: str, configmap: str) -> list[Claim]:
        """Every ServiceLink's claim on one ConfigMap."""

    def secret_writers(self, namespace: str, secret: str) -> list[str]:
        """The names of the ServiceLinks of ``namespace`` whose spec.secretName is ``secret``, sorted."""

    def secrets(self, namespace: str) -> Mapping[str, SecretView] | None:
        """The Secrets of ``namespace`` shared with servicelink, by name; None when this install reads no Secret."""

    def workloads(self, namespace: str, *, reading: str | None) -> list[WorkloadView]:
        """Deployments, StatefulSets, DaemonSets, CronJobs and Rollouts of a namespace: those whose pods read the
        ConfigMap ``reading``, or all of them when ``reading`` is None."""

    def workloads_reading_secret(self, namespace: str, *, secret: str) -> list[WorkloadView]:
        """The workloads of a namespace (every kind ``workloads`` returns) whose pods read the Secret ``secret``;
        a ConfigMap of the same name does not count."""

    def workload(self, kind: WorkloadKind, namespace: str, name: str) -> WorkloadView | None:
        """One Deployment, StatefulSet, DaemonSet, CronJob or Rollout as last seen, or None when it is gone."""

    def rollouts_templated_by(self, namespace: str, deployment: str) -> list[str]:
        """The names of the Argo Rollouts whose ``spec.workloadRef`` names the Deployment, sorted; none: []."""

    def rollouts_in_flight(self) -> Mapping[WorkloadKey, str]:
        """The workloads servicelink rolled whose rollout neither completed nor stalled yet, in every namespace,
        each with when servicelink rolled it (its servicelink.dev/rolled-at)."""

    def jobs(self, namespace: str, *, reading: str) -> list[JobView]:
        """The running Jobs of a namespace whose pods read the ConfigMap ``reading``."""

    def jobs_reading_secret(self, namespace: str, *, secret: str) -> list[JobView]:
        """The running Jobs of a namespace whose pods read the Secret ``secret``."""


@dataclass(frozen=True)
class ServiceLinkView:
    """What a reconcile reads of a ServiceLink, read once from its body."""

    namespace: str
    name: str
    uid: str
    created: str  # creationTimestamp: with the name, the order of claims on a shared key
    generation: int
    resource_version: str
    finalizers: tuple[str, ...]
    deleting: bool
    spec: Mapping[str, Any]  # as written: parse_spec tells whether it is valid
    status: Mapping[str, Any]

    @property
    def salt(self) -> str:
        """What keys the digests of its Secret's values: its namespace and name, which a ServiceLink deleted and
        created again keeps (its uid changes), so its consumers are not rolled for that."""
        return f"{self.namespace}/{self.name}"

    @property
    def previous(self) -> dict[str, str]:
        """The values the last status says we wrote."""
        return dict(self.status.get("values") or {})

    @property
    def rolled_out(self) -> list[RolledOut]:
        """The consumers the last status says we rolled."""
        return [RolledOut.model_validate(r) for r in self.status.get("rolledOut") or ()]

    @property
    def stale_jobs(self) -> list[StaleJob]:
        """The Jobs the last status says run on old values."""
        return [StaleJob.model_validate(j) for j in self.status.get("staleJobs") or ()]


def parse_servicelink(body: Mapping[str, Any]) -> ServiceLinkView:
    """Read the parts of a ServiceLink a reconcile uses."""
    metadata = body.get("metadata") or {}
    return ServiceLinkView(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        created=str(metadata.get("creationTimestamp", "")),
        generation=int(metadata.get("generation", 0)),
        resource_version=str(metadata.get("resourceVersion", "")),
        finalizers=tuple(metadata.get("finalizers") or ()),
        deleting=bool(metadata.get("deletionTimestamp")),
        spec=body.get("spec") or {},
        status=body.get("status") or {},
    )


@dataclass(frozen=True)
class Event:
    """An Event to record on the ServiceLink."""

    reason: str
    message: str
    warning: bool = False
    logged_as: str = ""  # what the operator's log calls it, when not its reason
    # ValueChanged: each change as describe_change words it, and each workload rolled, uncut (alerts.py).
    changes: tuple[str, ...] = ()
    rolled: tuple[str, ...] = ()


# --- Finalizer ---------------------------------------------------------------------------------


def plan_release_finalizers(view: ServiceLinkView) -> list[str] | None:
    """The finalizers to leave once our keys are out of a co-managed ConfigMap; None when ours is not there."""
    if FINALIZER not in view.finalizers:
        return None
    return [f for f in view.finalizers if f != FINALIZER]


def plan_hold_finalizers(view: ServiceLinkView, plan: ConfigMapPlan) -> list[str] | None:
    """The finalizers to set before writing a ConfigMap, or None when they stay as they are.

    A ConfigMap we co-manage outlives us: the ServiceLink's deletion waits
    until our keys are out of it. One we own goes with us through its
    ownerReference instead.
    """
    if not plan.write or plan.with_owner or FINALIZER in view.finalizers:
        return None
    return [*view.finalizers, FINALIZER]


# --- Values --------------------------------------------------------------------------------------


def split_claims(view: ServiceLinkView, claims: Sequence[Claim]) -> tuple[list[Claim], frozenset[str]]:
    """Return the earlier claims on our ConfigMap, and every key our sibling ServiceLinks claim."""
    others = [claim for claim in claims if claim.uid != view.uid]
    earlier = [claim for claim in others if claim.precedes(view)]
    return earlier, frozenset(key for claim in others for key in claim.keys)


def _first_valid(claims: Sequence[Claim], world: World) -> str | None:
    """The name of the oldest claimant whose spec is valid (the operator writes nothing for another), else None."""
    for claim in sorted(claims, key=lambda claim: (claim.created, claim.name)):
        body = world.servicelink(claim.namespace, claim.name)
        if body is None:
            continue
        try:
            parse_spec(body.get("spec") or {})
        except ValidationError:
            continue
        return claim.name
    return None


def plan_values(view: ServiceLinkView, *, spec: ServiceLinkSpec, world: World, cluster_domain: str) -> Values:
    """Resolve the links; keep a last value where a link may; leave out keys an earlier ServiceLink claims."""
    refs = linked_services(view.namespace, view.spec)
    services = {key: svc for key in refs if (svc := world.service(key)) is not None}
    endpoints = {key: eps for key in refs if (eps := world.endpoints(key)) is not None}
    results = resolve_links(
        spec,
        namespace=view.namespace,
        services=services,
        endpoints=endpoints,
        cluster_domain=cluster_domain,
        servicelink=view.name,
        salt=view.salt,
        secrets=world.secrets(view.namespace),
    )
    earlier, siblings = split_claims(view, world.claims(view.namespace, spec.config_map_name))
    return decide_values(
        results,
        services=services,
        previous=view.previous,
        earlier=earlier,
        siblings=siblings,
        namespace=view.namespace,
        configmap=spec.config_map_name,
        creator=_first_valid(earlier, world),
        secret_keys=spec.secret_keys,
    )


# --- ConfigMap -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretWritten:
    """What the Secret step achieved, by digest (``resolve.digest_secret_value``): never a value."""

    name: str
    before: dict[str, str]  # key -> digest of what the Secret held for us before; what it holds now if created
    after: dict[str, str]  # key -> digest of what it holds for us now
    verdict: Verdict | None = None  # None: written, or nothing to write
    conflicts: dict[str, str] = field(default_factory=dict)
    restored: dict[str, str] = field(default_factory=dict)  # key -> the field manager it was taken back from

    @property
    def changed(self) -> list[str]:
        """The keys whose value changed, was added or was removed, sorted."""
        return sorted(k for k in self.before.keys() | self.after.keys() if self.before.get(k) != self.after.get(k))


@dataclass(frozen=True)
class Written:
    """What the write step achieved: the values the ConfigMap holds for us and how that went; the Secret's."""

    values: dict[str, str]
    verdict: Verdict
    plan: ConfigMapPlan | None  # None: nothing was written
    conflicts: dict[str, str]
    secret: SecretWritten | None = None  # None: spec.secretName is not set

    @property
    def digests(self) -> dict[str, str]:
        """Every value written for us: the ConfigMap's, and the Secret's as digests. What the consumers read."""
        return self.values | (self.secret.after if self.secret is not None else {})


@dataclass(frozen=True)
class Write:
    """The ConfigMap step: what to set and apply, and what it achieves once applied."""

    outcome: Written
    finalizers: list[str] | None = None  # set before the apply
    apply: dict[str, Any] | None = None  # the body to apply, None when nothing is to be written
    force: bool = False


def _shared_version(configmap: Mapping[str, Any] | None, plan: ConfigMapPlan) -> str | None:
    """The resourceVersion a write into a shared ConfigMap must find, else None.

    Consent to write was read from this version: should its owner withdraw
    it meanwhile, the write fails with a conflict and is retried, and refused.
    """
    if configmap is None or plan.with_owner:
        return None
    version: str | None = (configmap.get("metadata") or {}).get("resourceVersion")
    return version


def plan_write(
    view: ServiceLinkView,
    *,
    spec: ServiceLinkSpec,
    values: Values,
    configmap: Mapping[str, Any] | None,
    guard: str | None = None,
) -> Write:
    """Decide the ConfigMap write: refused without consent, refused past the size limit, else the apply.

    A missing ConfigMap is created by the oldest valid ServiceLink naming it
    (``Values.creator``); a younger one waits, refused, until it exists.

    A key another field manager holds and we never wrote conflicts; one it
    changed after we wrote it is taken back (``force``).

    With ``guard``, the apply must find that resourceVersion (``plan_write_over_seen``).
    """
    previous = view.previous
    where = f"ConfigMap {view.namespace}/{spec.config_map_name}"
    refusal = (
        judge_configmap_create(
            namespace=view.namespace, name=spec.config_map_name, servicelink=view.name, creator=values.creator
        )
        if configmap is None
        else judge_configmap_write(configmap, servicelink=view.name, uid=view.uid)
    )
    if refusal is not None:
        return Write(Written(previous, Verdict(False, c.CONFIGMAP_NOT_SHARED, refusal), None, values.conflicts))
    plan = plan_configmap(
        configmap,
        desired=values.desired,
        previous=previous,
        siblings=values.siblings,
        owner_uid=view.uid,
        manager=FIELD_MANAGER,
    )
    conflicts = values.conflicts | {
        key: (
            f"key {key} of {where} is owned by field manager {manager!r}; "
            "remove it from that manager's manifest (or delete the key) and servicelink takes it over"
        )
        for key, manager in plan.foreign.items()
    }
    if plan.size > CONFIGMAP_DATA_LIMIT:
        message = (
            f"{where} would hold {plan.size} bytes of data, over the {CONFIGMAP_DATA_LIMIT}-byte limit; "
            "split the links across ConfigMaps"
        )
        return Write(Written(previous, Verdict(False, c.CONFIGMAP_TOO_LARGE, message), None, conflicts))
    ours = {k: v for k, v in plan.apply_data.items() if k in values.desired}
    verdict = judge_sync(namespace=view.namespace, configmap=spec.config_map_name, ours=ours, conflicts=conflicts)
    if not plan.write:
        return Write(Written(ours, verdict, plan, conflicts))
    owner = render_owner_reference(name=view.name, uid=view.uid, api_version=API_VERSION, kind=KIND)
    apply = render_configmap(
        name=spec.config_map_name,
        namespace=view.namespace,
        data=plan.apply_data,
        owner=owner if plan.with_owner else None,
        resource_version=guard or _shared_version(configmap, plan),
    )
    return Write(Written(ours, verdict, plan, conflicts), plan_hold_finalizers(view, plan), apply, plan.force)


def plan_write_over_seen(
    view: ServiceLinkView, *, spec: ServiceLinkSpec, values: Values, seen: Mapping[str, Any]
) -> Write | None:
    """Decide the write on ``seen``, the ConfigMap as our last apply returned it, without reading it first.

    The apply must find that copy's resourceVersion, so a copy no longer
    current (consent revoked, another manager's edit) never decides. It
    decides only a write: None when it would refuse, write nothing (drift
    shows only in a fresh read) or go over the size limit; then the
    ConfigMap is read and the write decided again.
    """
    guard = str((seen.get("metadata") or {}).get("resourceVersion", "")) or None
    if guard is None:
        return None
    write = plan_write(view, spec=spec, values=values, configmap=seen, guard=guard)
    return write if write.apply is not None else None


def plan_write_failed(view: ServiceLinkView, *, spec: ServiceLinkSpec, write: Write, error: str) -> Written:
    """What the ConfigMap step achieved when the API server refused the apply: nothing."""
    message = f"cannot write ConfigMap {view.namespace}/{spec.config_map_name}: {error}"
    return Written(view.previous, Verdict(False, c.WRITE_FAILED, message), None, write.outcome.conflicts)


# --- Secret --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretWrite:
    """The Secret step: the apply, if any, and what it achieves once applied."""

    outcome: SecretWritten
    apply: dict[str, Any] | None = None  # never logged: it holds the values
    force: bool = False
    finalizers: list[str] | None = None  # set before the apply: a Secret we co-manage keeps our keys until we go


def plan_secret_write(
    view: ServiceLinkView,
    *,
    spec: ServiceLinkSpec,
    values: Values,
    secret: Mapping[str, Any] | None,
    writers: list[str],
) -> SecretWrite | None:
    """Decide the write of the Secret ``spec.secretName``: the values of the links with credentials; None
    when the spec names no Secret.

    As for the ConfigMap: created owned by this ServiceLink, or written only
    with its owner's consent; a key another field manager holds and we never
    wrote conflicts, one changed after we wrote it is taken back. A key whose
    link does not resolve now keeps the value it has, as the ConfigMap's do.
    A Secret named by several ServiceLinks (``writers``) is written by the
    oldest-named only: one writer, so one never releases another's keys.
    """
    if spec.secret_name is None:
        return None
    name, where = spec.secret_name, f"Secret {view.namespace}/{spec.secret_name}"
    decoded = decode_secret(secret)
    current: Mapping[str, str] = (decoded or {}).get("data") or {}
    mine = {key: value for key, value in current.items() if key in spec.secret_keys}
    digest = functools.partial(digest_secret_value, salt=view.salt)
    before = {key: digest(value) for key, value in mine.items()}
    others = [writer for writer in writers if writer != view.name]
    refusal = judge_secret_write(secret, servicelink=view.name, uid=view.uid)
    if others and others[0] < view.name:
        refusal = (
            f"{where} is also spec.secretName of ServiceLink {view.namespace}/{others[0]}, which writes it;"
            " give each ServiceLink a Secret of its own"
        )
    if refusal is not None:
        return SecretWrite(SecretWritten(name, before, before, Verdict(False, c.SECRET_NOT_WRITABLE, refusal)))
    links = view.status.get("links") or ()
    wrote = {str(e.get("key")): "" for e in links if isinstance(e, Mapping) and e.get("credentials")}
    kept = {r.key: mine[r.key] for r in values.results if r.key in mine and r.keeps_last_value and r.key in wrote}
    if secret is None and not values.secret:
        return SecretWrite(SecretWritten(name, {}, {}))  # nothing to write: no empty Secret is created
    plan = plan_configmap(
        decoded,
        desired=kept | values.secret,
        previous=wrote,
        siblings=frozenset(),
        owner_uid=view.uid,
        manager=FIELD_MANAGER,
    )
    after = {key: digest(value) for key, value in plan.apply_data.items()}
    conflicts = {
        key: (
            f"key {key} of {where} is owned by field manager {manager!r}; "
            "remove it from that manager's manifest (or delete the key) and servicelink takes it over"
        )
        for key, manager in plan.foreign.items()
    }
    outcome = SecretWritten(name, after if secret is None else before, after, None, conflicts, plan.restored)
    if not plan.write:
        return SecretWrite(outcome)
    owner = render_owner_reference(name=view.name, uid=view.uid, api_version=API_VERSION, kind=KIND)
    apply = render_secret(
        name=name,
        namespace=view.namespace,
        data=plan.apply_data,
        owner=owner if plan.with_owner else None,
        resource_version=_shared_version(secret, plan),
    )
    return SecretWrite(outcome, apply, plan.force, plan_hold_finalizers(view, plan))


def plan_secret_release(view: ServiceLinkView, *, secret_name: str, secret: Mapping[str, Any] | None) -> Release:
    """Withdraw our keys from the Secret ``secret_name`` as we are deleted, by the rule of ``plan_release``."""
    if secret is None:
        return Release(None)
    owners = (secret.get("metadata") or {}).get("ownerReferences") or ()
    if any(ref.get("uid") == view.uid for ref in owners):
        return Release(None)
    if judge_secret_write(secret, servicelink=view.name, uid=view.uid) is not None:
        return Release(None, f"Secret {secret_name} is no longer shared with it; its keys stay as they are")
    plan = plan_configmap(
        decode_secret(secret), desired={}, previous={}, siblings=frozenset(), owner_uid=view.uid, manager=FIELD_MANAGER
    )
    if not plan.write:
        return Release(None)
    apply = render_secret(
        name=secret_name, namespace=view.namespace, data={}, owner=None, resource_version=_shared_version(secret, plan)
    )
    return Release(apply)


def plan_secret_write_failed(write: SecretWrite, *, error: str) -> SecretWritten:
    """What the Secret step achieved when the API server refused the apply: nothing."""
    before = write.outcome.before
    message = f"cannot write Secret {write.outcome.name}: {error}"
    return SecretWritten(write.outcome.name, before, before, Verdict(False, c.WRITE_FAILED, message))


def join_written(written: Written, secret: SecretWritten | None) -> Written:
    """The write step's outcome: the ConfigMap's, and the Secret's; Synced fails as soon as either does."""
    if secret is None:
        return written
    conflicts = written.conflicts | secret.conflicts
    verdict = written.verdict
    if verdict.ok and secret.verdict is not None:
        verdict = secret.verdict
    elif verdict.ok and secret.conflicts:
        verdict = Verdict(False, c.KEY_CONFLICT, "; ".join(sorted(conflicts.values())))
    elif verdict.ok:
        verdict = Verdict(True, verdict.reason, f"{verdict.message}; Secret {secret.name} holds {len(secret.after)}")
    return Written(written.values, verdict, written.plan, conflicts, secret)


def plan_recheck(written: Written, rolled: Rolled | None = None, *, now: str = "") -> float | None:
    """Seconds after which to look again when only time can tell, else None: consent not given yet, or a
    consumer held back by a cooldown or a window (at its due time, a second late: the API's times are to the
    second)."""
    waits: list[float] = []
    if written.verdict.reason == c.CONFIGMAP_NOT_SHARED:
        waits.append(CONSENT_RECHECK_SECONDS)
    due, at = parse_time(rolled.due if rolled is not None else None), parse_time(now)
    if due is not None and at is not None:
        waits.append(max((due - at).total_seconds(), 0.0) + 1.0)
    return min(waits) if waits else None


@dataclass(frozen=True)
class Release:
    """What deletion does to a ConfigMap: the apply that withdraws our keys, or why it leaves them."""

    apply: dict[str, Any] | None
    kept: str = ""  # why the keys stay, for the log; empty when nothing is to say


def plan_release(
    view: ServiceLinkView, *, configmap_name: str, configmap: Mapping[str, Any] | None, claims: Sequence[Claim]
) -> Release:
    """Withdraw our keys from a ConfigMap we co-manage as we are deleted.

    Nothing to do when the ConfigMap is gone, or ours (it goes with its
    owner); and when it is no longer shared with us its keys stay as they are.
    """
    if configmap is None:
        return Release(None)
    owners = (configmap.get("metadata") or {}).get("ownerReferences") or ()
    if any(ref.get("uid") == view.uid for ref in owners):
        return Release(None)
    if judge_configmap_write(configmap, servicelink=view.name, uid=view.uid) is not None:
        return Release(None, f"ConfigMap {configmap_name} is no longer shared with it; its keys stay as they are")
    _, siblings = split_claims(view, claims)
    plan = plan_configmap(
        configmap, desired={}, previous={}, siblings=siblings, owner_uid=view.uid, manager=FIELD_MANAGER
    )
    if not plan.write:
        return Release(None)
    apply = render_configmap(
        name=configmap_name,
        namespace=view.namespace,
        data=plan.apply_data,
        owner=None,
        resource_version=_shared_version(configmap, plan),
    )
    return Release(apply)


# --- Rollout -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rolled:
    """What the rollout step achieved, for the status."""

    verdict: Verdict
    rolled_out: list[RolledOut]
    skipped: list[Skipped] = field(default_factory=list)
    deferred: list[Deferred] = field(default_factory=list)  # written, not yet rolled out
    # The kinds rolled out whose patched template starts no rollout (a CronJob): only what they start next runs it.
    start_next: frozenset[WorkloadKind] = frozenset()
    # By Deployment rolled out, the Argo Rollouts whose spec.workloadRef names it: Events name them too.
    templated_by: Mapping[str, Sequence[str]] = field(default_factory=dict)
    due: str | None = None  # when the first consumer held back by time is rolled (RFC 3339): reconcile again then
    held: tuple[str, ...] = ()  # the consumers held back by time, each with why and until when, for the Event


@dataclass(frozen=True)
class Roll:
    """The rollout step: the patches due, or (``done``) what it achieves without any."""

    done: Rolled | None
    rollouts: list[Rollout] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    baseline: dict[str, str] = field(default_factory=dict)
    # The keys changed since the consumers were last rolled: kept in status.deferred while a rollout is held back.
    changed: list[Deferred] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)  # due, but cooling down or outside their rollout windows


def plan_baseline(view: ServiceLinkView, written: Written) -> dict[str, str]:
    """The values the consumers' pods were last rolled to, which a rollout compares against.

    Our last status; the first time, what the ConfigMap held before we wrote
    it, and nothing to roll if it did not exist (pods waiting for it start
    with its values). Keys held back last time (``status.deferred``) count
    as still changed.
    """
    secret_before = written.secret.before if written.secret is not None else {}
    return restore_deferred(_values_before(view, written) | secret_before, parse_deferred(view.status))


def _values_before(view: ServiceLinkView, written: Written) -> dict[str, str]:
    """The values our last status says we wrote; the first time, what the ConfigMap held before (none if new)."""
    if written.plan is None:
        raise ValueError("no baseline without a write")
    if view.status.get("hash") is not None:
        return view.previous
    baseline = dict(written.values)
    if written.plan.creates:
        return baseline
    for key, old, _ in written.plan.changes:
        if old is None:
            baseline.pop(key, None)
        else:
            baseline[key] = old
    return baseline


def with_restarts(workload: WorkloadView, world: World) -> WorkloadView:
    """``workload``, restarted through Argo Rollouts if it is a Deployment whose template Rollouts run
    (``spec.workloadRef``) and each of them asks for restarts: then its template stays, each Rollout's
    ``spec.restartAt`` is set, and the hash they restarted for is on the Deployment's own metadata."""
    if workload.kind != "Deployment":
        return workload
    names = world.rollouts_templated_by(workload.namespace, workload.name)
    rollouts = [world.workload("Rollout", workload.namespace, name) for name in names]
    if not names or not all(r is not None and r.asks_restart for r in rollouts):
        return workload
    return dataclasses.replace(workload, restart=True, restarts=tuple(names), config_hash=workload.own_config_hash)


def plan_roll(
    view: ServiceLinkView,
    *,
    spec: ServiceLinkSpec,
    values: Values,
    written: Written,
    world: World,
    ignored_kinds: frozenset[WorkloadKind] = frozenset(),
    now: str = "",
) -> Roll:
    """Decide which consumers to patch, or why none: rollout off, nothing written, endpoints awaited.

    A consumer opted out or of a kind in ``ignored_kinds`` is never patched
    (``consent.split_consumers``); when it would have been, its entry in
    ``Roll.skipped`` carries the changed keys it reads, for the Event. One
    rolled less than its cooldown before ``now``, or outside its rollout windows, waits (``rollout.plan_timing``).
    """
    rolled_out = view.rolled_out
    if spec.rollout == "None":
        disabled = "spec.rollout is None: consumers are not restarted"
        return Roll(Rolled(Verdict(True, c.ROLLOUT_DISABLED, disabled), rolled_out))
    if written.plan is None:
        nothing = Verdict(True, c.NO_CHANGE, "nothing written, nothing rolled")
        return Roll(Rolled(nothing, rolled_out, deferred=parse_deferred(view.status)))
    configmap = spec.config_map_name
    # The index by ConfigMap answers auto-detection alone; names and selectors need the namespace.
    everyone = bool(spec.workloads.names) or spec.workloads.selector is not None
    candidates = [
        with_restarts(w, world) for w in world.workloads(view.namespace, reading=None if everyone else configmap)
    ]
    secret = None
    if written.secret is not None:
        secret = SecretOutput(written.secret.name, frozenset(written.secret.after) | frozenset(written.secret.before))
        seen = {(w.kind, w.name) for w in candidates}
        readers = world.workloads_reading_secret(view.namespace, secret=secret.name)
        candidates = [*candidates, *(w for w in readers if (w.kind, w.name) not in seen)]
    selected = select_consumers(
        candidates,
        spec=spec.workloads,
        configmap=configmap,
        configmap_keys=frozenset(written.plan.apply_data),
        secret=secret,
    )
    consumers, skipped = split_consumers(
        selected,
        configmap=configmap,
        servicelink=view.name,
        secret=None if secret is None else secret.name,
        ignored_kinds=ignored_kinds,
    )
    baseline = plan_baseline(view, written)
    changed, blocked = plan_deferral(
        values.results,
        services=values.services,
        baseline=baseline,
        desired=written.digests,
        secret_keys=frozenset(secret.keys) if secret is not None else frozenset(),
    )
    if spec.wait_for_endpoints and blocked:
        verdict = judge_rollout(
            namespace=view.namespace,
            configmap=configmap,
            failures=[],
            skipped=skipped,
            blocked=blocked,
            progress=[],
        )
        return Roll(Rolled(verdict, rolled_out, skipped, changed))
    # Those held out are planned like the rest, to tell which a change would have rolled; none is patched.
    held = {(s.kind, s.name) for s in skipped if s.reason != c.WORKLOAD_NOT_OPTED_IN}
    planned = [*consumers, *((w, reads) for w, reads in selected if (w.kind, w.name) in held)]
    managed_configmaps = frozenset(
        name for workload, _ in planned for name in workload.reads if world.claims(view.namespace, name)
    )
    due = plan_rollouts(
        planned,
        configmap=configmap,
        managed_configmaps=managed_configmaps,
        managed=written.plan.apply_data | (written.secret.after if written.secret is not None else {}),
        baseline=baseline,
        desired=written.digests,
    )
    kept = {(r.kind, r.name): r.changed_keys for r in due if (r.kind, r.name) in held}
    skipped = [dataclasses.replace(s, keys=kept.get((s.kind, s.name), ())) for s in skipped]
    go, timed = plan_timing(
        [r for r in due if (r.kind, r.name) not in held],
        workloads={(w.kind, w.name): w for w, _ in consumers},
        cooldown=spec.cooldown_seconds,
        windows=spec.windows(),
        now=now,
    )
    return Roll(None, go, skipped, baseline, changed, timed)


def plan_slot_takers(roll: Roll, *, world: World, in_flight: Mapping[WorkloadKey, str]) -> list[WorkloadKey]:
    """The workloads of ``roll`` whose patch would take a rollout slot (``rollout.needs_slot``): those that
    wait in line for one until they get it."""
    workloads = _views_of(roll, world)
    return [
        (r.kind, r.namespace, r.name) for r in roll.rollouts if needs_slot(r, workloads=workloads, in_flight=in_flight)
    ]


def _views_of(roll: Roll, world: World) -> dict[tuple[WorkloadKind, str], WorkloadView]:
    return {(r.kind, r.name): w for r in roll.rollouts if (w := world.workload(r.kind, r.namespace, r.name))}


def plan_pacing(
    roll: Roll, *, world: World, in_flight: Mapping[WorkloadKey, str], waiting: Sequence[WorkloadKey], cap: int
) -> Roll:
    """``roll`` with the rollouts that must wait for a slot under ``--max-rollouts-in-flight`` held back
    (``rollout.plan_slots``): they wait as a cooldown's do, their keys kept in ``status.deferred``."""
    if roll.done is not None or not cap:
        return roll
    go, held = plan_slots(
        roll.rollouts, workloads=_views_of(roll, world), in_flight=in_flight, waiting=waiting, cap=cap
    )
    return dataclasses.replace(roll, rollouts=go, held=[*roll.held, *held])


def judge_roll(
    view: ServiceLinkView,
    *,
    spec: ServiceLinkSpec,
    roll: Roll,
    outcomes: Mapping[tuple[WorkloadKind, str, str], str | None],
    world: World,
) -> Rolled:
    """What the patches achieved: ``outcomes`` has, by workload patched, None or why the API server refused;
    a workload missing from it waits for another ServiceLink of a ConfigMap it reads.

    While a consumer is not patched (refused, or waiting), the changed keys
    stay in ``status.deferred`` with the reason: the status, not memory, says
    a rollout is owed, so a restart or a new leader still rolls it, once.
    """
    failures: list[str] = []
    done: list[RolledOut] = []
    waiting = 0
    for rollout in roll.rollouts:
        key = (rollout.kind, rollout.namespace, rollout.name)
        if key not in outcomes:
            waiting += 1
        elif (failure := outcomes[key]) is not None:
            failures.append(failure)
        else:
            done.append(RolledOut(kind=rollout.kind, name=rollout.name, hash=rollout.hash))
    rolled_out = done or view.rolled_out
    views = {(w.kind, w.name): w for r in rolled_out if (w := world.workload(r.kind, view.namespace, r.name))}
    templated_by = {
        r.name: rollouts
        for r in rolled_out
        if r.kind == "Deployment" and (rollouts := world.rollouts_templated_by(view.namespace, r.name))
    }
    rollout_views = {
        name: found
        for names in templated_by.values()
        for name in names
        if (found := world.workload("Rollout", view.namespace, name))
    }
    progress = progress_of(
        rolled_out,
        namespace=view.namespace,
        workloads=views,
        just_rolled=frozenset((r.kind, r.name) for r in done if (r.kind, r.name) in views),  # not one gone
        templated_by=templated_by,
        rollouts=rollout_views,
    )
    verdict = judge_rollout(
        namespace=view.namespace,
        configmap=spec.config_map_name,
        failures=failures,
        skipped=roll.skipped,
        blocked=[],
        progress=progress,
        waiting=waiting,
        held=[
            (describe_workload(h.rollout.kind, h.rollout.namespace, h.rollout.name), h.due, h.reason, h.why)
            for h in roll.held
        ],
    )
    start_next = frozenset(w.kind for w in views.values() if not w.resource.rolls)
    first = min((h for h in roll.held if h.due is not None), key=lambda h: h.due or "", default=None)
    due = first.due if first is not None else None
    held = (
        c.ROLLOUT_FAILED
        if failures
        else (first or roll.held[0]).reason
        if roll.held
        else c.WAITING_FOR_CONFIGMAPS
        if waiting
        else None
    )
    # A slot's due time is only when one frees at the latest: the status does not carry it, so it stays put.
    timed = held in (c.COOLING_DOWN, c.OUTSIDE_WINDOW)
    deferred = (
        [dataclasses.replace(d, reason=held, due=due if timed else None) for d in roll.changed]
        if held is not None
        else []
    )
    return Rolled(
        verdict,
        rolled_out,
        list(roll.skipped),
        deferred,
        start_next=start_next,
        templated_by=templated_by,
        due=due,
        held=tuple(
            f"{describe_workload(h.rollout.kind, h.rollout.namespace, h.rollout.name)}"
            f" until {(h.due or 'a window opens') if h.timed else 'a rollout slot frees'} ({h.reason})"
            for h in roll.held
        ),
    )


# --- Jobs --------------------------------------------------------------------------------------


def plan_stale_jobs(view: ServiceLinkView, *, spec: ServiceLinkSpec, written: Written, world: World) -> list[StaleJob]:
    """The running Jobs reading values this ServiceLink changed since they started (``rollout.find_stale_jobs``).

    A change is a value written now that differs from our last status
    (deferred keys are not re-counted: the ConfigMap already held them, so a
    Job started since read them). Nothing written: no change, and the Jobs
    listed last time stay while they run. Independent of ``spec.rollout``
    and of consent: a Job is only reported, never touched.
    """
    secret = written.secret
    if written.plan is None:
        changed: frozenset[str] = frozenset()
        managed: Mapping[str, str] = {}
    else:
        before, now = _values_before(view, written), written.values
        changed = frozenset(key for key in before.keys() | now.keys() if before.get(key) != now.get(key))
        changed |= frozenset(secret.changed if secret is not None else ())
        managed = written.plan.apply_data | (secret.after if secret is not None else {})
    jobs = world.jobs(view.namespace, reading=spec.config_map_name)
    output = None
    if secret is not None:
        output = SecretOutput(secret.name, frozenset(secret.after) | frozenset(secret.before))
        known = {job.name for job in jobs}
        jobs += [j for j in world.jobs_reading_secret(view.namespace, secret=secret.name) if j.name not in known]
    return find_stale_jobs(
        jobs,
        configmap=spec.config_map_name,
        changed=changed,
        managed=managed,
        previous=view.stale_jobs,
        secret=output,
    )


def plan_stale_job_events(view: ServiceLinkView, stale: Sequence[StaleJob]) -> list[Event]:
    """One Warning naming the Jobs newly listed, or listed for more keys, in ``status.staleJobs``; else none.

    A Warning, not the Normal of ValueChanged: a rolled Deployment is fixed,
    but nobody restarts a Job running on an old address, which may fail or
    talk to the wrong Service; its owner has to decide. Once per change: a
    resync that lists the same Jobs again says nothing.
    """
    before = {entry.name: set(entry.keys) for entry in view.stale_jobs}
    new = [entry for entry in stale if not set(entry.keys) <= before.get(entry.name, set())]
    if not new:
        return []
    parts = [
        f"Job {view.namespace}/{entry.name} runs on old values of {', '.join(entry.keys)}"
        f" (started on config hash {entry.hash})"
        for entry in new
    ]
    tail = "servicelink never restarts a Job: it finishes on them, or delete it to start afresh"
    return [Event("StaleJobs", summarize([*parts, tail]), warning=True, logged_as="stale jobs")]


# --- Events --------------------------------------------------------------------------------------


def describe_change(key: str, old: str | None, new: str | None, *, secret: bool = False) -> str:
    """Return "key: old -> new", "<unset>" for a missing value; for a value of the Secret, only whether it came,
    changed or went."""
    if secret:
        return f"{key}: {'set' if old is None else 'removed' if new is None else 'changed'} (in the Secret)"
    return f"{key}: {'<unset>' if old is None else old} -> {'<unset>' if new is None else new}"


@dataclass(frozen=True)
class Changes:
    """What a reconcile changed, to report: the Events and how many values changed."""

    events: list[Event]
    values_changed: int


def _started_next(kind: WorkloadKind, rolled: Rolled) -> str:
    """How an Event names a workload whose patched template starts no rollout: only what it starts next runs it."""
    if kind not in rolled.start_next:
        return ""
    return " (its next Jobs)" if kind == "CronJob" else " (what it starts next)"


def plan_change_events(view: ServiceLinkView, *, written: Written, rolled: Rolled) -> Changes:
    """One Event per reconcile that wrote or rolled: the values changed and the consumers rolled.

    One Event per change, as Reloader writes, names every value and consumer
    (status.rolledOut holds them all): a new ServiceLink of 256 links is one
    API call. A CronJob is named with "(its next Jobs)": its patched template
    rolls nothing, only the Jobs it starts next run it. A Deployment whose
    template Argo Rollouts run is named with them (``describe_workload``). A consumer that reads a
    changed key but is opted out or of an ignored kind is named as not rolled, with its reason. A value
    another field manager changed and we took back gets a Warning of its own. One held back by a cooldown
    or a window is named with until when, and why.
    """
    plan = written.plan
    before = view.rolled_out
    rolled_now = [
        describe_workload(
            r.kind,
            view.namespace,
            r.name,
            templated_by=rolled.templated_by.get(r.name, ()) if r.kind == "Deployment" else (),
        )
        + _started_next(r.kind, rolled)
        for r in rolled.rolled_out
        if r not in before
    ]
    secret = written.secret
    secret_changed = secret.changed if secret is not None else []
    if plan is None or not (plan.write or rolled_now or secret_changed):
        return Changes([], 0)
    ours = written.values
    changed = [(key, old, new) for key, old, new in plan.changes if key in ours or new is None]
    rolled_part = [f"rolled {', '.join(rolled_now)}"] if rolled_now else []
    held = [f"{describe_workload(s.kind, view.namespace, s.name)} ({s.reason})" for s in rolled.skipped if s.keys]
    held_part = [f"not rolled {', '.join(held)}"] if held else []
    held_part += [f"held back {', '.join(rolled.held)}"] if rolled.held else []
    events: list[Event] = []
    if changed or secret_changed:
        parts = [describe_change(key, old, new) for key, old, new in changed]
        if secret is not None:
            old, new = secret.before, secret.after
            parts += [describe_change(k, old.get(k), new.get(k), secret=True) for k in secret_changed]
        events.append(
            Event(
                "ValueChanged",
                summarize([*parts, *rolled_part, *held_part]),
                logged_as="values changed",
                changes=tuple(parts),
                rolled=tuple(rolled_now),
            )
        )
    elif rolled_now:
        # A rollout that waited (waitForEndpoints, a burst across ServiceLinks) or a hash catching up.
        events.append(
            Event("RolledOut", summarize([f"{rolled_part[0]} onto the ConfigMap's current values", *held_part]))
        )
    events.extend(
        Event("DriftRepaired", f"{key} was changed by field manager {manager!r}; restored to {ours.get(key)}", True)
        for key, manager in plan.restored.items()
    )
    if secret is not None:
        events.extend(
            Event("DriftRepaired", f"{key} of Secret {secret.name} was changed by {manager!r}; restored", True)
            for key, manager in secret.restored.items()
        )
    return Changes(events, len(changed) + len(secret_changed))


def plan_problem_events(current: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """A Warning Event for each problem that is new since the last status.

    Problems of a link (KeyConflict included) come from ``status.links``;
    ConfigMap-wide ones from a False Synced or RolledOut condition whose
    reason is in ``WARNED_CONDITION_REASONS``.
    """
    events: list[Event] = []
    before = {(e.get("key"), e.get("reason"), e.get("message")) for e in current.get("links") or ()}
    for entry in new.get("links") or ():
        if entry.get("reason") and (entry["key"], entry["reason"], entry.get("message")) not in before:
            events.append(Event(entry["reason"], entry.get("message", ""), warning=True))
    old = {(cond.get("type"), cond.get("reason"), cond.get("message")) for cond in current.get("conditions") or ()}
    for cond in new.get("conditions") or ():
        if (
            (cond["type"], cond["reason"], cond.get("message")) not in old
            and cond["status"] == "False"
            and cond["type"] in (c.SYNCED, c.ROLLED_OUT)
            and cond["reason"] in WARNED_CONDITION_REASONS
        ):
            events.append(Event(cond["reason"], cond.get("message", ""), warning=True))
    return events


# --- Status --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusWrite:
    """A status to write: the merge patch, and the Events to record once it is written."""

    patch: dict[str, Any]
    events: list[Event]


def render_merge_patch(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Return a merge patch from ``current`` to ``new`` status: changed fields, and nulls for removed ones."""
    patch: dict[str, Any] = {key: None for key in current if key not in new}
    for key, value in new.items():
        if current.get(key) != value:
            # values is a map: drop removed keys with null, else merge patch keeps them.
            if key == "values" and isinstance(current.get(key), Mapping):
                value = {k: None for k in current[key] if k not in value} | dict(value)
            patch[key] = value
    return patch


def plan_status(
    view: ServiceLinkView,
    *,
    values: Values,
    written: Written,
    rolled: Rolled,
    now: str,
    stale_jobs: Sequence[StaleJob] = (),
) -> StatusWrite | None:
    """The status a reconcile of a valid spec leaves, with a Warning per new problem; None when unchanged."""
    new = render_status(
        generation=view.generation,
        results=values.results,
        values=written.values,
        conflicts=written.conflicts,
        synced=written.verdict,
        rolled=rolled.verdict,
        rolled_out=rolled.rolled_out,
        skipped=rolled.skipped,
        deferred=rolled.deferred,
        stale_jobs=stale_jobs,
        current_conditions=parse_conditions(view.status),
        now=now,
        secret_digests=written.secret.after if written.secret is not None else None,
    )
    if dict(view.status) == new:
        return None
    return StatusWrite(render_merge_patch(view.status, new), plan_problem_events(view.status, new))


def plan_invalid_status(view: ServiceLinkView, problems: str, *, now: str) -> StatusWrite | None:
    """The status of a ServiceLink whose spec is invalid, with one InvalidSpec Warning; None when unchanged.

    The values written stay, and so do the consumers' pods.
    """
    new = render_invalid_status(
        generation=view.generation,
        message=problems,
        current=view.status,
        current_conditions=parse_conditions(view.status),
        now=now,
    )
    if dict(view.status) == new:
        return None
    return StatusWrite(render_merge_patch(view.status, new), [Event(c.INVALID_SPEC, problems, warning=True)])
