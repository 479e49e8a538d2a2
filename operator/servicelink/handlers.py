"""The kopf wiring: watches and thin handlers that keep the cache and queue reconciles (does I/O).

Start-up, relist, resync and the election live in ``runtime.py``; this module
hands them to kopf's start-up and cleanup and carries the ``Runtime`` in kopf's memo.

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
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import kopf

# kopf exports neither its Insights (what it serves) nor a way to read discovery or rescan it; these
# are stable internals since kopf 1.29, and tests/unit/test_handlers_kopf.py fails if an upgrade moves them.
from kopf._cogs.clients.scanning import scan_resources
from kopf._cogs.structs.references import Insights, Resource
from kopf._core.reactor.observation import process_discovered_resource_event

from servicelink import metrics
from servicelink.kube import instance_name
from servicelink.memory import limit_memory
from servicelink.model import (
    CORE_WORKLOAD_KINDS,
    GROUP,
    MAPPING_PLURAL,
    PLURAL,
    REPORTED_RESOURCES,
    VERSION,
    WORKLOAD_RESOURCES,
    WorkloadResource,
)
from servicelink.runtime import Runtime, start_runtime, stop_runtime
from servicelink.settings import Loaded, Settings, load_settings

log = logging.getLogger(__name__)
# kopf's default registry, where the decorators below register; run_operator hands it over explicitly.
REGISTRY = kopf.get_default_registry()


@dataclass
class Memo:
    """What kopf hands every handler as ``memo`` (``kopf.run(memo=...)``; kopf shallow-copies it per object)."""

    loaded: Loaded
    runtime: Runtime | None = None  # set once start-up has listed the cluster
    insights: Insights | None = None  # what kopf serves; None under `kopf run`
    follow: asyncio.Task[None] | None = None  # the optional kinds' discovery check, while it runs


def _runtime(memo: Memo) -> Runtime:
    assert memo.runtime is not None, "kopf starts the watches only after the start-up handler"
    return memo.runtime


# --- triggers --------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL)
async def servicelink_changed(
    *, type: str, namespace: str | None, name: str, body: kopf.Body, memo: Memo, **_: Any
) -> None:
    """A ServiceLink changed: reconcile it, and the others sharing its ConfigMap (a freed key moves)."""
    runtime = _runtime(memo)
    cache = runtime.cache
    due = cache.drop_servicelink(str(namespace), name) if type == "DELETED" else cache.put_servicelink(body)
    runtime.queue.add_all(due)


@kopf.on.event("", "v1", "services")
async def service_changed(
    *, type: str, namespace: str | None, name: str, body: kopf.Body, memo: Memo, **_: Any
) -> None:
    """A Service changed: reconcile exactly the ServiceLinks that point at it, if a part they read changed.

    A label change, or the replay of the Services listed at start, reconciles nothing.
    """
    runtime = _runtime(memo)
    cache = runtime.cache
    due = cache.drop_service(str(namespace), name) if type == "DELETED" else cache.put_service(body)
    runtime.queue.add_all(due)


@kopf.on.event("discovery.k8s.io", "v1", "endpointslices")
async def endpointslice_changed(
    *, type: str, namespace: str | None, name: str, body: kopf.Body, memo: Memo, **_: Any
) -> None:
    """Endpoints changed: reconcile the ServiceLinks of that Service (their endpoint counts), if the counts did."""
    runtime = _runtime(memo)
    cache = runtime.cache
    due = cache.drop_endpointslice(str(namespace), name) if type == "DELETED" else cache.put_endpointslice(body)
    runtime.queue.add_all(due)


def _keeps_workloads(watched: WorkloadResource) -> Callable[..., Any]:
    kind = watched.kind

    async def workload_changed(
        *, type: str, namespace: str | None, name: str, body: kopf.Body, memo: Memo, **_: Any
    ) -> None:
        runtime = _runtime(memo)
        resource = runtime.follows(kind)
        # Not followed (any more): an optional kind's watch left registered in this process by an earlier run
        # (tests), or a mapped kind whose WorkloadMapping was deleted or now names another version.
        if resource is None or resource.version != watched.version:
            return
        cache = runtime.cache
        gone = type == "DELETED"
        due = cache.drop_workload(kind, str(namespace), name) if gone else cache.put_workload(resource, body)
        runtime.queue.add_all(due)

    workload_changed.__doc__ = (
        f"A {kind} changed: keep which ConfigMaps its pods read; when a rollout a ServiceLink caused "
        "completes or stalls, reconcile that ServiceLink (a replica coming up reconciles nothing)."
    )
    return workload_changed


def watch_workloads(resources: Collection[WorkloadResource]) -> None:
    """Register the watch of each of ``resources`` not yet watched, in ``REGISTRY``.

    The core kinds are registered at import; an optional one (Argo Rollouts) by
    ``start`` when its setting enables it, before kopf starts its watches; a
    mapped one when its WorkloadMapping is followed. kopf watches a kind only
    once the API server serves it: while the CRD is missing it logs "Unresolved
    resources cannot be served"; ``follow_kinds`` makes sure it starts the watch
    once the CRD is served, and watches a kind registered after start.
    """
    # kopf has no public lookup of registered handlers; ids are ours, so the check is exact.
    registered = {handler.id for handler in REGISTRY._watching.get_all_handlers()}
    for resource in resources:
        built_in = WORKLOAD_RESOURCES.get(resource.kind) == resource
        prefix = resource.plural if built_in else f"{resource.plural}.{resource.group}.{resource.version}"
        handler_id = f"{prefix}_changed"
        if handler_id not in registered:
            kopf.on.event(resource.group, resource.version, resource.plural, id=handler_id, registry=REGISTRY)(
                _keeps_workloads(resource)
            )


watch_workloads([WORKLOAD_RESOURCES[kind] for kind in CORE_WORKLOAD_KINDS])


@kopf.on.event(GROUP, VERSION, MAPPING_PLURAL)
async def mapping_changed(*, type: str, name: str, body: kopf.Body, memo: Memo, **_: Any) -> None:
    """A WorkloadMapping changed: follow the kind it maps if it can be, and say in its status why not if not."""
    runtime = _runtime(memo)
    if type == "DELETED":
        runtime.forget_mapping(name)
        return
    await runtime.reconcile_mapping(body)  # a kind it follows is watched through runtime.on_followed


_JOB = REPORTED_RESOURCES["Job"]


@kopf.on.event(_JOB.group, _JOB.version, _JOB.plural)
async def job_changed(*, type: str, namespace: str | None, name: str, body: kopf.Body, memo: Memo, **_: Any) -> None:
    """A Job changed: keep it while it runs and reads a ConfigMap; once it finishes or goes, reconcile the
    ServiceLinks whose status.staleJobs lists it. Never written to: a Job's pod template cannot change."""
    runtime = _runtime(memo)
    cache = runtime.cache
    due = cache.drop_job(str(namespace), name) if type == "DELETED" else cache.put_job(body)
    runtime.queue.add_all(due)


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


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Memo, **_: Any) -> None:
    """List the cluster into the cache, then start the workers and the resync timer.

    kopf starts its watches only after this returns, so no reconcile runs on a
    half-listed cluster and mistakes a Service not yet seen for a missing one.
    """
    # Under `kopf run` rather than `servicelink run`, kopf's own memo: settings from the environment,
    # and no insights to follow optional kinds with. kopf's memo has only the attributes set here.
    loaded = memo.loaded if isinstance(memo, Memo) else load_settings(flags={}, environ=os.environ)
    insights = memo.insights if isinstance(memo, Memo) else None
    memo.follow = None
    config = loaded.settings
    for variable in loaded.ignored:
        log.info("ignored %s: the kubelet's link to a Service, not a setting", variable)
    configure_kopf(settings, config)
    watch_workloads([WORKLOAD_RESOURCES[kind] for kind in config.workload_kinds])
    runtime = await start_runtime(config)
    memo.runtime = runtime
    watch_workloads(list(runtime.mapped.values()))  # followed by the first list, before this hook was set
    runtime.on_followed = lambda resource: watch_workloads([resource])
    if insights is not None:
        memo.follow = asyncio.create_task(
            follow_kinds(runtime.kinds, insights=insights, settings=settings), name="servicelink-discovery"
        )
    log.info("servicelink started: %s; %d ServiceLinks", config, len(runtime.cache.servicelink_keys()))


