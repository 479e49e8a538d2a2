"""The operator's settings: one frozen object, read from flags or the environment (pure)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class Settings:
    """Everything a user can tune; defaults suit a cluster of a few thousand Services."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    cluster_domain: str = "cluster.local"
    resync_seconds: float = 300.0  # repairs drift such as a hand-edited key
    coalesce_seconds: float = 0.3  # triggers closer together than this reconcile once (one kubectl apply)
    # ServiceLinks reconciled at once. Each mostly waits on the API server (4 calls in a
    # row for a new one). Benchmark, 1,000 new ServiceLinks on 2 cores: cold start 38.5 s
    # with 8, 30.5 s with 24 (peak RSS 196 MB); 16 with the rest of today's code, 26.5 s.
    workers: int = 16
    watch_inactivity_seconds: float = 70.0  # a watch silent this long is reopened (bookmarks come every minute)
    log_format: LogFormat = "text"
    metrics_port: int = 9090  # 0 turns the Prometheus endpoint off
    health_port: int = 8080  # 0 turns the liveness endpoint off
    leader_elect: bool = False  # replicas share a Lease; only its holder reconciles
    lease_namespace: str = "default"  # where the Lease lives (the operator's own namespace)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read ``SERVICELINK_*`` variables; an absent variable keeps the default.

        Raises ``ValueError`` naming the variable when a value cannot be parsed.
        """
        defaults = cls()

        def number(name: str, default: float) -> float:
            raw = environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number") from None
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}={raw!r} must be a finite number, not negative")
            return value

        def port(name: str, default: int) -> int:
            value = number(name, default)
            if value != int(value) or value > 65535:
                raise ValueError(f"{name}={environ[name]!r} must be a port number from 0 (off) to 65535")
            return int(value)

        log_format = environ.get("SERVICELINK_LOG_FORMAT", defaults.log_format)
        if log_format not in ("text", "json"):
            raise ValueError(f"SERVICELINK_LOG_FORMAT={log_format!r} must be 'text' or 'json'")
        cluster_domain = environ.get("SERVICELINK_CLUSTER_DOMAIN") or defaults.cluster_domain
        namespaces = tuple(n for n in environ.get("SERVICELINK_NAMESPACES", "").replace(",", " ").split() if n)
        return cls(
            namespaces=namespaces,
            cluster_domain=cluster_domain,
            resync_seconds=number("SERVICELINK_RESYNC_SECONDS", defaults.resync_seconds),
            coalesce_seconds=number("SERVICELINK_COALESCE_SECONDS", defaults.coalesce_seconds),
            workers=max(1, int(number("SERVICELINK_WORKERS", defaults.workers))),
            watch_inactivity_seconds=number("SERVICELINK_WATCH_INACTIVITY_SECONDS", defaults.watch_inactivity_seconds),
            log_format="json" if log_format == "json" else "text",
            metrics_port=port("SERVICELINK_METRICS_PORT", defaults.metrics_port),
            health_port=port("SERVICELINK_HEALTH_PORT", defaults.health_port),
            leader_elect=environ.get("SERVICELINK_LEADER_ELECT", "").lower() in ("1", "true", "yes"),
            lease_namespace=environ.get("SERVICELINK_LEASE_NAMESPACE") or environ.get("POD_NAMESPACE") or "default",
        )
