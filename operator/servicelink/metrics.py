"""Prometheus metrics of the operator, served by ``servicelink run`` (the server does I/O).

Every metric is a module-level object here, its help text the one a user reads in /metrics and in
docs/reference/metrics.md (generated from this module by ``python -m servicelink.reference``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Histogram, start_http_server

from servicelink.workqueue import TRIGGERED_AT

RECONCILES = Counter("servicelink_reconciles_total", "ServiceLink reconciles, by result (ok or error)", ["result"])
RECONCILE_SECONDS = Histogram(
    "servicelink_reconcile_duration_seconds",
    "Time one reconcile takes",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS = Counter(
    "servicelink_errors_total",
    "Failed reconciles, by reason (the exception type); each is retried with backoff",
    ["reason"],
)
VALUES_CHANGED = Counter("servicelink_values_changed_total", "ConfigMap values written with a new value")
ROLLOUTS = Counter(
    "servicelink_rollouts_total",
    "Pod templates patched to roll a workload, by kind (Deployment, StatefulSet, DaemonSet, CronJob, Rollout)",
    ["kind"],
)
PROPAGATION = Histogram(
    "servicelink_propagation_seconds",
    "From the first Service or ServiceLink change observed to the ConfigMap written (stage=configmap) "
    "and to each consumer's pod template patched (stage=workload)",
    ["stage"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30),
)


def _observe_propagation(stage: str) -> None:
    triggered_at = TRIGGERED_AT.get(None)
    if triggered_at is not None:
        PROPAGATION.labels(stage=stage).observe(time.monotonic() - triggered_at)


def record_values_changed(count: int) -> None:
    """Count values written with a new value, and how long they took to reach the ConfigMap."""
    VALUES_CHANGED.inc(count)
    _observe_propagation("configmap")


def record_rollout(kind: str) -> None:
    """Count one workload rolled, and how long the change took to reach its pod template."""
    ROLLOUTS.labels(kind=kind).inc()
    _observe_propagation("workload")


def timed(
    reconcile: Callable[[str, str], Awaitable[float | None]],
) -> Callable[[tuple[str, str]], Awaitable[float | None]]:
    """Wrap ``reconcile(namespace, name)`` as a queue callback that counts and times each run."""

    @functools.wraps(reconcile)
    async def run(key: tuple[str, str]) -> float | None:
        started = time.perf_counter()
        try:
            again_in = await reconcile(*key)
        except Exception as error:
            RECONCILES.labels(result="error").inc()
            ERRORS.labels(reason=type(error).__name__).inc()
            raise
        finally:
            RECONCILE_SECONDS.observe(time.perf_counter() - started)
        RECONCILES.labels(result="ok").inc()
        return again_in

    return run


def serve(port: int) -> None:
    """Serve ``/metrics`` on ``port`` (all interfaces) from a daemon thread."""
    start_http_server(port)
