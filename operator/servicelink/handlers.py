"""The kopf wiring: watches and thin handlers that keep the cache and queue reconciles (does I/O).

Only ``@kopf.on.event`` handlers are used, never create/update handlers: kopf
then keeps no progress or diff-base annotations on anyone's objects, so its
bookkeeping neither grows the user's ServiceLink nor churns it. Level-triggered
reconciles need no diff base: they compare the desired state with the state
that exists. The handlers are ``async`` so the cache is only touched from the
event loop's thread.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kopf

from servicelink import metrics
from servicelink.cache import Cache, WorkloadKey, needs_reconcile
from servicelink.controller import WorkQueue
from servicelink.kube import ApiError, Conflict, Kube, TransportError, instance_name, load_client
from servicelink.leader import LEASE_NAME, decide
from servicelink.model import GROUP, PLURAL, VERSION, WORKLOAD_KINDS, ListedKind, WorkloadKind
from servicelink.reconcile import Reconciler, TransientError
from servicelink.rollout import rollout_settled
from servicelink.settings import Loaded, Settings, load_settings

log = logging.getLogger(__name__)
# kopf's default registry, where the decorators below register; run_operator hands it over explicitly.
REGISTRY = kopf.get_default_registry()


@dataclass
class Runtime:
    """What the operator holds while it runs; kept in kopf's memo, never in a module global."""

    settings: Settings
    queue: WorkQueue
    cache: Cache
    reconciler: Reconciler
    kube: Kube
    executor: ThreadPoolExecutor
    resync: asyncio.Task[None] | None = None
    election: asyncio.Task[None] | None = None

    async def relist(self) -> None:
        """Rebuild the cache from one fresh list of every watched kind."""
        namespaces: list[str | None] = list(self.settings.namespaces) or [None]

        async def fetch(kind: ListedKind) -> list[dict[str, Any]]:
            loop = asyncio.get_running_loop()
            calls = [functools.partial(self.kube.list_objects, kind=kind, namespace=ns) for ns in namespaces]
            pages = await asyncio.gather(*(loop.run_in_executor(self.executor, call) for call in calls))
            return [item for page in pages for item in page]

        since = self.cache.mark()
        servicelinks, services, slices, *workloads = await asyncio.gather(
            fetch("ServiceLink"), fetch("Service"), fetch("EndpointSlice"), *(fetch(k) for k in WORKLOAD_KINDS)
        )
        self.cache.replace_servicelinks(servicelinks, since=since)
        self.cache.replace_services(services, since=since)
        self.cache.replace_endpointslices(slices, since=since)
        for kind, bodies in zip(WORKLOAD_KINDS, workloads, strict=True):
            self.cache.replace_workloads(kind, bodies, since=since)


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo["servicelink"]
    return runtime


# --- triggers --------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL)
async def servicelink_changed(
    *, type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any
) -> None:
    """A ServiceLink changed: reconcile it, and the others sharing its ConfigMap (a freed key moves)."""
    runtime = _runtime(memo)
    ns = str(namespace)
    before = runtime.cache.servicelink(ns, name)
    if type == "DELETED":
        runtime.cache.drop_servicelink(ns, name)
    else:
        runtime.cache.put_servicelink(body)
        if not needs_reconcile(before, body):
            return
    configmap = (body.get("spec") or {}).get("configMapName")
    siblings = runtime.cache.claims(ns, configmap) if isinstance(configmap, str) else []
    runtime.queue.add_all([(ns, name), *((cl.namespace, cl.name) for cl in siblings)])


