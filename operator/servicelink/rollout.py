"""Decide which workloads consume which ConfigMap keys and which to roll (pure)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import EllipsisType

from servicelink.conditions import COOLING_DOWN, OUTSIDE_WINDOW, WAITING_FOR_ENDPOINTS, WAITING_FOR_ROLLOUT_SLOT
from servicelink.model import (
    LabelSelector,
    RolledOut,
    StaleJob,
    WorkloadKind,
    Workloads,
)
from servicelink.render import render_hash
from servicelink.resolve import LinkResult
from servicelink.schedule import Window, next_opening, parse_windows_annotation
from servicelink.views import JobView, ObjectKey, Progress, Reads, ServiceView, WorkloadView, patched


def rollout_settled(before: Progress | None, after: Progress) -> bool:
    """Whether a workload event should reconcile the ServiceLinks that rolled it.

    Only when its rollout completes, stalls, or leaves a stall: the start of a
    rollout is reported by whoever patched it, and a replica coming up mid-way
    changes nothing a ServiceLink reports, so it costs no reconcile and no write.
    """
    if before is None or before.state == after.state:
        return False
    return after.state != "Progressing" or before.state == "Stalled"


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


@dataclass(frozen=True)
class SecretOutput:
    """The Secret a ServiceLink writes besides its ConfigMap, and the keys it holds for it."""

    name: str
    keys: frozenset[str]


def reads_of(
    workload: WorkloadView | JobView, *, configmap: str, configmap_keys: frozenset[str], secret: SecretOutput | None
) -> Reads | EllipsisType:
    """The keys ``workload`` reads of what a ServiceLink writes: of its ConfigMap and of its Secret; ``...`` when
    it reads neither, None when it reads the whole ConfigMap and no Secret of ours.

    Keys are unique across the two (a ServiceLink's link keys are), so one
    set names both; a whole ConfigMap read beside the Secret is its keys,
    ``configmap_keys``, so a change of the Secret alone never reaches a
    workload that does not read it.
    """
    from_configmap = workload.reads.get(configmap, ...)
    from_secret = ... if secret is None else workload.secret_reads.get(secret.name, ...)
    if from_secret is ...:
        return configmap_keys if from_configmap is None and secret is not None else from_configmap
    whole = secret.keys if secret is not None and from_secret is None else frozenset()
    secret_part = whole if from_secret is None else from_secret
    if from_configmap is ...:
        return secret_part
    return (configmap_keys if from_configmap is None else from_configmap) | secret_part


def select_consumers(
    workloads: Iterable[WorkloadView],
    *,
    spec: Workloads,
    configmap: str,
    configmap_keys: frozenset[str] = frozenset(),
    secret: SecretOutput | None = None,
) -> list[tuple[WorkloadView, Reads]]:
    """Return the workloads to keep in step with ``configmap`` (and ``secret``), with the keys each consumes.

    Auto-detected consumers read what their template reads (``reads_of``); workloads named or
    selected in the spec without reading the ConfigMap count as reading all of it.
    """
    named = {(ref.kind, ref.name) for ref in spec.names}
    chosen: list[tuple[WorkloadView, Reads]] = []
    for workload in sorted(workloads, key=lambda w: (w.kind, w.name)):
        reads = reads_of(workload, configmap=configmap, configmap_keys=configmap_keys, secret=secret)
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


def carried_hash(value: str | None, *, configmap: str, sources: frozenset[str]) -> str | None:
    """Return the hash the annotation ``value`` carries for ``configmap``, or None when it carries none.

    A bare hash belongs to the only source. With several sources (an annotation
    written before they were told apart) whose it is cannot be told: none.
    """
    entries = parse_config_hash(value)
    if configmap in entries:
        return entries[configmap]
    bare = entries.get("")
    if bare is not None and len(sources) == 1:
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
    So is one whose owner changed its pod template since servicelink last
    rolled it (``WorkloadView.changed_since_rolled``: ``kubectl rollout undo``
    to an older entry, or reading one more key): that change started pods
    that read the values of the moment, and rolling them again would restart
    them for nothing.
    """
    changed = {k for k in desired.keys() | baseline.keys() if desired.get(k) != baseline.get(k)}
    plans: list[Rollout] = []
    for workload, reads in consumers:
        target = render_hash(consumed(managed, reads))
        sources = sources_of(workload, configmap=configmap, managed_configmaps=managed_configmaps)
        touched = tuple(sorted(k for k in changed if reads is None or k in reads))
        carried = carried_hash(workload.config_hash, configmap=configmap, sources=sources)
        if carried is None or workload.changed_since_rolled:
            due = bool(touched) and carried != target  # its pods started on the values of then
        else:
            due = carried != target
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


def describe_workload(kind: WorkloadKind, namespace: str, name: str, *, templated_by: Sequence[str] = ()) -> str:
    """Return how Events and conditions name a workload: ``Deployment gallery/web``.

    A Deployment whose pod template Argo Rollouts run (their ``spec.workloadRef``
    names it) is the workload patched, but its users think in Rollouts, so
    they are named too: ``Deployment gallery/web-template (the template of
    Rollout gallery/web)``.
    """
    what = f"{kind} {namespace}/{name}"
    if not templated_by:
        return what
    rollouts = ", ".join(f"Rollout {namespace}/{rollout}" for rollout in templated_by)
    return f"{what} (the template of {rollouts})"


def _renamed(progress: Progress, *, plain: str, described: str) -> Progress:
    """``progress`` with its message's leading workload name ``plain`` (as ``views`` writes it) made ``described``."""
    if plain == described or not progress.message.startswith(f"{plain}:"):
        return progress
    return Progress(progress.state, described + progress.message[len(plain) :])


def follow_rollouts(
    deployment: WorkloadView, rollouts: Sequence[WorkloadView], *, patched_now: bool = False
) -> Progress:
    """Return the progress of a Deployment whose pod template the Argo Rollouts ``rollouts`` run (``workloadRef``).

    Patching such a Deployment makes Argo Rollouts start a new revision of
    each Rollout, with its canary or blue-green steps: those roll the
    Rollout's pods, so they are waited for; and so are the Deployment's own
    replicas, which its controller rolls too (Argo Rollouts keeps it at zero
    only when its ``workloadRef.scaleDown`` says so; at zero, it is done at
    once). A Rollout is ``Progressing``
    until its ``status.workloadObservedGeneration`` equals the Deployment's
    generation (its controller has seen the new template; ``patched_now``:
    this very reconcile patched it, so none has); then its progress is its
    phase (``views.read_argo_progress``: ``Degraded`` is ``Stalled``). Of
    several Rollouts, the first stalled one, else the first progressing one,
    else ``Complete``; the Deployment's own after theirs. With no Rollout, the Deployment's own progress.
    Rollouts that each ask for restarts were restarted instead (``plan.with_restarts``): the template stayed,
    so their progress is their restart's.
    """
    restarting = bool(rollouts) and all(r.asks_restart for r in rollouts)  # its template was left as it was
    own = patched(deployment) if patched_now and not restarting else deployment.progress
    if not rollouts:
        return own
    found: list[Progress] = []
    for rollout in sorted(rollouts, key=lambda r: r.name):
        if restarting:
            restart = Progress("Progressing", f"Rollout {rollout.namespace}/{rollout.name}: restarting its pods")
            found.append(restart if patched_now else rollout.progress)
        elif patched_now or rollout.workload_generation != str(deployment.generation):
            what = f"Rollout {rollout.namespace}/{rollout.name}"
            unseen = (
                f"Argo Rollouts has not yet seen the new template of Deployment {rollout.namespace}/{deployment.name}"
            )
            found.append(Progress("Progressing", f"{what}: {unseen}"))
        else:
            found.append(rollout.progress)
    found.append(own)
    for state in ("Stalled", "Progressing"):
        for progress in found:
            if progress.state == state:
                return progress
    return Progress("Complete")


def progress_of(
    rolled_out: Iterable[RolledOut],
    *,
    namespace: str,
    workloads: Mapping[tuple[WorkloadKind, str], WorkloadView],
    just_rolled: frozenset[tuple[WorkloadKind, str]],
    templated_by: Mapping[str, Sequence[str]] | None = None,
    rollouts: Mapping[str, WorkloadView] | None = None,
) -> list[Progress]:
    """Return the progress of each workload a ServiceLink last rolled that still exists.

    One patched by this very reconcile is rolling, whatever the watch last
    said of it: that view predates the patch. A CronJob never is: patching
    it starts no rollout (``views.patched``). ``templated_by`` has, by
    Deployment name, the Rollouts running its template, and ``rollouts`` their
    views by name: such a Deployment's progress is theirs (``follow_rollouts``),
    and a message naming the Deployment names them too (``describe_workload``).
    """
    found: list[Progress] = []
    for entry in rolled_out:
        key = (entry.kind, entry.name)
        if key not in workloads:
            continue
        names = (templated_by or {}).get(entry.name, ()) if entry.kind == "Deployment" else ()
        views = [view for name in names if (view := (rollouts or {}).get(name)) is not None]
        progress = follow_rollouts(workloads[key], views, patched_now=key in just_rolled)
        described = describe_workload(entry.kind, namespace, entry.name, templated_by=names)
        found.append(_renamed(progress, plain=f"{entry.kind} {namespace}/{entry.name}", described=described))
    return found


UNKNOWN_HASH = "unknown"


def find_stale_jobs(
    jobs: Iterable[JobView],
    *,
    configmap: str,
    changed: frozenset[str],
    managed: Mapping[str, str],
    previous: Iterable[StaleJob],
    secret: SecretOutput | None = None,
) -> list[StaleJob]:
    """Return the running Jobs whose pods read values of ``configmap`` (or of the ServiceLink's ``secret``) that
    changed after they started, by name.

    A running Job is listed when a key it reads is in ``changed`` (the keys
    whose value this reconcile moved away from the one the pods were last
    rolled to), unless its pod template carries the hash of what it reads of
    ``managed`` (every servicelink key of the ConfigMap as it is now): a
    CronJob annotated for this change created it, so it started on the new
    values. Once listed a Job stays listed, with the hash it started on,
    while it runs (``previous``, the last status's list, is the memory); a
    further change adds its keys. A Job that finished or is gone is not
    listed, and a Job created after a change read the values of then, so that
    change never lists it.
    """
    before = {entry.name: entry for entry in previous}
    found: list[StaleJob] = []
    configmap_keys = frozenset(managed) - (secret.keys if secret is not None else frozenset())
    for job in sorted(jobs, key=lambda j: j.name):
        reads = reads_of(job, configmap=configmap, configmap_keys=configmap_keys, secret=secret)
        if not job.running or reads is ...:
            continue
        touched = {key for key in changed if reads is None or key in reads}
        entries = parse_config_hash(job.config_hash)
        started = entries.get(configmap, entries.get(""))
        if touched and started == render_hash(consumed(managed, reads)):
            touched = set()
        listed = before.get(job.name)
        if listed is None and not touched:
            continue
        found.append(
            StaleJob(
                name=job.name,
                hash=listed.hash if listed is not None else started or UNKNOWN_HASH,
                keys=sorted(set(listed.keys if listed is not None else ()) | touched),
            )
        )
    return found


@dataclass(frozen=True)
class Deferred:
    """A key whose change is written but not yet rolled out, and why (a ``conditions.DEFERRED_REASONS``)."""

    key: str
    service: str  # "namespace/name"
    previous: str | None  # the value the consumers' pods still carry; None when it was unset (or is a Secret's)
    reason: str = WAITING_FOR_ENDPOINTS
    due: str | None = None  # CoolingDown: when the first consumer held back is rolled (RFC 3339)


def restore_deferred(baseline: Mapping[str, str], deferred: Iterable[Deferred]) -> dict[str, str]:
    """Return ``baseline`` with each deferred key set back to the value the pods carry, so it counts as changed."""
    restored = dict(baseline)
    for entry in deferred:
        if entry.previous is None:
            restored.pop(entry.key, None)
        else:
            restored[entry.key] = entry.previous
    return restored


def _answers(result: LinkResult, services: Mapping[ObjectKey, ServiceView]) -> bool:
    namespace, _, name = result.service.partition("/")
    service = services.get((namespace, name))
    if service is not None and service.type == "ExternalName":
        return True  # no endpoints to wait for: it answers outside the cluster
    return result.endpoints is not None and result.endpoints.ready > 0


def plan_deferral(
    results: Iterable[LinkResult],
    *,
    services: Mapping[ObjectKey, ServiceView],
    baseline: Mapping[str, str],
    desired: Mapping[str, str],
    secret_keys: frozenset[str] = frozenset(),
) -> tuple[list[Deferred], list[Deferred]]:
    """Return the keys changed since the pods were last rolled, and those of them whose Service has no ready endpoint.

    With ``waitForEndpoints`` the consumers roll only once the second list is
    empty; until then the first is kept in the status, so the change still
    counts as one when an endpoint comes up (``restore_deferred``). A link
    whose Service is ExternalName is never waited for. A key in ``secret_keys``
    is listed without its previous value (a digest of a Secret's): unset
    before counts as changed just the same.
    """
    changed: list[Deferred] = []
    blocked: list[Deferred] = []
    for result in results:
        if result.key not in desired or desired[result.key] == baseline.get(result.key):
            continue
        previous = None if result.key in secret_keys else baseline.get(result.key)
        entry = Deferred(key=result.key, service=result.service, previous=previous)
        changed.append(entry)
        if not _answers(result, services):
            blocked.append(entry)
    return changed, blocked


def parse_time(value: str | None) -> datetime.datetime | None:
    """Read an RFC 3339 time as the API writes it (``2026-12-07T10:00:00Z``); None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def render_time(value: datetime.datetime) -> str:
    """Write a time as the API does, to the second: ``2026-12-07T10:00:00Z``."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Held:
    """A rollout due, held back until ``due``: its workload cools down, is outside its rollout windows, or waits
    for a rollout slot (then ``due`` is when one frees at the latest, the first rollout in flight timing out)."""

    rollout: Rollout
    due: str | None  # RFC 3339; None: no window of its ever opens (or no rollout in flight may time out)
    reason: str  # CoolingDown, OutsideWindow or WaitingForRolloutSlot
    why: str  # "300 s after its last rollout", "when its next rollout window opens", "at most 10 in flight"

    @property
    def timed(self) -> bool:
        """Whether it rolls at ``due`` exactly: a cooldown or a window; a slot may free sooner."""
        return self.reason != WAITING_FOR_ROLLOUT_SLOT


WorkloadKey = tuple[WorkloadKind, str, str]  # (kind, namespace, name)


def count_in_flight(in_flight: Mapping[WorkloadKey, str], *, timeout: float, now: str) -> dict[WorkloadKey, str]:
    """Return the rollouts of ``in_flight`` (by workload, the time servicelink rolled it) that still hold a slot
    at ``now``, each with when it times out: those rolled less than ``timeout`` seconds ago.

    ``in_flight`` holds the workloads servicelink rolled whose rollout has neither completed nor stalled; a
    time that cannot be read counts as rolled now, so it holds its slot rather than free it early.
    """
    at = parse_time(now)
    held: dict[WorkloadKey, str] = {}
    for key, since in in_flight.items():
        start = parse_time(since) or at
        if at is None or start is None:
            continue
        ends = start + datetime.timedelta(seconds=timeout)
        if at < ends:
            held[key] = render_time(ends)
    return held


def needs_slot(
    rollout: Rollout,
    *,
    workloads: Mapping[tuple[WorkloadKind, str], WorkloadView],
    in_flight: Mapping[WorkloadKey, str],
) -> bool:
    """Whether patching ``rollout``'s workload takes a rollout slot: it is not in flight already (its rollout is
    replaced, not added), and its patch starts a rollout (a CronJob's does not)."""
    workload = workloads.get((rollout.kind, rollout.name))
    rolls = workload is None or workload.resource.rolls
    return rolls and (rollout.kind, rollout.namespace, rollout.name) not in in_flight


def plan_slots(
    rollouts: Iterable[Rollout],
    *,
    workloads: Mapping[tuple[WorkloadKind, str], WorkloadView],
    in_flight: Mapping[WorkloadKey, str],
    waiting: Sequence[WorkloadKey],
    cap: int,
) -> tuple[list[Rollout], list[Held]]:
    """Split the rollouts due into those that go now and those that wait for a rollout slot.

    ``in_flight`` are the rollouts holding a slot, each with when it times
    out (``count_in_flight``); ``waiting`` every workload, of any
    ServiceLink, waiting for a slot, oldest first. With ``cap`` 0 there is no
    cap. Otherwise a rollout that needs no slot (``needs_slot``) goes, and one
    that does goes when its workload is among the first ``cap`` minus those
    in flight of the waiting: slots go oldest waiting first, so no
    ServiceLink starves, and a slot kept for an older waiter elsewhere is
    not taken. A rollout held is due when the first in flight times out: a
    slot frees then at the latest.
    """
    plans = list(rollouts)
    if not cap:
        return plans, []
    first = [key for key in waiting if key not in in_flight][: max(cap - len(in_flight), 0)]
    due = min(in_flight.values(), default=None)
    go: list[Rollout] = []
    held: list[Held] = []
    for rollout in plans:
        key = (rollout.kind, rollout.namespace, rollout.name)
        if not needs_slot(rollout, workloads=workloads, in_flight=in_flight) or key in first:
            go.append(rollout)
        else:
            held.append(Held(rollout, due, WAITING_FOR_ROLLOUT_SLOT, f"at most {cap} in flight"))
    return go, held


def plan_timing(
    rollouts: Iterable[Rollout],
    *,
    workloads: Mapping[tuple[WorkloadKind, str], WorkloadView],
    cooldown: int,
    windows: Sequence[Window],
    now: str,
) -> tuple[list[Rollout], list[Held]]:
    """Split the rollouts due into those to patch now and those held back: cooling down, or outside a window.

    A workload's cooldown is its own annotation's (``WorkloadView.cooldown``),
    else ``cooldown`` (the ServiceLink's spec.cooldownSeconds); it counts from
    the workload's ``servicelink.dev/rolled-at``, which the operator sets in
    each patch. A workload never rolled by servicelink (no such annotation),
    or one whose cooldown has passed at ``now``, is not cooling down. Then it
    rolls only while one of its windows is open: its own annotation's
    (``WorkloadView.windows``; ``always``: none), else ``windows`` (the
    ServiceLink's spec.rolloutWindows); none at all means any time.
    """
    at = parse_time(now)
    go: list[Rollout] = []
    held: list[Held] = []
    for rollout in rollouts:
        workload = workloads.get((rollout.kind, rollout.name))
        seconds = cooldown if workload is None or workload.cooldown is None else workload.cooldown
        last = parse_time(workload.rolled_at) if workload is not None else None
        if at is None:
            go.append(rollout)
        elif seconds and last is not None and at < last + datetime.timedelta(seconds=seconds):
            cooled = render_time(last + datetime.timedelta(seconds=seconds))
            held.append(Held(rollout, cooled, COOLING_DOWN, f"{seconds} s after its last rollout"))
        elif (opening := next_opening(_windows_of(workload, windows), at)) != at:
            opens = render_time(opening) if opening is not None else None
            held.append(Held(rollout, opens, OUTSIDE_WINDOW, "when its next rollout window opens"))
        else:
            go.append(rollout)
    return go, held


def _windows_of(workload: WorkloadView | None, windows: Sequence[Window]) -> list[Window]:
    """The workload's own windows (``servicelink.dev/rollout-windows``) if it has readable ones, else ``windows``."""
    if workload is None or workload.windows is None:
        return list(windows)
    try:
        own = parse_windows_annotation(workload.windows)
    except ValueError:
        return list(windows)  # an owner's value it cannot read is ignored (docs/reference/annotations.md)
    return own