DISCOVERY_SECONDS = 2.0  # how soon a newly served or mapped kind is watched; one discovery read per kind while unserved
# A kind still unserved after this long (its CRD not installed, or a mapping's version wrong) is looked up twice as
# late each time, up to DISCOVERY_MAX_SECONDS: a CRD never installed costs one read a minute, not one every 2 s.
DISCOVERY_PATIENCE_SECONDS = 30.0
DISCOVERY_MAX_SECONDS = 60.0


def _is_kind(resource: WorkloadResource, resources: Collection[Resource]) -> bool:
    wanted = (resource.group, resource.version, resource.plural)
    return any((r.group, r.version, r.plural) == wanted for r in resources)


def is_watched(insights: Insights, resource: WorkloadResource) -> bool:
    """Whether kopf watches the kind ``resource`` now: the API server serves it and kopf saw it served."""
    return _is_kind(resource, insights.watched_resources)


def next_lookup(unserved_for: float) -> float:
    """Return how many seconds after this lookup an unserved kind is looked up again, given how long it has been
    unserved: at every round for ``DISCOVERY_PATIENCE_SECONDS``, then as long again as it has waited so far
    (the waits double), up to ``DISCOVERY_MAX_SECONDS``."""
    if unserved_for < DISCOVERY_PATIENCE_SECONDS:
        return 0.0
    return min(unserved_for, DISCOVERY_MAX_SECONDS)