@kopf.on.event("", "v1", "services")
async def service_changed(*, type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    """A Service changed: reconcile exactly the ServiceLinks that point at it, if a part they read changed.

    A label change, or the replay of the Services listed at start, reconciles nothing.
    """
    runtime = _runtime(memo)
    key = (str(namespace), name)
    changed = runtime.cache.drop_service(*key) if type == "DELETED" else runtime.cache.put_service(body)
    if changed:
        runtime.queue.add_all(runtime.cache.servicelinks_of(key))


@kopf.on.event("discovery.k8s.io", "v1", "endpointslices")
async def endpointslice_changed(
    *, type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any
) -> None:
    """Endpoints changed: reconcile the ServiceLinks of that Service (their endpoint counts), if the counts did."""
    runtime = _runtime(memo)
    if type == "DELETED":
        service = runtime.cache.drop_endpointslice(str(namespace), name)
    else:
        service = runtime.cache.put_endpointslice(body)
    if service is not None:
        runtime.queue.add_all(runtime.cache.servicelinks_of(service))


def _keeps_workloads(kind: WorkloadKind) -> Callable[..., Any]:
    async def workload_changed(
        *, type: str, namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any
    ) -> None:
        runtime = _runtime(memo)
        key: WorkloadKey = (kind, str(namespace), name)
        if type == "DELETED":
            runtime.cache.drop_workload(*key)
            return
        before = runtime.cache.workload(*key)
        runtime.cache.put_workload(kind, body)
        after = runtime.cache.workload(*key)
        if after is not None and rollout_settled(before.progress if before else None, after.progress):
            runtime.queue.add_all(runtime.cache.servicelinks_rolling(key))

    workload_changed.__doc__ = (
        f"A {kind} changed: keep which ConfigMaps its pods read; when a rollout a ServiceLink caused "
        "completes or stalls, reconcile that ServiceLink (a replica coming up reconciles nothing)."
    )
    return workload_changed


for _kind, _plural in zip(WORKLOAD_KINDS, ("deployments", "statefulsets", "daemonsets"), strict=True):
    kopf.on.event("apps", "v1", _plural, id=f"{_plural}_changed")(_keeps_workloads(_kind))


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
    # kopf keeps a task per object for this long after its last event. The initial listing
    # replays every Service and workload at once; at 5 s (the default) they all live together.
    settings.queueing.idle_timeout = 1.0
    # Operator CPU per Service change (3 watch events each: the Service, then our own
    # Deployment patch and status patch), 60 changes at window 0: 12.2 ms with kopf's
    # diff base, 9.8 ms without.
    settings.persistence.diffbase_storage = _NoDiffBase()


async def _resync(runtime: Runtime) -> None:
    """Each period, relist and reconcile every ServiceLink, to repair drift nobody announced."""
    while True:
        await asyncio.sleep(runtime.settings.resync_seconds)
        try:
            await runtime.relist()
        except Exception as error:  # the API server may be away; the watches keep the cache meanwhile
            log.warning("resync could not list the cluster: %s", error)
        await runtime.queue.add_gradually(runtime.cache.servicelink_keys())


LEASE_SECONDS = 15  # a Lease not renewed for this long may be taken over
RENEW_SECONDS = 5  # the holder renews this often; others retry this often


async def _elect(runtime: Runtime, identity: str) -> None:
    """Hold the Lease while we can; reconcile only while holding it.

    A replica stops acting the moment a renewal fails, well before its Lease
    lapses and another replica may take over, so two never act at once. On
    taking over, it relists and reconciles everything: a change made while no
    one led is found by comparing, not replayed.
    """
    loop = asyncio.get_running_loop()
    leading = False
    namespace = runtime.settings.lease_namespace
    while True:
        try:
            lease = await loop.run_in_executor(
                runtime.executor, functools.partial(runtime.kube.get_lease, namespace=namespace, name=LEASE_NAME)
            )
            decision = decide(
                lease,
                identity=identity,
                namespace=namespace,
                now=datetime.datetime.now(datetime.UTC),
                duration=LEASE_SECONDS,
            )
            if decision.body is not None:
                write = functools.partial(
                    runtime.kube.write_lease, body=decision.body, create=decision.action == "create"
                )
                await loop.run_in_executor(runtime.executor, write)
            now_leading = decision.leading
        except (Conflict, ApiError, *TransportError) as error:
            if leading:
                log.warning("could not renew the Lease %s/%s: %s", namespace, LEASE_NAME, error)
            now_leading = False
        if now_leading and not leading:
            log.info("leading as %s (Lease %s/%s)", identity, namespace, LEASE_NAME)
            await runtime.relist()
            runtime.queue.active.set()
            runtime.queue.add_all(runtime.cache.servicelink_keys())
        elif leading and not now_leading:
            log.warning("no longer leading: another replica may act")
            runtime.queue.active.clear()
            runtime.reconciler.stand_down()
        leading = now_leading
        await asyncio.sleep(RENEW_SECONDS)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """List the cluster into the cache, then start the workers and the resync timer.

    kopf starts its watches only after this returns, so no reconcile runs on a
    half-listed cluster and mistakes a Service not yet seen for a missing one.
    """
    loaded: Loaded = memo.get("loaded") or load_settings(flags={}, environ=os.environ)
    config = loaded.settings
    for variable in loaded.ignored:
        log.info("ignored %s: the kubelet's link to a Service, not a setting", variable)
    configure_kopf(settings, config)
    executor = ThreadPoolExecutor(config.workers + 2, thread_name_prefix="servicelink-api")
    kube = Kube(load_client())
    cache = Cache()
    reconciler = Reconciler(
        kube=kube,
        world=cache,
        settings=config,
        executor=executor,
        on_values_changed=metrics.record_values_changed,
        on_rollout=metrics.record_rollout,
    )
    queue = WorkQueue(
        reconcile=metrics.timed(reconciler.reconcile),
        window=config.coalesce_seconds,
        workers=config.workers,
        is_transient=lambda error: isinstance(error, TransientError),
    )
    reconciler.is_waiting = queue.is_waiting
    runtime = Runtime(settings=config, queue=queue, cache=cache, reconciler=reconciler, kube=kube, executor=executor)
    await runtime.relist()
    memo["servicelink"] = runtime
    queue.start(active=not config.leader_elect)
    queue.add_all(cache.servicelink_keys())
    runtime.resync = asyncio.create_task(_resync(runtime), name="servicelink-resync")
    if config.leader_elect:
        identity = f"{instance_name()}-{os.getpid()}"
        runtime.election = asyncio.create_task(_elect(runtime, identity), name="servicelink-election")
    log.info("servicelink started: %s; %d ServiceLinks", config, len(cache.servicelink_keys()))


@kopf.on.probe(id="api")
async def api_reachable(memo: Any, **_: Any) -> str:
    """Liveness: fail while the API server does not answer, so /healthz reports an outage."""
    runtime: Runtime | None = memo.get("servicelink")
    if runtime is None:
        return "starting"
    try:
        await asyncio.get_running_loop().run_in_executor(runtime.executor, runtime.kube.check_api)
    except Exception as error:
        raise kopf.PermanentError(f"API server unreachable: {error}") from error
    return "ok"


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    """Stop the resync timer and the workers; reconciles in flight are cancelled, then redone at start."""
    runtime: Runtime | None = memo.get("servicelink")
    if runtime is None:
        return
    for task in (runtime.resync, runtime.election):
        if task is not None:
            task.cancel()
    await runtime.queue.stop()
    runtime.executor.shutdown(wait=False, cancel_futures=True)


def run_operator(loaded: Loaded, *, verbose: bool = False) -> None:
    """Run the operator in this thread until SIGINT or SIGTERM (``servicelink run``)."""
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
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
        memo=kopf.Memo(loaded=loaded),
        registry=REGISTRY,
        # Without an identity kopf falls back to getpass.getuser(), which fails for a uid with
        # no passwd entry, as in the image (10001). Its type is a NewType of str kopf does not export.
        identity=instance_name(),  # type: ignore[arg-type]
    )
