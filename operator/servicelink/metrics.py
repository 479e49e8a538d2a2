"""Prometheus metrics of the operator, served by ``servicelink run`` (the server does I/O)."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Histogram, start_http_server

RECONCILES = Counter("servicelink_reconciles_total", "ServiceLink reconciles, by result", ["result"])
RECONCILE_SECONDS = Histogram(
    "servicelink_reconcile_duration_seconds",
    "Time one reconcile takes",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS = Counter("servicelink_errors_total", "Failed reconciles, by reason", ["reason"])
VALUES_CHANGED = Counter("servicelink_values_changed_total", "ConfigMap values written with a new value")
ROLLOUTS = Counter("servicelink_rollouts_total", "Pod templates patched to roll a workload, by kind", ["kind"])


def timed(reconcile: Callable[[str, str], Awaitable[None]]) -> Callable[[tuple[str, str]], Awaitable[None]]:
    """Wrap ``reconcile(namespace, name)`` as a queue callback that counts and times each run."""

    @functools.wraps(reconcile)
    async def run(key: tuple[str, str]) -> None:
        started = time.perf_counter()
        try:
            await reconcile(*key)
        except Exception as error:
            RECONCILES.labels(result="error").inc()
            ERRORS.labels(reason=type(error).__name__).inc()
            raise
        finally:
            RECONCILE_SECONDS.observe(time.perf_counter() - started)
        RECONCILES.labels(result="ok").inc()

    return run


def serve(port: int) -> None:
    """Serve ``/metrics`` on ``port`` (all interfaces) from a daemon thread."""
    start_http_server(port)