async def follow_kinds(
    kinds: Callable[[], Collection[WorkloadResource]], *, insights: Insights, settings: kopf.OperatorSettings
) -> None:
    """Until cancelled, make kopf watch each kind of ``kinds()`` (the kinds followed now) whenever it is served.

    kopf rescans discovery on each event of a CRD, but the API server may list a
    new CRD's resource only after the CRD's last event (its Established
    condition): kopf then never watches it until a restart; and a kind mapped
    after start is registered after kopf's last scan. So, level-triggered:
    every ``DISCOVERY_SECONDS``, a kind that is followed but not watched is
    looked up in its group's discovery (one read), and once served, kopf
    rescans the group exactly as on a CRD event. A watched kind costs nothing
    (a look at kopf's set); a deleted and reinstalled CRD is caught again.
    One unserved for ``DISCOVERY_PATIENCE_SECONDS`` is looked up less often
    (``next_lookup``).
    """
    await insights.ready_resources.wait()
    watched: dict[WorkloadResource, bool] = {}
    unserved_since: dict[WorkloadResource, float] = {}
    due: dict[WorkloadResource, float] = {}
    loop = asyncio.get_running_loop()
    while True:
        for resource in kinds():
            kind = resource.kind
            now = is_watched(insights, resource)
            watched.setdefault(resource, now)  # first seen: watched already, or to be reported once it is
            if now:
                unserved_since.pop(resource, None)
            elif loop.time() >= due.get(resource, 0.0):
                since = unserved_since.setdefault(resource, loop.time())
                due[resource] = loop.time() + next_lookup(loop.time() - since)
                group = resource.group
                try:
                    if _is_kind(resource, await scan_resources(groups={group}, settings=settings, logger=log)):
                        # Not before: kopf warns "Unresolved resources" on every rescan that misses it.
                        event = {"type": "MODIFIED", "object": {"spec": {"group": group}}}
                        await process_discovered_resource_event(
                            raw_event=event,  # type: ignore[arg-type]  # kopf reads only spec.group of the CRD
                            settings=settings,
                            registry=REGISTRY,
                            insights=insights,
                        )
                except Exception as error:  # the API server may be away; the next round retries
                    log.debug("could not read the discovery of %s: %s", kind, error)
                now = is_watched(insights, resource)
            if now and not watched[resource]:
                log.info("%s is now served: watching it", kind)
            elif watched[resource] and not now:
                log.warning("%s is no longer served (its CRD was deleted?): watching it again once it is", kind)
            watched[resource] = now
        await asyncio.sleep(DISCOVERY_SECONDS)


@kopf.on.probe(id="api")
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


@kopf.on.cleanup()
async def stop(memo: Memo, **_: Any) -> None:
    """Stop the resync timer and the workers; reconciles in flight are cancelled, then redone at start."""
    if memo.follow is not None:
        memo.follow.cancel()
    if memo.runtime is not None:
        await stop_runtime(memo.runtime)


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
    insights = Insights()
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
        memo=Memo(loaded=loaded, insights=insights),
        insights=insights,
        registry=REGISTRY,
        # Without an identity kopf falls back to getpass.getuser(), which fails for a uid with
        # no passwd entry, as in the image (10001). Its type is a NewType of str kopf does not export.
        identity=instance_name(),  # type: ignore[arg-type]
    )
