"""What a WorkloadMapping's status says, and whether its kind is followed, from what the cluster told (pure).

The operator follows a mapped kind only when everything holds: the mapping parses,
the API server serves its plural at its version under the mapped kind's name, and
the operator's ServiceAccount may list, watch and patch it. Each failure is the
mapping's Ready condition, False, with a reason and the fix; none is a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from servicelink import conditions as c
from servicelink.model import (
    BuiltInKindError,
    Condition,
    WorkloadMappingStatus,
    WorkloadResource,
    parse_mapping,
)

# The verbs the operator needs on a mapped kind: its watch lists and watches, a rollout patches.
MAPPED_VERBS = ("list", "watch", "patch")
_NAMED = 3  # objects a TemplateNotFound message names before "and N more"


@dataclass(frozen=True)
class Served:
    """What discovery and access review said of a mapped kind."""

    kind: str | None  # the kind the API serves under the plural at the version; None when it serves no such plural
    denied: tuple[str, ...] = ()  # the verbs of MAPPED_VERBS the operator may not use


@dataclass(frozen=True)
class Followed:
    """The objects of a followed kind: how many, and those without a pod template at the mapped path."""

    count: int
    without_template: Sequence[str] = field(default_factory=tuple)  # "namespace/name", sorted


def parse_or_refuse(name: str, spec: Mapping[str, Any], *, generation: int) -> WorkloadResource | Condition:
    """Return the mapped kind, or the Ready condition (False) that says why the mapping cannot be followed."""
    try:
        return parse_mapping(name, spec)
    except BuiltInKindError as error:
        return _not_ready(c.BUILT_IN_KIND, str(error), generation)
    except ValueError as error:
        return _not_ready(c.INVALID_SPEC, str(error), generation)


def plan_mapping(resource: WorkloadResource, *, served: Served, generation: int) -> WorkloadResource | Condition:
    """Return ``resource`` to follow it, or the Ready condition (False) that says why not, given what discovery
    and access review said of it.

    A kind the API server does not serve (its CRD missing, or another version)
    is ``KindNotServed``, and so is one served under another kind's name:
    spec.kind is how ServiceLinks name it. One the operator may not use is
    ``Forbidden``, naming the verbs and where to grant them.
    """
    what = f"{resource.plural} in {resource.group}/{resource.version}"
    mapped = resource.kind.split(".", 1)[0]
    if served.kind is None:
        message = (
            f"the API server serves no {what}: install the CRD of {mapped}, or set spec.version to a version it"
            " serves (kubectl api-resources --api-group=" + resource.group + ")"
        )
        return _not_ready(c.KIND_NOT_SERVED, message, generation)
    if served.kind != mapped:
        message = f"the API server serves {what} as kind {served.kind}, not {mapped}: set spec.kind to {served.kind}"
        return _not_ready(c.KIND_NOT_SERVED, message, generation)
    if served.denied:
        message = (
            f"servicelink's ServiceAccount may not {', '.join(served.denied)} {resource.plural}.{resource.group}: "
            "list this mapping in the chart's workloadMappings value, or grant list, watch and patch on it in a"
            " ClusterRole bound to that ServiceAccount"
        )
        return _not_ready(c.FORBIDDEN, message, generation)
    return resource


def plan_followed(resource: WorkloadResource, template: str, *, followed: Followed, generation: int) -> Condition:
    """Return the Ready condition of a followed kind: True, unless objects have no pod template at ``template``.

    Those objects are still followed (one may gain a template); the message
    names the first few, so the user can check the path against one of them.
    """
    kind = resource.kind.split(".", 1)[0]
    missing = list(followed.without_template)
    if missing:
        named = ", ".join(f"{kind} {key}" for key in missing[:_NAMED])
        more = f" and {len(missing) - _NAMED} more" if len(missing) > _NAMED else ""
        message = (
            f"no pod template at {template} in {named}{more}: set spec.template to where these objects hold"
            " theirs (kubectl get -o yaml shows it)"
        )
        return _not_ready(c.TEMPLATE_NOT_FOUND, message, generation)
    count = followed.count
    message = f"following {count} {kind}{'' if count == 1 else 's'}; ServiceLinks name the kind {resource.kind}"
    return Condition(type=c.READY, status="True", reason=c.WATCHING, message=message, observed_generation=generation)


def plan_watch_failed(resource: WorkloadResource, failure: str, *, generation: int) -> Condition:
    """Return the Ready condition (False) of a kind that passed every check but whose list or watch failed."""
    message = (
        f"cannot watch {resource.plural}.{resource.group}: {failure}; servicelink tries again and says Watching"
        " once events flow (its log has each failure)"
    )
    return _not_ready(c.WATCH_FAILED, message, generation)


def plan_mapping_status(
    current: Mapping[str, Any], ready: Condition, *, followed: int | None, generation: int, now: str
) -> dict[str, Any] | None:
    """Return the status to write, or None when ``current`` already says it: an unchanged mapping writes nothing."""
    try:
        before = WorkloadMappingStatus.model_validate(current or {})
    except ValueError:
        before = WorkloadMappingStatus()
    merged = c.merge_conditions(before.conditions, [ready], now=now)
    after = WorkloadMappingStatus(observed_generation=generation, workloads=followed, conditions=merged)
    if after == before:
        return None
    return after.model_dump(by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class MappingEvent:
    """An Event on a WorkloadMapping: Normal when its kind is followed, Warning with the reason when not."""

    reason: str
    message: str
    warning: bool


def plan_mapping_event(current: Mapping[str, Any], ready: Condition) -> MappingEvent | None:
    """Return the Event to record when the mapping's Ready reason changed since ``current`` (its status), or None.

    One per change, so a mapping that stays broken is not an Event per check;
    a count of followed objects moving is no Event either.
    """
    before = next(
        (each.get("reason") for each in (current or {}).get("conditions") or () if each.get("type") == c.READY), None
    )
    if before == ready.reason:
        return None
    return MappingEvent(ready.reason, ready.message, warning=ready.status != "True")


def _not_ready(reason: str, message: str, generation: int) -> Condition:
    return Condition(type=c.READY, status="False", reason=reason, message=message, observed_generation=generation)
