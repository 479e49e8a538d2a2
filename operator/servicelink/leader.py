"""Leader election over a coordination.k8s.io Lease: the decision, without the I/O (pure).

Two replicas both watch and keep their caches warm; only the holder of the
Lease reconciles. A holder renews it every ``renew`` seconds; a replica takes
it over once it has gone ``duration`` seconds without renewal.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

LEASE_NAME = "servicelink"


@dataclass(frozen=True)
class Decision:
    """What to do with the Lease: write ``body`` (create or replace it), or nothing."""

    action: Literal["create", "replace", "none"]
    leading: bool  # whether this replica leads once the write (if any) succeeds
    body: dict[str, Any] | None = None


def _format(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(value, pattern).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
    return None


def decide(
    lease: Mapping[str, Any] | None, *, identity: str, namespace: str, now: datetime.datetime, duration: int
) -> Decision:
    """Return how ``identity`` acquires, renews or waits for the Lease as it is at ``now``."""
    spec: dict[str, Any] = {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration,
        "renewTime": _format(now),
    }
    if lease is None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": namespace},
            "spec": {**spec, "acquireTime": _format(now), "leaseTransitions": 0},
        }
        return Decision("create", True, body)
    current = lease.get("spec") or {}
    holder = current.get("holderIdentity")
    renewed = _parse(current.get("renewTime")) or _parse(current.get("acquireTime"))
    lapsed = renewed is None or now - renewed > datetime.timedelta(
        seconds=int(current.get("leaseDurationSeconds") or duration)
    )
    if holder != identity and not lapsed:
        return Decision("none", False)
    metadata = lease.get("metadata") or {}
    new_spec = dict(current) | spec
    if holder != identity:
        new_spec["acquireTime"] = _format(now)
        new_spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": LEASE_NAME,
            "namespace": metadata.get("namespace", namespace),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "spec": new_spec,
    }
    return Decision("replace", True, body)
