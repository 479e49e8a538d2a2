"""The kopf wiring: the ServiceLink and WorkloadMapping watches, probes and the operator's life (does I/O).

kopf watches only those two kinds. What the operator merely reads (Services,
EndpointSlices, workloads, Jobs, shared Secrets) is kept by its own informers
(``informer.py``), started by ``runtime.py`` with start-up, relist, resync and
the election; this module hands them to kopf's start-up and cleanup and
carries the ``Runtime`` in kopf's memo. It reaches into no private kopf module.

Only ``@kopf.on.event`` handlers are used, never create/update handlers: kopf
then keeps no progress or diff-base annotations on anyone's objects, so its
bookkeeping neither grows the user's ServiceLink nor churns it. Level-triggered
reconciles need no diff base: they compare the desired state with the state
that exists. The handlers are ``async`` so the cache is only touched from the
event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

import kopf

from servicelink import metrics
from servicelink.kube import instance_name
from servicelink.memory import limit_memory
from servicelink.model import (
    GROUP,
    MAPPING_PLURAL,
    PLURAL,
    VERSION,
)
from servicelink.runtime import Runtime, start_runtime, stop_runtime
from servicelink.settings import Loaded, Settings, load_settings

log = logging.getLogger(__name__)


@dataclass
class Memo:
    """What kopf hands every handler as ``memo`` (``kopf.run(memo=...)``; kopf shallow-copies it per object)."""

    loaded: Loaded
    runtime: Runtime | None = None  # set once start-up has listed the cluster


def _runtime(memo: Memo) -> Runtime:
    assert memo.runtime is not None, "kopf starts the watches only after the start-up handler"
    return memo.runtime


# --- triggers --------------------------------------------------------------------------------------


async def servicelink_changed(
    *, type: str, namespace: str | None, name: str, body: kopf.Body, memo: Memo, **_: Any
) -> None:
    """A ServiceLink changed: reconcile it, and the others sharing its ConfigMap (a freed key moves)."""
    runtime = _runtime(memo)
    if not runtime.serves(str(namespace)):
        return  # an ignored or unselected namespace: left alone, its status included
    cache = runtime.cache
    due = cache.drop_servicelink(str(namespace), name) if type == "DELETED" else cache.put_servicelink(body)
    runtime.queue.add_all(due)


async def mapping_changed(*, type: str, name: str, body: kopf.Body, memo: Memo, **_: Any) -> None:
    """A WorkloadMapping changed: follow the kind it maps if it can be, and say in its status why not if not."""
    runtime = _runtime(memo)
    if type == "DELETED":
        runtime.mapping_deleted(name)
    else:
        runtime.mapping_changed(body)  # checked by the mappings' queue, retried with backoff if it fails


# --- lifecycle -------------------------------------------------------------------------------------


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: only change handlers read it, and servicelink has none.

    kopf builds one for every watch event otherwise, two deep copies of the
    object, though only ``@kopf.on.event`` handlers run here.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure_kopf(settings: kopf.OperatorSettings, config: Settings) -> None:
    """Tune kopf for a level-triggered operator; each setting says why."""
    # Our own Events carry what users need; kopf's per-handler log Events would be noise.
    settings.posting.level = logging.WARNING
    # Replicas coordinate through servicelink's own Lease (--leader-elect), not kopf's
    # peering, which needs CRDs of its own; every replica keeps watching either way.
    settings.peering.standalone = True
    # A watch that stays open but goes silent is restarted: kopf waits this long for any
    # event or bookmark. The API server sends bookmarks about every minute.
    settings.watching.inactivity_timeout = config.watch_inactivity_seconds
    # kopf lists namespaces to match --namespace patterns and watches CRDs to notice ones installed later, both
    # cluster-wide. Our namespaces are exact names, and where the operator reads nothing else cluster-scoped
    # (the chart's rbac.namespaced) it has no grant for either: kopf would warn twice and fall back to this.
    settings.scanning.disabled = not config.reads_cluster_scope
    settings.watching.server_timeout = 300  # an integer: the API server refuses "300.0"
    settings.watching.connect_timeout = 10.0
    settings.networking.request_timeout = 60.0
    # kopf keeps a task per object for this long after its last event, holding that event's
    # body. The initial listing replays every Service and workload at once; at 5 s (the
    # default) they all live together. 0.1 s against 1 s: 2-4 MB less peak RSS (docs/explanation/
    # performance.md); a later event starts a new task, which costs microseconds.
    settings.queueing.idle_timeout = 0.1
    # kopf lists each watched kind and namespace in one response by default, and all of them
    # at once; in pages of 50, fewer bodies are decoded and waiting at a time: 2 MB less.
    settings.watching.chunk_size = 50
    # Operator CPU per Service change (3 watch events each: the Service, then our own
    # Deployment patch and status patch), 60 changes at window 0: 12.2 ms with kopf's
    # diff base, 9.8 ms without.
    settings.persistence.diffbase_storage = _NoDiffBase()


async def start(settings: kopf.OperatorSettings, memo: Memo, **_: Any) -> None:
    """List the cluster into the cache, then start the workers and the resync timer.

    kopf starts its watches only after this returns, so no reconcile runs on a
    half-listed cluster and mistakes a Service not yet seen for a missing one.
    """
    # Under `kopf run` rather than `servicelink run`, kopf's own memo: settings from the environment,
    # and no insights to follow optional kinds with. kopf's memo has only the attributes set here.
    loaded = memo.loaded if isinstance(memo, Memo) else load_settings(flags={}, environ=os.environ)
    config = loaded.settings
    for variable in loaded.ignored:
        log.info("ignored %s: the kubelet's link to a Service, not a setting", variable)
    configure_kopf(settings, config)
    runtime = await start_runtime(config)
    memo.runtime = runtime
    log.info("servicelink started: %s; %d ServiceLinks", config, len(runtime.cache.servicelink_keys()))


async def api_reachable(memo: Memo, **_: Any) -> str:
    """Liveness: fail while the API server does not answer, so /healthz reports an outage."""
    runtime = memo.runtime
    if runtime is None:
        return "starting"
    try:
        await asyncio.get_running_loop().run_in_executor(runtime.executor, runtime.kube.check_api)
    except Exception as error:
        raise kopf.PermanentError(f"API server unreachable: {error}") from error
    return "ok"


async def stop(memo: Memo, **_: Any) -> None:
    """Stop the resync timer and the workers; reconciles in flight are cancelled, then redone at start."""
    if memo.runtime is not None:
        await stop_runtime(memo.runtime)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> kopf.OperatorRegistry:
    """Register the handlers ``settings`` call for in ``registry``; return it.

    The WorkloadMappings are watched only when followed: they are cluster-scoped, and kopf would
    watch them cluster-wide even when the operator watches named namespaces.
    """
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(servicelink_changed)
    if settings.workload_mappings:
        kopf.on.event(GROUP, VERSION, MAPPING_PLURAL, registry=registry)(mapping_changed)
    kopf.on.startup(registry=registry)(start)
    kopf.on.probe(id="api", registry=registry)(api_reachable)
    kopf.on.cleanup(registry=registry)(stop)
    return registry


# kopf's default registry with the default settings' handlers, for `kopf run -m servicelink.handlers` (the tests'
# in-process operator); `servicelink run` registers in a registry of its own, for the settings it was given.
REGISTRY = register(kopf.get_default_registry(), Settings())


def run_operator(loaded: Loaded, *, verbose: bool = False) -> None:
    """Run the operator in this thread until SIGINT or SIGTERM (``servicelink run``)."""
    limit_memory()  # before kopf, the metrics server and the workers start their threads
    settings = loaded.settings
    kopf.configure(
        verbose=verbose, log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    )
    if not verbose:
        # One line per watch event ("Handler ... succeeded") and per probe drowns what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    # A registry of its own, with the handlers these settings call for. kopf's default one logs in with the
    # kubernetes client's configuration, as kube.py does; a new one has no login until given it.
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    register(registry, settings)
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
        memo=Memo(loaded=loaded),
        registry=registry,
        # Without an identity kopf falls back to getpass.getuser(), which fails for a uid with
        # no passwd entry, as in the image (10001). Its type is a NewType of str kopf does not export.
        identity=instance_name(),  # type: ignore[arg-type]
    )
