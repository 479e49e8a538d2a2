"""Render a ServiceLink's status from what a reconcile found and did (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

from servicelink import conditions as c
from servicelink.consent import Skipped
from servicelink.messages import summarize, truncate
from servicelink.model import (
    Condition,
    CredentialsRead,
    DeferredKey,
    LinkStatus,
    RolledOut,
    ServiceLinkStatus,
    SkippedWorkload,
    StaleJob,
    describe_spec_error,
)
from servicelink.model import Endpoints as EndpointCounts  # views.Endpoints is the cache's own
from servicelink.render import render_hash
from servicelink.resolve import LinkResult
from servicelink.rollout import Deferred
from servicelink.views import Progress


@dataclass(frozen=True)
class Verdict:
    """One condition's outcome before it gets a type, generation and transition time."""

    ok: bool
    reason: str
    message: str


def judge_resolution(results: Sequence[LinkResult]) -> Verdict:
    """Resolved: every link found its Service and port, or the first reason it did not."""
    problems = [r for r in results if not r.resolved]
    if not problems:
        return Verdict(True, c.ALL_SERVICES_FOUND, f"all {len(results)} links resolved")
    return Verdict(False, problems[0].reason, truncate("; ".join(p.message for p in problems)))


def judge_sync(*, namespace: str, configmap: str, ours: Mapping[str, str], conflicts: Mapping[str, str]) -> Verdict:
    """Synced, once the ConfigMap holds ``ours``: up to date, or the key conflicts that kept keys out."""
    if conflicts:
        return Verdict(False, c.KEY_CONFLICT, "; ".join(sorted(conflicts.values())))
    return Verdict(
        True,
        c.CONFIGMAP_UP_TO_DATE,
        f"ConfigMap {namespace}/{configmap} holds the {len(ours)} keys of this ServiceLink",
    )


def judge_rollout(
    *,
    namespace: str,
    configmap: str,
    failures: Sequence[str],
    skipped: Sequence[Skipped],
    blocked: Sequence[Deferred],
    progress: Sequence[Progress],
    waiting: int = 0,
    held: Sequence[tuple[str, str | None, str, str]] = (),
) -> Verdict:
    """RolledOut: True once every consumer this ServiceLink rolled runs its new pods available.

    Otherwise, in this order: a patch refused (``RolloutFailed``), a
    Deployment past its progress deadline (``RolloutStalled``, its message), a
    workload not opted in (``WorkloadNotOptedIn``), a rollout held until a
    changed link's Service has a ready endpoint (``WaitingForEndpoints``), a
    consumer rolled less than its cooldown ago (``CoolingDown``), one outside
    its rollout windows (``OutsideWindow``; ``held`` names each, with when it
    is due, the reason and why then), one waiting for a rollout slot under
    ``--max-rollouts-in-flight`` (``WaitingForRolloutSlot``), new pods not yet available
    (``RolloutInProgress``). All are False: the pods do
    not carry the current values yet, so neither is the ServiceLink Ready.
    A workload opted out or of an ignored kind fails nothing: its owner or
    the operator's installer asked for it. True says how many there are.
    """
    where = f"ConfigMap {namespace}/{configmap}"
    if failures:
        return Verdict(False, c.ROLLOUT_FAILED, "; ".join(failures))
    stalled = [p.message for p in progress if p.state == "Stalled"]
    if stalled:
        return Verdict(False, c.ROLLOUT_STALLED, truncate("; ".join(stalled)))
    not_opted_in = [s.message for s in skipped if s.reason == c.WORKLOAD_NOT_OPTED_IN]
    if not_opted_in:
        return Verdict(False, c.WORKLOAD_NOT_OPTED_IN, summarize(not_opted_in))
    if blocked:
        services = ", ".join(f"{b.service} ({b.key})" for b in blocked)
        return Verdict(
            False,
            c.WAITING_FOR_ENDPOINTS,
            truncate(f"consumers of {where} roll once these Services have a ready endpoint: {services}"),
        )
    if held:
        reasons = {h[2] for h in held}
        reason = next(r for r in (c.COOLING_DOWN, c.OUTSIDE_WINDOW, c.WAITING_FOR_ROLLOUT_SLOT) if r in reasons)
        named = "; ".join(
            f"{what} waits for a rollout slot ({why})"
            if held_for == c.WAITING_FOR_ROLLOUT_SLOT
            else f"{what} rolls at {due} ({why})"
            if due
            else f"{what} waits: no rollout window of its ever opens"
            for what, due, held_for, why in held
        )
        return Verdict(False, reason, truncate(f"held back: {named}"))
    rolling = [p.message for p in progress if p.state == "Progressing"]
    if rolling:
        return Verdict(False, c.ROLLOUT_IN_PROGRESS, truncate("; ".join(rolling)))
    message = f"consumers of {where} carry its current hash and their rollouts are complete"
    if waiting:
        message += f"; {waiting} roll once the other servicelink ConfigMaps they read are written"
    if skipped:
        message += f"; {len(skipped)} opted out or of an ignored kind, never rolled (status.skipped)"
    return Verdict(True, c.WORKLOADS_UPDATED, truncate(message))


def parse_deferred(status: Mapping[str, Any]) -> list[Deferred]:
    """Read ``status.deferred``: the keys written but not yet rolled out; an entry we cannot read is dropped."""
    return [
        Deferred(
            key=str(e["key"]),
            service=str(e.get("service", "")),
            previous=e.get("previous"),
            reason=str(e.get("reason") or c.WAITING_FOR_ENDPOINTS),  # written before reasons: endpoints
            due=e.get("due"),
        )
        for e in status.get("deferred") or ()
        if isinstance(e, Mapping) and e.get("key")
    ]


