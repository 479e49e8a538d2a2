"""Reconcile one ServiceLink: read what exists, call the pure planners, write the difference (does I/O).

Every trigger (a ServiceLink, Service or EndpointSlice event, a resync, a
restart) ends here, and nothing here depends on which one fired.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from servicelink import conditions as c
from servicelink.consent import Skipped, judge_configmap_write, split_consumers
from servicelink.kube import (
    ApiError,
    Conflict,
    Kube,
    TransportError,
    is_transient,
    servicelink_reference,
    utc_now,
)
from servicelink.messages import summarize
from servicelink.model import (
    API_VERSION,
    CONFIG_HASH_ANNOTATION,
    FIELD_MANAGER,
    FINALIZER,
    KIND,
    RolledOut,
    ServiceLinkSpec,
    WorkloadKind,
    parse_spec,
)
from servicelink.render import (
    CONFIGMAP_DATA_LIMIT,
    ConfigMapPlan,
    plan_configmap,
    render_configmap,
    render_owner_reference,
)
from servicelink.resolve import LinkResult, referenced_services, resolve_links
from servicelink.rollout import (
    Deferred,
    Rollout,
    merge_rollouts,
    plan_deferral,
    plan_rollouts,
    progress_of,
    restore_deferred,
    select_consumers,
)
from servicelink.settings import Settings
from servicelink.status import (
    Verdict,
    describe_invalid_spec,
    desired_values,
    judge_rollout,
    judge_sync,
    parse_conditions,
    parse_deferred,
    render_invalid_status,
    render_status,
    sibling_conflicts,
)
from servicelink.views import Claim, Endpoints, ObjectKey, ServiceView, WorkloadView

log = logging.getLogger(__name__)
T = TypeVar("T")
# ConfigMaps are not watched (a cluster holds many, some large), so consent given to a
# refused ServiceLink is found by looking again this often, one GET each time.
CONSENT_RECHECK_SECONDS = 15.0


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

    def workloads(self, namespace: str, *, reading: str | None) -> list[WorkloadView]:
        """Deployments, StatefulSets and DaemonSets of a namespace: those whose pods read the
        ConfigMap ``reading``, or all of them when ``reading`` is None."""

    def workload(self, kind: WorkloadKind, namespace: str, name: str) -> WorkloadView | None:
        """One Deployment, StatefulSet or DaemonSet as last seen, or None when it is gone."""


class TransientError(Exception):
    """The API server could not take a call now; the ServiceLink is retried with backoff."""


class _Stale(Exception):
    """The ConfigMap last seen did not lead to a write the API server accepted: read it again."""


def _describe(value: str | None) -> str:
    return "<unset>" if value is None else value


def _shared_version(configmap: Mapping[str, Any] | None, plan: ConfigMapPlan) -> str | None:
    """The resourceVersion a write into a shared ConfigMap must find, else None.

    Consent to write was read from this version: should its owner withdraw
    it meanwhile, the write fails with a conflict and is retried, and refused.
    """
    if configmap is None or plan.with_owner:
        return None
    version: str | None = (configmap.get("metadata") or {}).get("resourceVersion")
    return version


@dataclass
class _Written:
    """What the ConfigMap step achieved: the values it holds for us and how that went."""

    values: dict[str, str]
    verdict: Verdict
    plan: ConfigMapPlan | None
    conflicts: dict[str, str]


@dataclass(frozen=True)
class _Share:
    """One ServiceLink's rollout of a workload, waiting to go out in the workload's next patch."""

    rollout: Rollout
    body: Mapping[str, Any]  # the ServiceLink, for its Events
    previous: Mapping[str, str]  # the values the workload's pods were last rolled to
    current: Mapping[str, str]


@dataclass(frozen=True)
class _Rolled:
    """What the rollout step achieved, for the status."""

    verdict: Verdict
    rolled_out: list[RolledOut]
    skipped: list[Skipped] = field(default_factory=list)
    deferred: list[Deferred] = field(default_factory=list)  # written, not yet rolled out


@dataclass
class Reconciler:
    """Reconciles ServiceLinks by key; safe to run for different keys at once.

    A workload that reads several servicelink ConfigMaps is patched once for a
    change that reaches several of them (one Service linked from two
    ServiceLinks): a ServiceLink's rollout waits in ``_owed`` while another
    ServiceLink of the workload is queued or has not written its ConfigMap
    yet, and the last of them sets every entry in one patch.
    """

    kube: Kube
    world: World
    settings: Settings
    executor: Executor
    on_values_changed: Callable[[int], None] = lambda count: None
    on_rollout: Callable[[str], None] = lambda kind: None
    is_waiting: Callable[[tuple[str, str]], bool] = lambda key: False  # queued to reconcile soon
    _configmap_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    # Each ConfigMap as our last apply (or read) returned it. A change then writes without
    # reading first, guarded by that resourceVersion: one round trip less (README, Performance).
    _configmaps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _writing: set[tuple[str, str]] = field(default_factory=set)  # reconciling, ConfigMap not yet written
    _owed: dict[tuple[WorkloadKind, str, str], list[_Share]] = field(default_factory=dict)

    async def _call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, **kwargs))
        except ApiError as error:
            if is_transient(error):
                raise TransientError(f"{fn.__name__}: HTTP {error.status} {error.reason}") from error
            raise
        except TransportError as error:
            raise TransientError(f"{fn.__name__}: API server unreachable: {error}") from error

    async def _event(self, involved: Mapping[str, str], reason: str, message: str, *, warning: bool = False) -> None:
        try:
            await self._call(self.kube.record_event, involved=involved, reason=reason, message=message, warning=warning)
        except (TransientError, ApiError) as error:
            log.info("event %s on %s/%s not recorded: %s", reason, involved["namespace"], involved["name"], error)

    async def reconcile(self, namespace: str, name: str) -> float | None:
        """Bring one ServiceLink's ConfigMap, consumers and status in step with the cluster.

        Returns the seconds after which to look again when only time can tell
        (its ConfigMap not shared yet), else None; returns None when the
        ServiceLink is gone. Raises ``TransientError`` when the API server
        should be asked again later.
        """
        self._writing.add((namespace, name))
        try:
            again = await self._reconcile(namespace, name)
        finally:
            self._writing.discard((namespace, name))
        await self._flush(namespace)  # rollouts that waited for us, if we left before rolling
        return again

    async def _reconcile(self, namespace: str, name: str) -> float | None:
        body = self.world.servicelink(namespace, name)
        if body is None:
            for gone in [key for key in self._configmaps if not self.world.claims(*key)]:
                del self._configmaps[gone]
            return None
        metadata = body.get("metadata") or {}
        finalizers = list(metadata.get("finalizers") or ())
        if metadata.get("deletionTimestamp"):
            if FINALIZER in finalizers:
                await self._release(body)
                finalizers.remove(FINALIZER)
                await self._set_finalizers(body, finalizers)
            return None
        try:
            spec = parse_spec(body.get("spec") or {})
        except ValidationError as error:
            await self._report_invalid(body, error)
            return None
        synced = await self._reconcile_valid(body, spec)
        return CONSENT_RECHECK_SECONDS if synced.reason == c.CONFIGMAP_NOT_SHARED else None

    async def _set_finalizers(self, body: Mapping[str, Any], finalizers: list[str]) -> None:
        metadata = body["metadata"]
        try:
            await self._call(
                self.kube.set_servicelink_finalizers,
                namespace=metadata["namespace"],
                name=metadata["name"],
                finalizers=finalizers,
                resource_version=metadata["resourceVersion"],
            )
        except Conflict as error:
            raise TransientError(
                f"finalizers of {metadata['namespace']}/{metadata['name']} changed meanwhile"
            ) from error

    def _lock(self, namespace: str, configmap: str) -> asyncio.Lock:
        return self._configmap_locks.setdefault((namespace, configmap), asyncio.Lock())

    def _claims(self, body: Mapping[str, Any], configmap: str) -> tuple[list[Claim], frozenset[str]]:
        """Return the earlier claims on our ConfigMap, and every key our sibling ServiceLinks claim."""
        metadata = body["metadata"]
        others = [cl for cl in self.world.claims(metadata["namespace"], configmap) if cl.uid != metadata.get("uid")]
        me = Claim(
            namespace=metadata["namespace"],
            name=metadata["name"],
            uid=metadata.get("uid", ""),
            created=metadata.get("creationTimestamp", ""),
            configmap=configmap,
            keys=frozenset(),
        )
        earlier = [cl for cl in others if cl.precedes(me)]
        siblings = frozenset(key for cl in others for key in cl.keys)
        return earlier, siblings

    async def _reconcile_valid(self, body: Mapping[str, Any], spec: ServiceLinkSpec) -> Verdict:
        """Reconcile a ServiceLink whose spec is valid; return how its ConfigMap write went."""
        metadata = body["metadata"]
        namespace = metadata["namespace"]
        status: Mapping[str, Any] = body.get("status") or {}
        previous: dict[str, str] = dict(status.get("values") or {})
        refs = referenced_services(spec, namespace=namespace)
        services = {key: svc for key in refs if (svc := self.world.service(key)) is not None}
        endpoints = {key: eps for key in refs if (eps := self.world.endpoints(key)) is not None}
        results = resolve_links(
            spec,
            namespace=namespace,
            services=services,
            endpoints=endpoints,
            cluster_domain=self.settings.cluster_domain,
        )
        desired = desired_values(results, previous)
        earlier, siblings = self._claims(body, spec.config_map_name)
        conflicts = sibling_conflicts(desired, earlier=earlier, namespace=namespace, configmap=spec.config_map_name)
        desired = {k: v for k, v in desired.items() if k not in conflicts}
        rolled_out = [RolledOut.model_validate(r) for r in status.get("rolledOut") or ()]
        async with self._lock(namespace, spec.config_map_name):
            written = await self._write_configmap(
                body, spec, desired=desired, previous=previous, siblings=siblings, conflicts=conflicts
            )
            before = list(rolled_out)
            rolled = await self._roll(
                body, spec, written, previous=previous, rolled_out=rolled_out, results=results, services=services
            )
        newly = [f"{r.kind} {namespace}/{r.name}" for r in rolled.rolled_out if r not in before]
        if written.plan is not None and (written.plan.write or newly):
            # Reported after the rollouts: the consumers' pods need not wait for an Event.
            await self._report_changes(body, written.plan, written.values, rolled=newly)
        new_status = render_status(
            generation=int(metadata.get("generation", 0)),
            results=results,
            values=written.values,
            conflicts=written.conflicts,
            synced=written.verdict,
            rolled=rolled.verdict,
            rolled_out=rolled.rolled_out,
            skipped=rolled.skipped,
            deferred=rolled.deferred,
            current_conditions=parse_conditions(status),
            now=utc_now(),
        )
        await self._write_status(body, new_status)
        return written.verdict

    async def _write_configmap(
        self,
        body: Mapping[str, Any],
        spec: ServiceLinkSpec,
        *,
        desired: dict[str, str],
        previous: Mapping[str, str],
        siblings: frozenset[str],
        conflicts: dict[str, str],
    ) -> _Written:
        """Write our keys into the ConfigMap: over the copy last seen if there is one, else over a fresh read.

        The copy saves the GET before every change; should it be stale, or
        lead to no write (drift shows only in a fresh read), the ConfigMap is
        read and the write decided again.
        """
        metadata = body["metadata"]
        where = (metadata["namespace"], spec.config_map_name)
        write = functools.partial(
            self._write_into, body, spec, desired=desired, previous=previous, siblings=siblings, conflicts=conflicts
        )
        seen = self._configmaps.pop(where, None)
        if seen is not None:
            with contextlib.suppress(_Stale):
                return await write(seen, guard=seen["metadata"]["resourceVersion"])
        configmap = await self._call(self.kube.get_configmap, namespace=where[0], name=where[1])
        if configmap is not None:
            self._configmaps[where] = configmap
        return await write(configmap, guard=None)

    async def _write_into(
        self,
        body: Mapping[str, Any],
        spec: ServiceLinkSpec,
        configmap: dict[str, Any] | None,
        *,
        guard: str | None,
        desired: dict[str, str],
        previous: Mapping[str, str],
        siblings: frozenset[str],
        conflicts: dict[str, str],
    ) -> _Written:
        """Write our keys into ``configmap`` as last read.

        With ``guard``, ``configmap`` is the copy last seen, not read now: the
        apply must find that resourceVersion, and anything but a write it
        accepts raises ``_Stale``. A revoked consent or another manager's edit
        changes the version, so a copy that is no longer current never decides.
        """
        metadata = body["metadata"]
        namespace, configmap_name = metadata["namespace"], spec.config_map_name
        refusal = judge_configmap_write(configmap, servicelink=metadata["name"], uid=metadata.get("uid", ""))
        if refusal is not None and guard is not None:
            raise _Stale
        if refusal is not None:
            return _Written(dict(previous), Verdict(False, c.CONFIGMAP_NOT_SHARED, refusal), None, conflicts)
        plan = plan_configmap(
            configmap,
            desired=desired,
            previous=previous,
            siblings=siblings,
            owner_uid=metadata.get("uid", ""),
            manager=FIELD_MANAGER,
        )
        conflicts = conflicts | {
            key: (
                f"key {key} of ConfigMap {namespace}/{configmap_name} is owned by field manager {manager!r}; "
                "remove it from that manager's manifest (or delete the key) and servicelink takes it over"
            )
            for key, manager in plan.foreign.items()
        }
        ours = {k: v for k, v in plan.apply_data.items() if k in desired}
        where = f"ConfigMap {namespace}/{configmap_name}"
        if guard is not None and (not plan.write or plan.size > CONFIGMAP_DATA_LIMIT):
            raise _Stale  # nothing to write, or nothing we may: only a fresh read can tell
        if plan.size > CONFIGMAP_DATA_LIMIT:
            message = (
                f"{where} would hold {plan.size} bytes of data, over the {CONFIGMAP_DATA_LIMIT}-byte limit; "
                "split the links across ConfigMaps"
            )
            return _Written(dict(previous), Verdict(False, c.CONFIGMAP_TOO_LARGE, message), None, conflicts)
        finalizers = list(metadata.get("finalizers") or ())
        if plan.write and not plan.with_owner and FINALIZER not in finalizers:
            # A ConfigMap we co-manage outlives us: hold the ServiceLink's deletion until our
            # keys are out of it. One we own goes with us through its ownerReference instead.
            await self._set_finalizers(body, [*finalizers, FINALIZER])
        if plan.write:
            owner = render_owner_reference(
                name=metadata["name"], uid=metadata.get("uid", ""), api_version=API_VERSION, kind=KIND
            )
            apply_body = render_configmap(
                name=configmap_name,
                namespace=namespace,
                data=plan.apply_data,
                owner=owner if plan.with_owner else None,
                resource_version=guard or _shared_version(configmap, plan),
            )
            try:
                stored = await self._call(self.kube.apply_configmap, body=apply_body, force=plan.force)
            except Conflict as error:
                if guard is not None:
                    raise _Stale from error
                raise TransientError(f"{where} changed while we wrote it") from error
            except ApiError as error:
                if guard is not None and error.status == 404:
                    raise _Stale from error
                message = f"cannot write {where}: HTTP {error.status} {error.reason}"
                return _Written(dict(previous), Verdict(False, c.WRITE_FAILED, message), None, conflicts)
            self._configmaps[(namespace, configmap_name)] = stored
        verdict = judge_sync(namespace=namespace, configmap=configmap_name, ours=ours, conflicts=conflicts)
        return _Written(ours, verdict, plan, conflicts)

    async def _report_changes(
        self, body: Mapping[str, Any], plan: ConfigMapPlan, ours: Mapping[str, str], *, rolled: list[str]
    ) -> None:
        metadata = body["metadata"]
        involved = servicelink_reference(
            namespace=metadata["namespace"], name=metadata["name"], uid=metadata.get("uid", "")
        )
        changed = [(key, old, new) for key, old, new in plan.changes if key in ours or new is None]
        # One Event per reconcile on the ServiceLink, naming the values and the consumers
        # rolled (status.rolledOut holds them all): a change was three Events, one per
        # change is what Reloader writes. A new ServiceLink of 256 links is one API call.
        rolled_part = [f"rolled {', '.join(rolled)}"] if rolled else []
        if changed:
            parts = [f"{key}: {_describe(old)} -> {_describe(new)}" for key, old, new in changed]
            message = summarize([*parts, *rolled_part])
            log.info("%s/%s: values changed: %s", metadata["namespace"], metadata["name"], message)
            await self._event(involved, "ValueChanged", message)
        elif rolled:
            # A rollout that waited (waitForEndpoints, a burst across ServiceLinks) or a hash catching up.
            message = summarize([f"rolled {', '.join(rolled)} onto the ConfigMap's current values"])
            await self._event(involved, "RolledOut", message)
        for key, manager in plan.restored.items():
            await self._event(
                involved,
                "DriftRepaired",
                f"{key} was changed by field manager {manager!r}; restored to {ours.get(key)}",
                warning=True,
            )
        if changed:
            self.on_values_changed(len(changed))

    async def _roll(
        self,
        body: Mapping[str, Any],
        spec: ServiceLinkSpec,
        written: _Written,
        *,
        previous: Mapping[str, str],
        rolled_out: list[RolledOut],
        results: list[LinkResult],
        services: Mapping[ObjectKey, ServiceView],
    ) -> _Rolled:
        deferred = parse_deferred(body.get("status") or {})
        if spec.rollout == "None":
            disabled = "spec.rollout is None: consumers are not restarted"
            return _Rolled(Verdict(True, c.ROLLOUT_DISABLED, disabled), rolled_out)
        if written.plan is None:
            return _Rolled(Verdict(True, c.NO_CHANGE, "nothing written, nothing rolled"), rolled_out, deferred=deferred)
        metadata = body["metadata"]
        namespace = metadata["namespace"]
        # The index by ConfigMap answers auto-detection alone; names and selectors need the namespace.
        everyone = bool(spec.workloads.names) or spec.workloads.selector is not None
        candidates = self.world.workloads(namespace, reading=None if everyone else spec.config_map_name)
        consumers, skipped = split_consumers(
            select_consumers(candidates, spec=spec.workloads, configmap=spec.config_map_name),
            configmap=spec.config_map_name,
            servicelink=metadata["name"],
        )
        # The baseline is what the pods were last rolled to: our last status; the
        # first time, what the ConfigMap held before we wrote it; and nothing to
        # roll if it did not exist (pods waiting for it start with its values).
        if (body.get("status") or {}).get("hash") is not None:
            baseline = dict(previous)
        elif written.plan.creates:
            baseline = dict(written.values)
        else:
            baseline = dict(written.values)
            for key, old, _ in written.plan.changes:
                if old is None:
                    baseline.pop(key, None)
                else:
                    baseline[key] = old
        baseline = restore_deferred(baseline, deferred)  # held back last time: still a change to roll
        changed, blocked = plan_deferral(results, services=services, baseline=baseline, desired=written.values)
        if spec.wait_for_endpoints and blocked:
            verdict = judge_rollout(
                namespace=namespace,
                configmap=spec.config_map_name,
                failures=[],
                skipped=skipped,
                blocked=blocked,
                progress=[],
            )
            return _Rolled(verdict, rolled_out, skipped, changed)
        managed_configmaps = frozenset(
            name for workload, _ in consumers for name in workload.reads if self.world.claims(namespace, name)
        )
        plans = plan_rollouts(
            consumers,
            configmap=spec.config_map_name,
            managed_configmaps=managed_configmaps,
            managed=written.plan.apply_data,
            baseline=baseline,
            desired=written.values,
        )
        self._writing.discard((namespace, metadata["name"]))  # our ConfigMap is written: rollouts may go
        for rollout in plans:
            share = _Share(rollout, body, previous=baseline, current=written.values)
            self._owed.setdefault((rollout.kind, rollout.namespace, rollout.name), []).append(share)
        outcomes = await self._flush(namespace)
        failures: list[str] = []
        done: list[RolledOut] = []
        waiting = 0
        for rollout in plans:
            outcome = outcomes.get((rollout.kind, rollout.namespace, rollout.name), ...)
            if outcome is ...:
                waiting += 1
            elif outcome is not None:
                failures.append(outcome)
            else:
                done.append(RolledOut(kind=rollout.kind, name=rollout.name, hash=rollout.hash))
        rolled_out = done or rolled_out
        views = {(w.kind, w.name): w for r in rolled_out if (w := self.world.workload(r.kind, namespace, r.name))}
        progress = progress_of(
            rolled_out,
            namespace=namespace,
            workloads=views,
            just_rolled=frozenset((r.kind, r.name) for r in done if (r.kind, r.name) in views),  # not one gone
        )
        verdict = judge_rollout(
            namespace=namespace,
            configmap=spec.config_map_name,
            failures=failures,
            skipped=skipped,
            blocked=[],
            progress=progress,
            waiting=waiting,
        )
        return _Rolled(verdict, rolled_out, skipped)

    def stand_down(self) -> None:
        """Drop the rollouts held for other ServiceLinks: another replica leads now and rolls by comparing."""
        self._owed.clear()

    def _blocked(self, namespace: str, shares: list[_Share]) -> bool:
        """Whether a ServiceLink of one of the workload's ConfigMaps is about to write it: then it rolls."""
        configmaps = frozenset().union(*(share.rollout.sources for share in shares))
        return any(
            (claim.namespace, claim.name) in self._writing or self.is_waiting((claim.namespace, claim.name))
            for configmap in sorted(configmaps)
            for claim in self.world.claims(namespace, configmap)
        )

    async def _flush(self, namespace: str) -> dict[tuple[WorkloadKind, str, str], str | None]:
        """Patch each workload of ``namespace`` with rollouts owed and no ServiceLink left to wait for.

        Returns, by workload, None when it was patched (or is gone) and the
        reason when the API server refused.
        """
        outcomes: dict[tuple[WorkloadKind, str, str], str | None] = {}
        patched: list[_Share] = []
        for key in [k for k in self._owed if k[1] == namespace]:
            shares = self._owed.get(key)
            if not shares or self._blocked(namespace, shares):
                continue
            del self._owed[key]
            workload = self.world.workload(*key)
            if workload is None:
                outcomes[key] = None
                continue
            rollouts = [share.rollout for share in shares]
            try:
                found = await self._patch_workload(workload, merge_rollouts(workload.config_hash, rollouts))
            except TransientError:
                self._owed.setdefault(key, []).extend(shares)  # the retry of this reconcile sends them
                raise
            except ApiError as error:
                outcomes[key] = f"cannot patch {key[0]} {key[1]}/{key[2]}: HTTP {error.status} {error.reason}"
                continue
            outcomes[key] = None
            if found:  # one Event per change: a sibling on the same ConfigMap adds none
                patched.extend([share for share in shares if share.rollout.changed_keys] or shares[:1])
        for share in patched:  # Events once every consumer is patched: no pod waits for them
            await self._report_rollout(share.body, share.rollout, previous=share.previous, current=share.current)
        return outcomes

    async def _patch_workload(self, workload: WorkloadView, value: str) -> bool:
        """Set the workload's config-hash annotation; return False when it no longer exists.

        Guarded by the resourceVersion last seen, so an entry another ServiceLink
        set meanwhile is never overwritten: a lost race is retried.
        """
        try:
            found = await self._call(
                self.kube.set_workload_config_hash,
                kind=workload.kind,
                namespace=workload.namespace,
                name=workload.name,
                annotation=CONFIG_HASH_ANNOTATION,
                value=value,
                resource_version=workload.resource_version,
            )
        except Conflict as error:
            raise TransientError(f"{workload.kind} {workload.namespace}/{workload.name} changed meanwhile") from error
        if found:
            self.on_rollout(workload.kind)
        return found

    async def _report_rollout(
        self, body: Mapping[str, Any], rollout: Rollout, *, previous: Mapping[str, str], current: Mapping[str, str]
    ) -> None:
        metadata = body["metadata"]
        what = f"{rollout.kind} {rollout.namespace}/{rollout.name}"
        changes = (
            ", ".join(f"{k}: {_describe(previous.get(k))} -> {_describe(current.get(k))}" for k in rollout.changed_keys)
            or "config hash brought up to date"
        )
        log.info("%s/%s: rolled %s (%s)", metadata["namespace"], metadata["name"], what, changes)

    async def _write_status(self, body: Mapping[str, Any], new_status: dict[str, Any]) -> None:
        metadata = body["metadata"]
        current: Mapping[str, Any] = body.get("status") or {}
        if dict(current) == new_status:
            return
        await self._call(
            self.kube.patch_servicelink_status,
            namespace=metadata["namespace"],
            name=metadata["name"],
            status=self._merge_patch(current, new_status),
        )
        await self._report_problems(body, current, new_status)

    @staticmethod
    def _merge_patch(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
        """Return a merge patch from ``current`` to ``new`` status: changed fields, and nulls for removed ones."""
        patch: dict[str, Any] = {key: None for key in current if key not in new}
        for key, value in new.items():
            if current.get(key) != value:
                # values is a map: drop removed keys with null, else merge patch keeps them.
                if key == "values" and isinstance(current.get(key), Mapping):
                    value = {k: None for k in current[key] if k not in value} | dict(value)
                patch[key] = value
        return patch

    async def _report_problems(
        self, body: Mapping[str, Any], current: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        """Record a Warning Event for each problem that is new since the last status."""
        metadata = body["metadata"]
        involved = servicelink_reference(
            namespace=metadata["namespace"], name=metadata["name"], uid=metadata.get("uid", "")
        )
        before = {(e.get("key"), e.get("reason"), e.get("message")) for e in current.get("links") or ()}
        for entry in new.get("links") or ():
            if entry.get("reason") and (entry["key"], entry["reason"], entry.get("message")) not in before:
                log.warning(
                    "%s/%s: %s: %s", metadata["namespace"], metadata["name"], entry["reason"], entry.get("message")
                )
                await self._event(involved, entry["reason"], entry.get("message", ""), warning=True)
        # Link-level problems (KeyConflict included) were reported above; these are ConfigMap-wide.
        old = {(cond.get("type"), cond.get("reason"), cond.get("message")) for cond in current.get("conditions") or ()}
        for cond in new.get("conditions") or ():
            fresh = (cond["type"], cond["reason"], cond.get("message")) not in old
            if (
                fresh
                and cond["status"] == "False"
                and cond["type"] in (c.SYNCED, c.ROLLED_OUT)
                and cond["reason"] in c.PROBLEMS  # not RolloutInProgress nor WaitingForEndpoints: they pass
                and cond["reason"] != c.KEY_CONFLICT
            ):
                log.warning(
                    "%s/%s: %s: %s", metadata["namespace"], metadata["name"], cond["reason"], cond.get("message")
                )
                await self._event(involved, cond["reason"], cond.get("message", ""), warning=True)

    async def _report_invalid(self, body: Mapping[str, Any], error: ValidationError) -> None:
        metadata = body["metadata"]
        status: Mapping[str, Any] = body.get("status") or {}
        problems = describe_invalid_spec(error)
        new_status = render_invalid_status(
            generation=int(metadata.get("generation", 0)),
            message=problems,
            current=status,
            current_conditions=parse_conditions(status),
            now=utc_now(),
        )
        if dict(status) == new_status:
            return
        log.warning("%s/%s: %s: %s", metadata["namespace"], metadata["name"], c.INVALID_SPEC, problems)
        await self._call(
            self.kube.patch_servicelink_status,
            namespace=metadata["namespace"],
            name=metadata["name"],
            status=self._merge_patch(status, new_status),
        )
        involved = servicelink_reference(
            namespace=metadata["namespace"], name=metadata["name"], uid=metadata.get("uid", "")
        )
        await self._event(involved, c.INVALID_SPEC, problems, warning=True)

    async def _release(self, body: Mapping[str, Any]) -> None:
        """Withdraw our keys from a ConfigMap we co-manage; one we created goes with its owner."""
        metadata = body["metadata"]
        namespace = metadata["namespace"]
        configmap_name = (body.get("spec") or {}).get("configMapName")
        if not configmap_name:
            return
        async with self._lock(namespace, configmap_name):
            self._configmaps.pop((namespace, configmap_name), None)
            configmap = await self._call(self.kube.get_configmap, namespace=namespace, name=configmap_name)
            if configmap is None:
                return
            owners = configmap.get("metadata", {}).get("ownerReferences") or ()
            if any(ref.get("uid") == metadata.get("uid") for ref in owners):
                return
            if judge_configmap_write(configmap, servicelink=metadata["name"], uid=metadata.get("uid", "")) is not None:
                log.info(
                    "%s/%s: ConfigMap %s is no longer shared with it; its keys stay as they are",
                    namespace,
                    metadata["name"],
                    configmap_name,
                )
                return
            _, siblings = self._claims(body, configmap_name)
            plan = plan_configmap(
                configmap,
                desired={},
                previous={},
                siblings=siblings,
                owner_uid=metadata.get("uid", ""),
                manager=FIELD_MANAGER,
            )
            if plan.write:
                apply_body = render_configmap(
                    name=configmap_name,
                    namespace=namespace,
                    data=plan.apply_data,
                    owner=None,
                    resource_version=_shared_version(configmap, plan),
                )
                try:
                    await self._call(self.kube.apply_configmap, body=apply_body, force=False)
                except Conflict as error:
                    raise TransientError(f"ConfigMap {namespace}/{configmap_name} changed while we wrote it") from error
