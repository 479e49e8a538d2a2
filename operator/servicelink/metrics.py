"""Prometheus metrics of the operator, served by ``servicelink run`` (the server does I/O).

Every metric is a module-level object here, its help text the one a user reads in /metrics and in
docs/reference/metrics.md (generated from this module by ``python -m servicelink.reference``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
ROLLOUTS_IN_FLIGHT = Gauge(
    "servicelink_rollouts_in_flight",
    "With --max-rollouts-in-flight: rollouts servicelink started that hold a slot, neither complete, stalled nor "
    "timed out (--rollout-timeout-seconds)",
)
ROLLOUTS_WAITING = Gauge(
    "servicelink_rollouts_waiting",
    "With --max-rollouts-in-flight: workloads whose rollout is due but waits for a slot (WaitingForRolloutSlot)",
)

ALERTS = Counter(
    "servicelink_alerts_total",
    "Alerts for the receiver in --alert-secret, by result: sent; retried (a try failed, another follows with "
    "backoff); failed (every try failed, the alert is given up); dropped (the queue was full, the oldest went)",
    ["result"],
)
# Counted at each scrape from what the watch holds (serve_ready_counts), so the gauge never lags the watch.
SERVICELINKS = GaugeMetricFamily(
    "servicelink_servicelinks",
    "ServiceLinks the operator watches, by the status of their Ready condition (True, False, or Unknown before "
    "the first status) and its reason",
    labels=["ready", "reason"],
)


class _ReadyCollector(Collector):
    """The gauge ``SERVICELINKS``, its samples read from ``counts()`` at each scrape."""

    def __init__(self, counts: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(SERVICELINKS.name, SERVICELINKS.documentation, labels=["ready", "reason"])
        for (ready, reason), count in sorted(self._counts().items()):
            family.add_metric([ready, reason], count)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield SERVICELINKS


def serve_ready_counts(counts: Callable[[], Mapping[tuple[str, str], int]]) -> Callable[[], None]:
    """Serve ``counts()`` (ServiceLinks by Ready status and reason) as a gauge; return what unregisters it."""
    collector = _ReadyCollector(counts)
    REGISTRY.register(collector)
    return lambda: REGISTRY.unregister(collector)


def record_alert(result: str) -> None:
    """Count one alert's outcome: sent, retried, failed or dropped."""
    ALERTS.labels(result=result).inc()


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


def record_pacing(in_flight: int, waiting: int) -> None:
    """Set the rollouts holding a slot and the workloads waiting for one, as last counted."""
    ROLLOUTS_IN_FLIGHT.set(in_flight)
    ROLLOUTS_WAITING.set(waiting)


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
