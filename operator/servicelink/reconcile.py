"""Reconcile one ServiceLink: read what exists, run the plan of ``plan.py``, write the difference (does I/O).

Every trigger (a ServiceLink, Service or EndpointSlice event, a resync, a
restart) ends here, and nothing here depends on which one fired. Each step
asks the planner what to do and does it: no decision is taken here, except
when a workload shared by several ServiceLinks is patched.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from servicelink.alerts import Alert, plan_alerts
from servicelink.kube import (
    ApiError,
    Conflict,
    Kube,
    TransportError,
    is_transient,
    servicelink_reference,
    utc_now,
)
from servicelink.model import (
    CONFIG_HASH_ANNOTATION,
    ROLLED_AT_ANNOTATION,
    ROLLED_TEMPLATE_LABEL,
    ServiceLinkSpec,
    WorkloadKind,
    parse_spec,
)
from servicelink.pacing import Pacer
from servicelink.plan import (
    CONSENT_RECHECK_SECONDS as CONSENT_RECHECK_SECONDS,  # the integration tests wait on it
)
from servicelink.plan import (
    Event,
    Release,
    Roll,
    SecretWritten,
    ServiceLinkView,
    StatusWrite,
    World,
    Write,
    Written,
    describe_change,
    join_written,
    judge_roll,
    parse_servicelink,
    plan_change_events,
    plan_invalid_status,
    plan_pacing,
    plan_recheck,
    plan_release,
    plan_release_finalizers,
    plan_roll,
    plan_secret_release,
    plan_secret_write,
    plan_secret_write_failed,
    plan_slot_takers,
    plan_stale_job_events,
    plan_stale_jobs,
    plan_status,
    plan_values,
    plan_write,
    plan_write_failed,
    plan_write_over_seen,
    with_restarts,
)
from servicelink.rollout import Rollout, WorkloadKey, merge_rollouts
from servicelink.settings import Settings
from servicelink.status import describe_invalid_spec
from servicelink.values import Values
from servicelink.views import WorkloadView, template_record

log = logging.getLogger(__name__)
T = TypeVar("T")


class TransientError(Exception):
    """The API server could not take a call now; the ServiceLink is retried with backoff."""


class _Stale(Exception):
    """The ConfigMap last seen did not lead to a write the API server accepted: read it again."""


@dataclass(frozen=True)
class _Share:
    """One ServiceLink's rollout of a workload, waiting to go out in the workload's next patch."""

    rollout: Rollout
    view: ServiceLinkView  # for its log line
    previous: Mapping[str, str]  # the values the workload's pods were last rolled to (a Secret's: digests)
    current: Mapping[str, str]
    secret_keys: frozenset[str] = frozenset()  # the keys of the Secret: their change is told, never their value


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
    alert: Callable[[Alert], None] = lambda alert: None  # queues it for the alert sink; never waits
    is_waiting: Callable[[tuple[str, str]], bool] = lambda key: False  # queued to reconcile soon
    # Reconcile a ServiceLink again soon: one whose rollout another's patch sent, so its status catches up.
    requeue: Callable[[tuple[str, str]], None] = lambda key: None
    # With --max-rollouts-in-flight: how many rollouts hold a slot and how many workloads wait for one.
    on_pacing: Callable[[int, int], None] = lambda in_flight, waiting: None
    _configmap_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    # Each ConfigMap as our last apply (or read) returned it. A change then writes without
    # reading first, guarded by that resourceVersion: one round trip less (docs/explanation/performance.md).
    _configmaps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _writing: set[tuple[str, str]] = field(default_factory=set)  # reconciling, ConfigMap not yet written
    _owed: dict[tuple[WorkloadKind, str, str], list[_Share]] = field(default_factory=dict)
    _pacer: Pacer = field(init=False)

    def __post_init__(self) -> None:
        self._pacer = Pacer(self.settings.max_rollouts_in_flight, self.settings.rollout_timeout_seconds)

    async def _call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, **kwargs))
        except ApiError as error:
            if is_transient(error):
                raise TransientError(f"{fn.__name__}: HTTP {error.status} {error.reason}") from error
            raise
        except TransportError as error:
            raise TransientError(f"{fn.__name__}: API server unreachable: {error}") from error

    async def _record(
        self, view: ServiceLinkView, events: Sequence[Event], *, status: Mapping[str, Any] | None = None
    ) -> None:
        """Record Events on the ServiceLink; one the API server refuses is logged and dropped.

        The alerts they call for, and the one for Ready turning False in ``status`` (the patch written),
        are queued first: a queue, so no receiver delays the Events, the status or the next reconcile.
        """
        for alert in plan_alerts(view, events, status=status, at=utc_now()):
            self.alert(alert)
        involved = servicelink_reference(namespace=view.namespace, name=view.name, uid=view.uid)
        for event in events:
            level = logging.WARNING if event.warning else logging.INFO
            log.log(level, "%s/%s: %s: %s", view.namespace, view.name, event.logged_as or event.reason, event.message)
            try:
                await self._call(
                    self.kube.record_event,
                    involved=involved,
                    reason=event.reason,
                    message=event.message,
                    warning=event.warning,
                )
            except (TransientError, ApiError) as error:
                log.info("event %s on %s/%s not recorded: %s", event.reason, view.namespace, view.name, error)

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
        await self._flush(namespace, by=(namespace, name))  # rollouts that waited for us, if we left before rolling
        self._hand_on_slots(by=(namespace, name))
        return again

    async def _reconcile(self, namespace: str, name: str) -> float | None:
        body = self.world.servicelink(namespace, name)
        if body is None:
            self._pacer.leave((namespace, name))
            for gone in [key for key in self._configmaps if not self.world.claims(*key)]:
                del self._configmaps[gone]
            return None
        view = parse_servicelink(body)
        if view.deleting:
            finalizers = plan_release_finalizers(view)
            if finalizers is not None:
                await self._release(view)
                await self._set_finalizers(view, finalizers)
            return None
        try:
            spec = parse_spec(view.spec)
        except ValidationError as error:
            await self._write_status(view, plan_invalid_status(view, describe_invalid_spec(error), now=utc_now()))
            return None
        values = plan_values(view, spec=spec, world=self.world, cluster_domain=self.settings.cluster_domain)
        async with self._lock(namespace, spec.config_map_name):
            written = join_written(
                await self._write_configmap(view, spec, values), await self._write_secret(view, spec, values)
            )
            roll = plan_roll(
                view,
                spec=spec,
                values=values,
                written=written,
                world=self.world,
                ignored_kinds=frozenset(self.settings.ignore_kinds),
                now=utc_now(),
            )
            roll = self._pace(view, roll)
            if roll.done is not None:
                rolled = roll.done
            else:
                outcomes = await self._roll(view, roll.rollouts, roll.baseline, written)
                rolled = judge_roll(view, spec=spec, roll=roll, outcomes=outcomes, world=self.world)
        changes = plan_change_events(view, written=written, rolled=rolled)
        stale = plan_stale_jobs(view, spec=spec, written=written, world=self.world)
        # Reported after the rollouts: the consumers' pods need not wait for an Event.
        await self._record(view, [*changes.events, *plan_stale_job_events(view, stale)])
        if changes.values_changed:
            self.on_values_changed(changes.values_changed)
        status = plan_status(view, values=values, written=written, rolled=rolled, now=utc_now(), stale_jobs=stale)
        await self._write_status(view, status)
        return plan_recheck(written, rolled, now=utc_now())

    async def _set_finalizers(self, view: ServiceLinkView, finalizers: list[str]) -> None:
        try:
            await self._call(
                self.kube.set_servicelink_finalizers,
                namespace=view.namespace,
                name=view.name,
                finalizers=finalizers,
                resource_version=view.resource_version,
            )
        except Conflict as error:
            raise TransientError(f"finalizers of {view.namespace}/{view.name} changed meanwhile") from error

    def _lock(self, namespace: str, configmap: str) -> asyncio.Lock:
        return self._configmap_locks.setdefault((namespace, configmap), asyncio.Lock())

    async def _write_configmap(self, view: ServiceLinkView, spec: ServiceLinkSpec, values: Values) -> Written:
        """Write our keys over the ConfigMap last seen if that decides it, else over a fresh read.

        The copy saves the GET before every change; should the API server
        refuse its version, the ConfigMap is read and the write decided again.
        """
        key = (view.namespace, spec.config_map_name)
        seen = self._configmaps.pop(key, None)
        write = None if seen is None else plan_write_over_seen(view, spec=spec, values=values, seen=seen)
        if write is not None:
            with contextlib.suppress(_Stale):
                return await self._apply(view, spec, write, guarded=True)
        configmap = await self._call(self.kube.get_configmap, namespace=key[0], name=key[1])
        if configmap is not None:
            self._configmaps[key] = configmap
        return await self._apply(view, spec, plan_write(view, spec=spec, values=values, configmap=configmap))

    async def _apply(
        self, view: ServiceLinkView, spec: ServiceLinkSpec, write: Write, *, guarded: bool = False
    ) -> Written:
        """Set the finalizer and apply as planned; return what that achieved.

        ``guarded``: planned on the copy last seen, so a conflict or a 404 raises ``_Stale``.
        """
        key = (view.namespace, spec.config_map_name)
        if write.finalizers is not None:
            await self._set_finalizers(view, write.finalizers)
        if write.apply is None:
            return write.outcome
        try:
            stored = await self._call(self.kube.apply_configmap, body=write.apply, force=write.force)
        except Conflict as error:
            if guarded:
                raise _Stale from error
            raise TransientError(f"ConfigMap {key[0]}/{key[1]} changed while we wrote it") from error
        except ApiError as error:
            if guarded and error.status == 404:
                raise _Stale from error
            return plan_write_failed(view, spec=spec, write=write, error=f"HTTP {error.status} {error.reason}")
        self._configmaps[key] = stored
        return write.outcome

    async def _write_secret(self, view: ServiceLinkView, spec: ServiceLinkSpec, values: Values) -> SecretWritten | None:
        """Write the values of the links with credentials to the Secret spec.secretName; None when it names none.

        The Secret is read each time (one GET): no copy of it is kept.
        """
        if spec.secret_name is None or not self.settings.secrets:
            return None  # without Secret access a link with credentials reports SecretsDisabled; no Secret is touched
        async with self._lock(view.namespace, f"{spec.secret_name} (Secret)"):
            secret = await self._call(self.kube.get_secret, namespace=view.namespace, name=spec.secret_name)
            writers = self.world.secret_writers(view.namespace, spec.secret_name)
            write = plan_secret_write(view, spec=spec, values=values, secret=secret, writers=writers)
            assert write is not None
            if write.finalizers is not None:
                await self._set_finalizers(view, write.finalizers)
            if write.apply is None:
                return write.outcome
            try:
                await self._call(self.kube.apply_secret, body=write.apply, force=write.force)
            except Conflict as error:
                raise TransientError(f"Secret {view.namespace}/{spec.secret_name} changed while we wrote it") from error
            except ApiError as error:
                return plan_secret_write_failed(write, error=f"HTTP {error.status} {error.reason}")
            return write.outcome

    async def _roll(
        self, view: ServiceLinkView, rollouts: list[Rollout], baseline: Mapping[str, str], written: Written
    ) -> dict[tuple[WorkloadKind, str, str], str | None]:
        """Owe the rollouts to their workloads and patch those no other ServiceLink holds back.

        Returns ``_flush``'s outcomes: a workload missing from them waits for another ServiceLink.
        """
        self._writing.discard((view.namespace, view.name))  # our ConfigMap is written: rollouts may go
        for rollout in rollouts:
            secret_keys = frozenset(written.secret.after) if written.secret is not None else frozenset()
            share = _Share(rollout, view, previous=baseline, current=written.digests, secret_keys=secret_keys)
            self._owed.setdefault((rollout.kind, rollout.namespace, rollout.name), []).append(share)
        return await self._flush(view.namespace, by=(view.namespace, view.name))

    def stand_down(self) -> None:
        """Drop the rollouts held for other ServiceLinks, and the line for rollout slots: another replica leads
        now, rolls by comparing, and counts the slots from what its watches show."""
        self._owed.clear()
        self._pacer.clear()

    def _in_flight(self, now: str) -> dict[WorkloadKey, str]:
        """The rollouts holding a slot now: those the watch shows, and those just patched that it does not yet."""
        return self._pacer.in_flight(
            self.world.rollouts_in_flight(), workload=lambda key: self.world.workload(*key), now=now
        )

    def _pace(self, view: ServiceLinkView, roll: Roll) -> Roll:
        """Hold back the rollouts that must wait for a slot (``plan.plan_pacing``) and take one for each that goes.

        No await in here: counting the slots and taking them is one step, whichever reconciles run at once.
        """
        cap, key = self.settings.max_rollouts_in_flight, (view.namespace, view.name)
        if not cap:
            return roll
        if roll.done is not None:
            self._pacer.leave(key)  # nothing to roll now (a write refused, endpoints awaited): back in line later
            return roll
        now = utc_now()
        in_flight = self._in_flight(now)
        self._pacer.line_up(key, plan_slot_takers(roll, world=self.world, in_flight=in_flight))
        paced = plan_pacing(roll, world=self.world, in_flight=in_flight, waiting=self._pacer.waiting(), cap=cap)
        for taker in plan_slot_takers(paced, world=self.world, in_flight=in_flight):
            workload = self.world.workload(*taker)
            self._pacer.take(taker, generation=workload.generation if workload is not None else 0, now=now)
        self.on_pacing(len(self._in_flight(now)), len(self._pacer.waiting()))
        return paced

    def _hand_on_slots(self, *, by: tuple[str, str]) -> None:
        """Reconcile the ServiceLinks first in line for the slots free now: a rollout completed, stalled, timed
        out or went, and its ServiceLink's reconcile (this one) hands its slot on."""
        cap = self.settings.max_rollouts_in_flight
        if not cap:
            return
        in_flight = self._in_flight(utc_now())
        self.on_pacing(len(in_flight), len(self._pacer.waiting()))
        for servicelink in self._pacer.first_in_line(cap - len(in_flight)):
            if servicelink != by:
                self.requeue(servicelink)

    def _blocked(self, namespace: str, shares: list[_Share]) -> bool:
        """Whether a ServiceLink of one of the workload's ConfigMaps is about to write it: then it rolls."""
        configmaps = frozenset().union(*(share.rollout.sources for share in shares))
        return any(
            (claim.namespace, claim.name) in self._writing or self.is_waiting((claim.namespace, claim.name))
            for configmap in sorted(configmaps)
            for claim in self.world.claims(namespace, configmap)
        )

    async def _flush(self, namespace: str, *, by: tuple[str, str]) -> dict[tuple[WorkloadKind, str, str], str | None]:
        """Patch each workload of ``namespace`` with rollouts owed and no ServiceLink left to wait for.

        Returns, by workload, None when it was patched (or is gone) and the
        reason when the API server refused. Every other ServiceLink whose share
        went out (or was refused) is reconciled again: its status still lists
        the keys as WaitingForConfigMaps in ``status.deferred``.
        """
        outcomes: dict[tuple[WorkloadKind, str, str], str | None] = {}
        patched: list[_Share] = []
        for key in [k for k in self._owed if k[1] == namespace]:
            shares = self._owed.get(key)
            if not shares or self._blocked(namespace, shares):
                continue
            del self._owed[key]
            workload = self.world.workload(*key)
            workload = with_restarts(workload, self.world) if workload is not None else None
            found = False  # patched, and it still exists
            if workload is not None:
                rollouts = [share.rollout for share in shares]
                try:
                    found = await self._patch_workload(workload, merge_rollouts(workload.config_hash, rollouts))
                except TransientError:
                    self._owed.setdefault(key, []).extend(shares)  # the retry of this reconcile sends them
                    raise
                except ApiError as error:
                    outcomes[key] = f"cannot patch {key[0]} {key[1]}/{key[2]}: HTTP {error.status} {error.reason}"
            outcomes.setdefault(key, None)
            if not found:
                self._pacer.release(key)  # refused or gone: its slot was not used
            for other in sorted({(s.view.namespace, s.view.name) for s in shares} - {by}):
                self.requeue(other)
            if found:  # one Event per change: a sibling on the same ConfigMap adds none
                patched.extend([share for share in shares if share.rollout.changed_keys] or shares[:1])
        for share in patched:  # reported once every consumer is patched: no pod waits for them
            self._report_rollout(share)
        return outcomes

    async def _patch_workload(self, workload: WorkloadView, value: str) -> bool:
        """Set the workload's config-hash annotation; return False when it no longer exists.

        Guarded by the resourceVersion last seen, so an entry another ServiceLink
        set meanwhile is never overwritten: a lost race is retried. A workload
        restarted in place gets the annotation on its own metadata; a Deployment
        whose template Argo Rollouts run in restart mode has those Rollouts
        restarted first, so a restart is never recorded without being asked for.
        """
        now = utc_now()
        for rollout in workload.restarts:
            await self._call(self.kube.restart_rollout, namespace=workload.namespace, name=rollout, at=now)
        try:
            found = await self._call(
                self.kube.set_workload_config_hash,
                resource=workload.resource,
                namespace=workload.namespace,
                name=workload.name,
                annotation=CONFIG_HASH_ANNOTATION,
                value=value,
                resource_version=workload.resource_version,
                stamp={ROLLED_AT_ANNOTATION: now},
                labels={ROLLED_TEMPLATE_LABEL: template_record(workload.template_digest, value)},
                in_place=workload.restart,
                restart_at=now if workload.restart and workload.kind == "Rollout" else None,
            )
        except Conflict as error:
            raise TransientError(f"{workload.kind} {workload.namespace}/{workload.name} changed meanwhile") from error
        if found:
            self.on_rollout(workload.kind)
        return found

    def _report_rollout(self, share: _Share) -> None:
        rollout = share.rollout
        changes = (
            ", ".join(
                describe_change(k, share.previous.get(k), share.current.get(k), secret=k in share.secret_keys)
                for k in rollout.changed_keys
            )
            or "config hash brought up to date"
        )
        what = f"{rollout.kind} {rollout.namespace}/{rollout.name}"
        log.info("%s/%s: rolled %s (%s)", share.view.namespace, share.view.name, what, changes)

    async def _write_status(self, view: ServiceLinkView, write: StatusWrite | None) -> None:
        """Patch the status as planned, then record the Events that come with it."""
        if write is None:
            return
        await self._call(
            self.kube.patch_servicelink_status, namespace=view.namespace, name=view.name, status=write.patch
        )
        await self._record(view, write.events, status=write.patch)

    async def _release(self, view: ServiceLinkView) -> None:
        """Withdraw our keys from the ConfigMap and the Secret we co-manage; those we created go with their owner."""
        await self._release_secret(view)
        await self._release_configmap(view)

    async def _release_secret(self, view: ServiceLinkView) -> None:
        name = view.spec.get("secretName")
        if not name or not isinstance(name, str):
            return
        async with self._lock(view.namespace, f"{name} (Secret)"):
            secret = await self._call(self.kube.get_secret, namespace=view.namespace, name=name)
            release = plan_secret_release(view, secret_name=name, secret=secret)
            await self._withdraw(view, release, self.kube.apply_secret, where=f"Secret {view.namespace}/{name}")

    async def _release_configmap(self, view: ServiceLinkView) -> None:
        configmap_name = view.spec.get("configMapName")
        if not configmap_name:
            return
        async with self._lock(view.namespace, configmap_name):
            self._configmaps.pop((view.namespace, configmap_name), None)
            configmap = await self._call(self.kube.get_configmap, namespace=view.namespace, name=configmap_name)
            claims = self.world.claims(view.namespace, configmap_name)
            release = plan_release(view, configmap_name=configmap_name, configmap=configmap, claims=claims)
            where = f"ConfigMap {view.namespace}/{configmap_name}"
            await self._withdraw(view, release, self.kube.apply_configmap, where=where)

    async def _withdraw(
        self, view: ServiceLinkView, release: Release, apply: Callable[..., Any], *, where: str
    ) -> None:
        """Apply a release as planned: our keys leave the object, or the log says why they stay."""
        if release.kept:
            log.info("%s/%s: %s", view.namespace, view.name, release.kept)
        if release.apply is None:
            return
        try:
            await self._call(apply, body=release.apply, force=False)
        except Conflict as error:
            raise TransientError(f"{where} changed while we wrote it") from error
