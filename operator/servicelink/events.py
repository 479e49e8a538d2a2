"""Every Event reason the operator records: its type, the object it is on, and when (pure).

docs/reference/events.md is generated from ``EVENTS``, and tests/unit/test_event_reasons.py reads the code
that records Events (``plan.py``, ``mapping.py``) and fails when it records a reason this table lacks,
with another type, or when the table lists one nothing records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from servicelink import conditions as c

VALUE_CHANGED = "ValueChanged"
ROLLED_OUT = "RolledOut"
DRIFT_REPAIRED = "DriftRepaired"
STALE_JOBS = "StaleJobs"


@dataclass(frozen=True)
class EventReason:
    """One reason an Event carries, on one kind of object."""

    reason: str
    type: Literal["Normal", "Warning"]
    on: Literal["ServiceLink", "WorkloadMapping"]
    when: str


def _link(reason: str, when: str) -> EventReason:
    return EventReason(
        reason, "Warning", "ServiceLink", f"{when}. Once per link and message, as its entry in `status.links` changes"
    )


def _condition(kind: str, reason: str, when: str) -> EventReason:
    return EventReason(
        reason, "Warning", "ServiceLink", f"{when}. Once, when `{kind}` turns False with this reason or message"
    )


def _mapping(reason: str, when: str) -> EventReason:
    kind: Literal["Normal", "Warning"] = "Normal" if reason == c.WATCHING else "Warning"
    return EventReason(reason, kind, "WorkloadMapping", f"{when}. Once, when its `Ready` reason becomes this one")


EVENTS: tuple[EventReason, ...] = (
    EventReason(
        VALUE_CHANGED,
        "Normal",
        "ServiceLink",
        "A reconcile wrote a changed value. The message lists each `KEY: old -> new` (for a value in the Secret, "
        "only `KEY: changed (in the Secret)`) and the workloads it rolled",
    ),
    EventReason(
        ROLLED_OUT,
        "Normal",
        "ServiceLink",
        "Workloads were rolled onto the ConfigMap's current values and no value changed: a rollout that waited "
        "(`waitForEndpoints`, a burst across ServiceLinks) or a pod-template hash catching up",
    ),
    EventReason(
        DRIFT_REPAIRED,
        "Warning",
        "ServiceLink",
        "Another field manager changed a key servicelink owns, in the ConfigMap or the Secret; the operator wrote "
        "its value back. The message names the manager",
    ),
    EventReason(
        STALE_JOBS,
        "Warning",
        "ServiceLink",
        "A running Job reads a value that changed after it started (listed in `status.staleJobs`); servicelink "
        "never restarts a Job. Once per Job and key",
    ),
    EventReason(
        c.INVALID_SPEC,
        "Warning",
        "ServiceLink",
        "The spec passed the CRD's schema but not the operator's check; the message lists the problems",
    ),
    _link(c.SERVICE_NOT_FOUND, "A link's Service does not exist in its namespace"),
    _link(
        c.PORT_NOT_FOUND, "A link's port is not one of its Service's ports, or none was given for a Service of several"
    ),
    _link(c.CROSS_NAMESPACE_FORBIDDEN, "A link's Service is in a namespace that has not opened to the ServiceLink's"),
    _link(c.SECRETS_DISABLED, "A link has `credentials` and the operator runs without `--secrets`"),
    _link(c.SECRET_NOT_SHARED, "A link's credentials Secret is not shared with the ServiceLink"),
    _link(c.SECRET_KEY_NOT_FOUND, "A link's credentials Secret lacks the username or password key"),
    _link(
        c.KEY_CONFLICT, "Another field manager owns the link's key in the ConfigMap, or another ServiceLink writes it"
    ),
    _condition(c.SYNCED, c.CONFIGMAP_TOO_LARGE, "The ConfigMap would pass the 1 MiB object limit; nothing was written"),
    _condition(c.SYNCED, c.WRITE_FAILED, "The API server refused the ConfigMap or Secret write"),
    _condition(
        c.SYNCED,
        c.CONFIGMAP_NOT_SHARED,
        "The ConfigMap was not created by this ServiceLink and its owner has not shared it",
    ),
    _condition(c.ROLLED_OUT, c.ROLLOUT_FAILED, "The API server refused a workload's patch"),
    _condition(
        c.ROLLED_OUT,
        c.WORKLOAD_NOT_OPTED_IN,
        "A workload named or selected in `spec.workloads` does not read the ConfigMap and has not opted in",
    ),
    _condition(
        c.ROLLED_OUT, c.ROLLOUT_STALLED, "A Deployment this ServiceLink rolled passed its `progressDeadlineSeconds`"
    ),
    _mapping(c.WATCHING, "The operator lists, watches and patches the mapped kind"),
    _mapping(c.INVALID_SPEC, "The spec passed the CRD's schema but not the operator's check"),
    _mapping(c.KIND_NOT_SERVED, "The API server serves no such kind"),
    _mapping(c.FORBIDDEN, "The operator's ServiceAccount may not list, watch or patch the kind"),
    _mapping(c.BUILT_IN_KIND, "servicelink follows the kind without a mapping"),
    _mapping(c.TEMPLATE_NOT_FOUND, "An object of the kind has no pod template where `spec.template` points"),
    _mapping(c.WATCH_FAILED, "Listing or watching the kind failed; the operator tries again until it can"),
)