def describe_invalid_spec(error: ValidationError) -> str:
    """Return the message of ``InvalidSpec``: each problem with the ``spec.`` field it is in."""
    return describe_spec_error(error)


def render_link_entries(results: Sequence[LinkResult], conflicts: Mapping[str, str]) -> list[LinkStatus]:
    """Return ``status.links``: one entry per link, with its reason when it did not resolve or write."""
    entries: list[LinkStatus] = []
    for result in results:
        problem: tuple[str | None, str | None] = (None, None)
        if not result.resolved:
            problem = (result.reason, result.message)
        elif result.key in conflicts:
            problem = (c.KEY_CONFLICT, conflicts[result.key])
        entries.append(
            LinkStatus(
                key=result.key,
                service=result.service,
                resolved=result.resolved,
                endpoints=None if result.endpoints is None else EndpointCounts(**asdict(result.endpoints)),
                reason=problem[0],
                message=problem[1],
                credentials=None
                if result.credentials is None
                else CredentialsRead(
                    secret_name=result.credentials.secret,
                    keys=list(result.credentials.keys),
                    resource_version=result.credentials.resource_version,
                ),
            )
        )
    return entries


# Lists a status carries only when they hold something, so a ServiceLink that has none keeps the status it had.
_OMITTED_WHEN_EMPTY = ("skipped", "deferred", "staleJobs")


def dump_status(status: ServiceLinkStatus) -> dict[str, Any]:
    """Return ``status`` as the API server stores it: by JSON name, unset fields and empty optional lists left out."""
    dumped = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    for name in _OMITTED_WHEN_EMPTY:
        if not dumped.get(name):
            dumped.pop(name, None)
    return dumped


def render_status(
    *,
    generation: int,
    results: Sequence[LinkResult],
    values: Mapping[str, str],
    conflicts: Mapping[str, str],
    synced: Verdict,
    rolled: Verdict,
    rolled_out: Sequence[RolledOut],
    skipped: Sequence[Skipped],
    current_conditions: Sequence[Condition],
    now: str,
    deferred: Sequence[Deferred] = (),
    stale_jobs: Sequence[StaleJob] = (),
    secret_digests: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Return the whole status a reconcile leaves, conditions in a fixed order, built from ``ServiceLinkStatus``.

    ``values`` are the ConfigMap's; the hash covers the Secret's values too, by their ``secret_digests``.

    ``skipped`` (workloads not rolled: not opted in, opted out, an ignored kind), ``deferred``
    (keys written but not yet rolled out) and ``staleJobs`` (running Jobs on
    old values) appear only when there are some.
    """
    resolved = judge_resolution(results)
    failing = [v for v in (resolved, synced, rolled) if not v.ok]
    ready = (
        Verdict(True, c.RECONCILED, "ConfigMap written and consumers up to date")
        if not failing
        else Verdict(False, failing[0].reason, failing[0].message)
    )
    desired = [
        Condition(
            type=kind,
            status="True" if verdict.ok else "False",
            reason=verdict.reason,
            message=verdict.message,
            observed_generation=generation,
        )
        for kind, verdict in ((c.READY, ready), (c.RESOLVED_TYPE, resolved), (c.SYNCED, synced), (c.ROLLED_OUT, rolled))
    ]
    with_endpoints = sum(1 for r in results if r.endpoints is not None and r.endpoints.ready > 0)
    status = ServiceLinkStatus(
        observed_generation=generation,
        values=dict(sorted(values.items())),
        links=render_link_entries(results, conflicts),
        hash=render_hash({**values, **(secret_digests or {})}),
        link_summary=f"{sum(1 for r in results if r.resolved)}/{len(results)}",
        endpoint_summary=f"{with_endpoints}/{len(results)}",
        rolled_out=list(rolled_out),
        skipped=[SkippedWorkload(kind=s.kind, name=s.name, reason=s.reason, message=s.message) for s in skipped],
        deferred=[
            DeferredKey(key=d.key, service=d.service, previous=d.previous, reason=d.reason, due=d.due) for d in deferred
        ],
        stale_jobs=list(stale_jobs),
        conditions=c.merge_conditions(current_conditions, desired, now=now),
    )
    return dump_status(status)


def render_invalid_status(
    *, generation: int, message: str, current: Mapping[str, Any], current_conditions: Sequence[Condition], now: str
) -> dict[str, Any]:
    """Return the status of a ServiceLink whose spec the operator cannot use; written values stay."""
    verdict = Condition(
        type=c.READY,
        status="False",
        reason=c.INVALID_SPEC,
        message=truncate(message),
        observed_generation=generation,
    )
    kept = {k: v for k, v in current.items() if k not in ("conditions", "observedGeneration")}
    others = [cond for cond in current_conditions if cond.type != c.READY]
    return {
        **kept,
        "observedGeneration": generation,
        "conditions": [
            cond.model_dump(by_alias=True, exclude_none=True)
            for cond in c.merge_conditions(current_conditions, [verdict, *others], now=now)
        ],
    }


def parse_conditions(status: Mapping[str, Any]) -> list[Condition]:
    """Read ``status.conditions`` leniently: an entry we cannot read is dropped and rewritten."""
    parsed: list[Condition] = []
    for raw in status.get("conditions") or ():
        try:
            parsed.append(Condition.model_validate(raw))
        except ValueError:
            continue
    return parsed
