"""Condition types and reasons in one place, and the rule for updating a condition list (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from servicelink.model import Condition

READY = "Ready"
RESOLVED_TYPE = "Resolved"
SYNCED = "Synced"
ROLLED_OUT = "RolledOut"

# Ready
RECONCILED = "Reconciled"
INVALID_SPEC = "InvalidSpec"
# Resolved
ALL_SERVICES_FOUND = "AllServicesFound"
RESOLVED = "Resolved"
SERVICE_NOT_FOUND = "ServiceNotFound"
PORT_NOT_FOUND = "PortNotFound"
CROSS_NAMESPACE_FORBIDDEN = "CrossNamespaceForbidden"
SECRETS_DISABLED = "SecretsDisabled"
SECRET_NOT_SHARED = "SecretNotShared"
SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
# Synced
CONFIGMAP_UP_TO_DATE = "ConfigMapUpToDate"
KEY_CONFLICT = "KeyConflict"
CONFIGMAP_TOO_LARGE = "ConfigMapTooLarge"
WRITE_FAILED = "WriteFailed"
CONFIGMAP_NOT_SHARED = "ConfigMapNotShared"
SECRET_NOT_WRITABLE = "SecretNotWritable"
# RolledOut
WORKLOADS_UPDATED = "WorkloadsUpdated"
NO_CHANGE = "NoChange"
ROLLOUT_DISABLED = "RolloutDisabled"
ROLLOUT_FAILED = "RolloutFailed"
WORKLOAD_NOT_OPTED_IN = "WorkloadNotOptedIn"
ROLLOUT_IN_PROGRESS = "RolloutInProgress"
ROLLOUT_STALLED = "RolloutStalled"
WAITING_FOR_ENDPOINTS = "WaitingForEndpoints"
COOLING_DOWN = "CoolingDown"
OUTSIDE_WINDOW = "OutsideWindow"
WAITING_FOR_ROLLOUT_SLOT = "WaitingForRolloutSlot"
# A WorkloadMapping's Ready (and INVALID_SPEC, shared with a ServiceLink's)
WATCHING = "Watching"
KIND_NOT_SERVED = "KindNotServed"
FORBIDDEN = "Forbidden"
BUILT_IN_KIND = "BuiltInKind"
TEMPLATE_NOT_FOUND = "TemplateNotFound"
WATCH_FAILED = "WatchFailed"
# Why an entry of status.skipped is not rolled (and WORKLOAD_NOT_OPTED_IN, which also fails RolledOut)
WORKLOAD_OPTED_OUT = "WorkloadOptedOut"
KIND_IGNORED = "KindIgnored"
# Why an entry of status.deferred (a key written whose rollout is held back) is held, besides WAITING_FOR_ENDPOINTS
WAITING_FOR_CONFIGMAPS = "WaitingForConfigMaps"

# Why a link did not resolve: a False Resolved carries the first of its links'.
UNRESOLVED = (
    SERVICE_NOT_FOUND,
    PORT_NOT_FOUND,
    CROSS_NAMESPACE_FORBIDDEN,
    SECRETS_DISABLED,
    SECRET_NOT_SHARED,
    SECRET_KEY_NOT_FOUND,
)

# Each condition type and the reasons it carries, in the order the status lists them. A False Ready
# carries the reason of the first condition that fails. docs/reference/servicelink-fields.md is
# generated from these two tables, and test_conditions.py keeps every reason above in one of them.
REASONS: dict[str, tuple[str, ...]] = {
    READY: (RECONCILED, INVALID_SPEC),
    RESOLVED_TYPE: (ALL_SERVICES_FOUND, *UNRESOLVED),
    SYNCED: (
        CONFIGMAP_UP_TO_DATE,
        KEY_CONFLICT,
        CONFIGMAP_TOO_LARGE,
        WRITE_FAILED,
        CONFIGMAP_NOT_SHARED,
        SECRET_NOT_WRITABLE,
    ),
    ROLLED_OUT: (
        WORKLOADS_UPDATED,
        NO_CHANGE,
        ROLLOUT_DISABLED,
        ROLLOUT_FAILED,
        WORKLOAD_NOT_OPTED_IN,
        ROLLOUT_IN_PROGRESS,
        ROLLOUT_STALLED,
        WAITING_FOR_ENDPOINTS,
        COOLING_DOWN,
        OUTSIDE_WINDOW,
        WAITING_FOR_ROLLOUT_SLOT,
    ),
}
# A WorkloadMapping's one condition type and its reasons; docs/reference/workloadmapping-fields.md is
# generated from this table.
MAPPING_REASONS: dict[str, tuple[str, ...]] = {
    READY: (WATCHING, INVALID_SPEC, KIND_NOT_SERVED, FORBIDDEN, BUILT_IN_KIND, TEMPLATE_NOT_FOUND, WATCH_FAILED),
}
# The reasons of an entry of status.links that did not resolve or was not written. A resolved link's
# reason (RESOLVED) stays inside the operator: its entry carries none.
LINK_REASONS: tuple[str, ...] = (*UNRESOLVED, KEY_CONFLICT)
# The reasons of an entry of status.skipped. Only a workload not opted in fails RolledOut: the other two are
# what the workload's owner or the operator's installer asked for.
SKIPPED_REASONS: tuple[str, ...] = (WORKLOAD_NOT_OPTED_IN, WORKLOAD_OPTED_OUT, KIND_IGNORED)
# The reasons of an entry of status.deferred: the Service has no ready endpoint (spec.waitForEndpoints), a consumer
# was rolled less than its cooldown ago or is outside its rollout windows, or waits for a slot under
# --max-rollouts-in-flight, another
# servicelink ConfigMap a consumer reads is about to be written (one patch for both), or a patch was refused.
DEFERRED_REASONS: tuple[str, ...] = (
    WAITING_FOR_ENDPOINTS,
    COOLING_DOWN,
    OUTSIDE_WINDOW,
    WAITING_FOR_ROLLOUT_SLOT,
    WAITING_FOR_CONFIGMAPS,
    ROLLOUT_FAILED,
)


def merge_conditions(current: Sequence[Condition], desired: Sequence[Condition], *, now: str) -> list[Condition]:
    """Return ``desired`` with ``lastTransitionTime`` carried over where the status did not flip.

    A condition whose status is unchanged keeps its old transition time, so an
    unchanged reconcile yields a list equal to ``current`` and writes nothing.
    """
    before = {c.type: c for c in current}
    merged: list[Condition] = []
    for condition in desired:
        old = before.get(condition.type)
        keep = old is not None and old.status == condition.status and old.last_transition_time
        merged.append(
            condition.model_copy(update={"last_transition_time": old.last_transition_time if keep and old else now})
        )
    return merged
