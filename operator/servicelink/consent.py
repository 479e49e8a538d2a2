"""Consent: whether a ServiceLink may write into a ConfigMap and roll a workload (pure).

Whoever may edit a ServiceLink asks the operator, which holds wider rights, to
write and roll on their behalf. So the operator acts only where the owner of
the target agreed: a ConfigMap it created for this ServiceLink, or one whose
owner listed the ServiceLink in ``servicelink.dev/writable-by``; a workload
that reads the ConfigMap (it trusts whoever writes it), or one whose owner
listed the ServiceLink in ``servicelink.dev/rollable-by``. Only someone who may
edit the ConfigMap or the workload can set those annotations. The same owner
may withdraw a workload from every rollout (``servicelink.dev/rollout: never``),
and the operator's installer whole kinds (``--ignore-kinds``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from servicelink import conditions as c
from servicelink.model import (
    ROLLABLE_BY_ANNOTATION,
    ROLLOUT_ANNOTATION,
    ROLLOUT_NEVER,
    WRITABLE_BY_ANNOTATION,
    WorkloadKind,
    parse_name_list,
)
from servicelink.views import Reads, WorkloadView

ANYONE = "*"


def _allows(granted: frozenset[str], servicelink: str) -> bool:
    return ANYONE in granted or servicelink in granted


def render_consent_command(
    *, resource: str, name: str, namespace: str, annotation: str, granted: frozenset[str], servicelink: str
) -> str:
    """Return the ``kubectl annotate`` that adds ``servicelink`` to the names already ``granted``."""
    value = ",".join(sorted(granted | {servicelink}))
    overwrite = " --overwrite" if granted else ""
    return f"kubectl annotate {resource} {name} -n {namespace}{overwrite} {annotation}={value}"


def judge_configmap_write(configmap: Mapping[str, Any] | None, *, servicelink: str, uid: str) -> str | None:
    """Return None when ServiceLink ``servicelink`` (uid ``uid``) may write into ``configmap``, else why not.

    It may when the ConfigMap does not exist (the operator creates it, owned by
    the ServiceLink), when it carries the ServiceLink's ownerReference (created
    for it), or when its ``servicelink.dev/writable-by`` annotation lists the
    ServiceLink's name or is ``*``. The refusal says how to give consent.
    """
    return _judge_write(configmap, kind="ConfigMap", servicelink=servicelink, uid=uid)


def judge_secret_write(secret: Mapping[str, Any] | None, *, servicelink: str, uid: str) -> str | None:
    """Return None when ServiceLink ``servicelink`` may write into ``secret`` (``spec.secretName``), else why not:
    by the rule of ``judge_configmap_write``."""
    return _judge_write(secret, kind="Secret", servicelink=servicelink, uid=uid)


def _judge_write(target: Mapping[str, Any] | None, *, kind: str, servicelink: str, uid: str) -> str | None:
    if target is None:
        return None
    metadata = target.get("metadata") or {}
    if any(ref.get("uid") == uid for ref in metadata.get("ownerReferences") or ()):
        return None
    granted = parse_name_list((metadata.get("annotations") or {}).get(WRITABLE_BY_ANNOTATION))
    if _allows(granted, servicelink):
        return None
    name, namespace = metadata.get("name", ""), metadata.get("namespace", "")
    command = render_consent_command(
        resource=kind.lower(),
        name=name,
        namespace=namespace,
        annotation=WRITABLE_BY_ANNOTATION,
        granted=granted,
        servicelink=servicelink,
    )
    return (
        f"{kind} {namespace}/{name} was not created by this ServiceLink and its owner has not shared it "
        f"(annotation {WRITABLE_BY_ANNOTATION}); nothing is written, keys written before stay as they are. "
        f"To share it: {command}"
    )


def judge_configmap_create(*, namespace: str, name: str, servicelink: str, creator: str | None) -> str | None:
    """Return None when ServiceLink ``servicelink`` may create the missing ConfigMap ``name``, else why not.

    ``creator`` is the oldest ServiceLink with a valid spec naming it (creationTimestamp,
    then name), None when that is this one: it creates it whatever the order of
    reconciles, and the others need its consent as for any ConfigMap they did not create.
    """
    if creator is None:
        return None
    command = render_consent_command(
        resource="configmap",
        name=name,
        namespace=namespace,
        annotation=WRITABLE_BY_ANNOTATION,
        granted=frozenset(),
        servicelink=servicelink,
    )
    return (
        f"ConfigMap {namespace}/{name} does not exist yet: ServiceLink {namespace}/{creator}, older, creates it "
        f"and owns it; nothing is written. To share it once it exists: {command}"
    )


@dataclass(frozen=True)
class Skipped:
    """A workload the ServiceLink would roll but does not, why (a ``conditions.SKIPPED_REASONS``) and in words."""

    kind: WorkloadKind
    name: str
    reason: str
    message: str
    # The keys it reads whose change this reconcile did not roll it for (an Event names it); none: nothing held.
    keys: tuple[str, ...] = ()


def judge_opt_out(workload: WorkloadView, *, ignored_kinds: frozenset[WorkloadKind]) -> Skipped | None:
    """Return why no ServiceLink may roll ``workload``, else None.

    Its owner's ``servicelink.dev/rollout: never`` (``WorkloadOptedOut``)
    first, as the narrower word; then the operator's ``--ignore-kinds``
    (``KindIgnored``). Either holds whatever the workload reads and whoever
    asks: the ConfigMap is still written, the pods keep the values they
    started on.
    """
    what = f"{workload.kind} {workload.namespace}/{workload.name}"
    if workload.opted_out:
        target = f"{workload.kind.lower()} {workload.name} -n {workload.namespace}"
        command = f"kubectl annotate {target} {ROLLOUT_ANNOTATION}-"
        message = (
            f"{what} carries {ROLLOUT_ANNOTATION}: {ROLLOUT_NEVER}; never rolled, its pods keep the values they"
            f" started on. To let servicelink roll it: {command}"
        )
        return Skipped(kind=workload.kind, name=workload.name, reason=c.WORKLOAD_OPTED_OUT, message=message)
    if workload.kind in ignored_kinds:
        message = (
            f"{what} is a {workload.kind}, a kind the operator ignores (--ignore-kinds, SERVICELINK_IGNORE_KINDS);"
            " never rolled, its pods keep the values they started on"
        )
        return Skipped(kind=workload.kind, name=workload.name, reason=c.KIND_IGNORED, message=message)
    return None


def split_consumers(
    consumers: Iterable[tuple[WorkloadView, Reads]],
    *,
    configmap: str,
    servicelink: str,
    secret: str | None = None,
    ignored_kinds: frozenset[WorkloadKind] = frozenset(),
) -> tuple[list[tuple[WorkloadView, Reads]], list[Skipped]]:
    """Return the consumers ``servicelink`` may roll, and those it must skip with the reason.

    One opted out, or of a kind in ``ignored_kinds``, is skipped whatever it
    reads (``judge_opt_out``). Otherwise a workload whose pods read
    ``configmap`` (or the Secret ``secret`` it writes) already trusts whoever
    writes it and may be rolled. One that ``spec.workloads`` names or selects
    without reading either may be rolled only when its
    ``servicelink.dev/rollable-by`` annotation lists the ServiceLink's name
    or is ``*``.
    """
    allowed: list[tuple[WorkloadView, Reads]] = []
    skipped: list[Skipped] = []
    for workload, reads in consumers:
        held = judge_opt_out(workload, ignored_kinds=ignored_kinds)
        if held is not None:
            skipped.append(held)
            continue
        reader = configmap in workload.reads or (secret is not None and secret in workload.secret_reads)
        if reader or _allows(workload.rollable_by, servicelink):
            allowed.append((workload, reads))
            continue
        command = render_consent_command(
            resource=workload.kind.lower(),
            name=workload.name,
            namespace=workload.namespace,
            annotation=ROLLABLE_BY_ANNOTATION,
            granted=workload.rollable_by,
            servicelink=servicelink,
        )
        message = (
            f"{workload.kind} {workload.namespace}/{workload.name} does not read ConfigMap "
            f"{workload.namespace}/{configmap} and has not opted in (annotation {ROLLABLE_BY_ANNOTATION}); "
            f"not rolled. To let this ServiceLink roll it: {command}"
        )
        skipped.append(Skipped(kind=workload.kind, name=workload.name, reason=c.WORKLOAD_NOT_OPTED_IN, message=message))
    return allowed, skipped
