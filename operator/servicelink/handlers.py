"""The kopf wiring: watches, in-memory indexes, and thin handlers that queue reconciles (does I/O).

Only ``@kopf.on.event`` and ``@kopf.index`` are used, never create/update
handlers: kopf then keeps no progress or diff-base annotations on anyone's
objects, so its bookkeeping neither grows the user's ServiceLink nor churns it.
Level-triggered reconciles need no diff base: they compare the desired state
with the state that exists. kopf holds back every handler until all indexes
have finished their initial listing, so a reconcile never mistakes a
not-yet-listed Service for a missing one.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kopf

from servicelink import metrics
from servicelink.controller import Key, WorkQueue
from servicelink.kube import Kube, load_client
from servicelink.model import GROUP, PLURAL, VERSION, WORKLOAD_KINDS, Endpoints, WorkloadKind
from servicelink.reconcile import Claim, Reconciler, TransientError, World
from servicelink.resolve import ServiceKey, ServiceView
from servicelink.rollout import WorkloadView, read_configmaps
from servicelink.settings import Settings

log = logging.getLogger(__name__)
# kopf's default registry, where the decorators below register; run_operator hands it over explicitly.
REGISTRY = kopf.get_default_registry()
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_ALL_WORKLOADS = ""  # index key for "every workload of the namespace"


@dataclass(frozen=True)
class KopfWorld(World):
    """The ``World`` of reconcile, read from kopf's live indexes."""

    servicelinks: kopf.Index[Key, Mapping[str, Any]]
    links_by_service: kopf.Index[ServiceKey, Key]
    services: kopf.Index[ServiceKey, ServiceView]
    endpointslices: kopf.Index[ServiceKey, Endpoints]
    claims_index: kopf.Index[tuple[str, str], Claim]
    workload_indexes: tuple[kopf.Index[tuple[str, str], WorkloadView], ...]

    def servicelink(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return next(iter(self.servicelinks.get((namespace, name), ())), None)

    def servicelink_keys(self) -> list[Key]:
        """Every ServiceLink the operator watches."""
        return list(self.servicelinks)

    def servicelinks_of(self, service: ServiceKey) -> list[Key]:
        """The ServiceLinks pointing at ``service``."""
        return list(self.links_by_service.get(service, ()))

    def service(self, key: ServiceKey) -> ServiceView | None:
        return next(iter(self.services.get(key, ())), None)

    def endpoints(self, key: ServiceKey) -> Endpoints | None:
        slices = list(self.endpointslices.get(key, ()))
        if not slices:
            return None
        return Endpoints(ready=sum(s.ready for s in slices), total=sum(s.total for s in slices))

    def claims(self, namespace: str, configmap: str) -> list[Claim]:
        return list(self.claims_index.get((namespace, configmap), ()))

    def workloads(self, namespace: str, *, reading: str | None) -> list[WorkloadView]:
        key = (namespace, _ALL_WORKLOADS if reading is None else reading)
        return [w for index in self.workload_indexes for w in index.get(key, ())]


@dataclass
class Runtime:
    """What the operator holds while it runs; kept in kopf's memo, never in a module global."""

    settings: Settings
    queue: WorkQueue
    world: KopfWorld
    executor: ThreadPoolExecutor
    resync: asyncio.Task[None] | None = None
    indexed: bool = False  # kopf runs no handler before every index is listed: the first call says so

    def trigger(self, keys: Iterable[Key]) -> None:
        """Queue reconciles of ``keys``."""
        self.indexed = True
        self.queue.add_all(keys)


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo["servicelink"]
    return runtime


# --- indexes ---------------------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, PLURAL)
def servicelink_bodies(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, Mapping[str, Any]]:
    """Each ServiceLink as last seen, for the reconcile workers."""
    return {(str(namespace), name): copy.deepcopy(dict(body))}


def _linked_services(namespace: str, spec: Mapping[str, Any]) -> set[ServiceKey]:
    links = spec.get("links")
    if not isinstance(links, list):
        return set()
    return {
        (str(link.get("namespace") or namespace), str(link["service"]))
        for link in links
        if isinstance(link, Mapping) and link.get("service")
    }


@kopf.index(GROUP, VERSION, PLURAL)
def servicelinks_by_service(*, namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[ServiceKey, Key]:
    """ServiceLinks by each Service they point at: a Service event reconciles exactly these."""
    return {service: (str(namespace), name) for service in _linked_services(str(namespace), spec)}


@kopf.index(GROUP, VERSION, PLURAL)
def servicelink_claims(
    *, namespace: str | None, name: str, uid: str, meta: kopf.Meta, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], Claim] | None:
    """Each ServiceLink's keys by the ConfigMap they go in, to find shared and conflicting keys."""
    configmap = spec.get("configMapName")
    links = spec.get("links")
    if not isinstance(configmap, str) or not isinstance(links, list) or meta.get("deletionTimestamp"):
        return None
    keys = frozenset(str(link["key"]) for link in links if isinstance(link, Mapping) and link.get("key"))
    claim = Claim(
        namespace=str(namespace),
        name=name,
        uid=uid,
        created=str(meta.get("creationTimestamp", "")),
        configmap=configmap,
        keys=keys,
    )
    return {(str(namespace), configmap): claim}


@kopf.index("", "v1", "services")
def services_by_key(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[ServiceKey, ServiceView]:
    """Every Service, reduced to what resolution reads."""
    return {(str(namespace), name): ServiceView.from_body(body)}


@kopf.index("discovery.k8s.io", "v1", "endpointslices")
def endpointslices_by_service(
    *, namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[ServiceKey, Endpoints] | None:
    """Ready and total endpoints of each EndpointSlice, by the Service it belongs to."""
    service = labels.get(SERVICE_NAME_LABEL)
    if not service:
        return None
    endpoints = body.get("endpoints") or []
    # An absent "ready" means unknown, which EndpointSlice consumers must treat as ready.
    ready = sum(1 for e in endpoints if (e.get("conditions") or {}).get("ready") is not False)
    return {(str(namespace), service): Endpoints(ready=ready, total=len(endpoints))}


def _workload_entries(kind: WorkloadKind, namespace: str, body: kopf.Body) -> dict[tuple[str, str], WorkloadView]:
    view = WorkloadView.from_body(kind, body)
    template_spec = ((body.get("spec") or {}).get("template") or {}).get("spec") or {}
    entries = {(namespace, configmap): view for configmap in read_configmaps(template_spec)}
    entries[(namespace, _ALL_WORKLOADS)] = view
    return entries


@kopf.index("apps", "v1", "deployments")
def deployments_by_configmap(
    *, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], WorkloadView]:
    """Deployments by each ConfigMap their pods read, and by namespace."""
    return _workload_entries("Deployment", str(namespace), body)


@kopf.index("apps", "v1", "statefulsets")
def statefulsets_by_configmap(
    *, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], WorkloadView]:
    """StatefulSets by each ConfigMap their pods read, and by namespace."""
    return _workload_entries("StatefulSet", str(namespace), body)


@kopf.index("apps", "v1", "daemonsets")
def daemonsets_by_configmap(*, namespace: str | None, body: kopf.Body, **_: Any) -> dict[tuple[str, str], WorkloadView]:
    """DaemonSets by each ConfigMap their pods read, and by namespace."""
    return _workload_entries("DaemonSet", str(namespace), body)


# --- triggers --------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL)
def servicelink_changed(*, namespace: str | None, name: str, spec: kopf.Spec, memo: Any, **_: Any) -> None:
    """A ServiceLink changed: reconcile it, and the others sharing its ConfigMap (a freed key moves)."""
    runtime = _runtime(memo)
    configmap = spec.get("configMapName")
    siblings = runtime.world.claims(str(namespace), configmap) if isinstance(configmap, str) else []
    runtime.trigger([(str(namespace), name), *((cl.namespace, cl.name) for cl in siblings)])


@kopf.on.event("", "v1", "services")
def service_changed(*, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """A Service changed: reconcile exactly the ServiceLinks that point at it."""
    runtime = _runtime(memo)
    runtime.trigger(runtime.world.servicelinks_of((str(namespace), name)))


@kopf.on.event("discovery.k8s.io", "v1", "endpointslices")
def endpointslice_changed(*, namespace: str | None, labels: kopf.Labels, memo: Any, **_: Any) -> None:
    """Endpoints changed: reconcile the ServiceLinks of that Service (their endpoint counts)."""
    service = labels.get(SERVICE_NAME_LABEL)
    if service:
        runtime = _runtime(memo)
        runtime.trigger(runtime.world.servicelinks_of((str(namespace), service)))


# --- lifecycle -------------------------------------------------------------------------------------


def configure_kopf(settings: kopf.OperatorSettings, config: Settings) -> None:
    """Tune kopf for a level-triggered operator; each setting says why."""
    # Our own Events carry what users need; kopf's per-handler log Events would be noise.
    settings.posting.level = logging.WARNING
    # One replica acts at a time when peering is named; standalone otherwise.
    settings.peering.standalone = config.peering is None
    if config.peering is not None:
        settings.peering.name = config.peering
        settings.peering.clusterwide = not config.namespaces
        settings.peering.mandatory = True
    # A watch that stays open but goes silent is restarted: kopf waits this long for any
    # event or bookmark. The API server sends bookmarks about every minute.
    settings.watching.inactivity_timeout = 70.0
    settings.watching.server_timeout = 300  # an integer: the API server refuses "300.0"
    settings.watching.connect_timeout = 10.0
    settings.networking.request_timeout = 60.0


async def _resync(runtime: Runtime) -> None:
    """Reconcile every ServiceLink each period, to repair drift nobody announced."""
    while True:
        await asyncio.sleep(runtime.settings.resync_seconds)
        if runtime.indexed:
            runtime.queue.add_all(runtime.world.servicelink_keys())


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **indexes: Any) -> None:
    """Build the reconciler over kopf's indexes and start the workers and the resync timer."""
    config: Settings = memo.get("settings") or Settings.from_env(os.environ)
    configure_kopf(settings, config)
    world = KopfWorld(
        servicelinks=indexes["servicelink_bodies"],
        links_by_service=indexes["servicelinks_by_service"],
        services=indexes["services_by_key"],
        endpointslices=indexes["endpointslices_by_service"],
        claims_index=indexes["servicelink_claims"],
        workload_indexes=tuple(indexes[f"{kind.lower()}s_by_configmap"] for kind in WORKLOAD_KINDS),
    )
    executor = ThreadPoolExecutor(config.workers + 2, thread_name_prefix="servicelink-api")
    reconciler = Reconciler(
        kube=Kube(load_client()),
        world=world,
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
    runtime = Runtime(settings=config, queue=queue, world=world, executor=executor)
    memo["servicelink"] = runtime
    queue.start()
    runtime.resync = asyncio.create_task(_resync(runtime), name="servicelink-resync")
    log.info("servicelink started: %s", config)


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    """Stop the resync timer and the workers; reconciles in flight are cancelled, then redone at start."""
    runtime: Runtime | None = memo.get("servicelink")
    if runtime is None:
        return
    if runtime.resync is not None:
        runtime.resync.cancel()
    await runtime.queue.stop()
    runtime.executor.shutdown(wait=False, cancel_futures=True)


def run_operator(settings: Settings, *, verbose: bool = False) -> None:
    """Run the operator in this thread until SIGINT or SIGTERM (``servicelink run``)."""
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
        standalone=settings.peering is None,
        peering_name=settings.peering,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
        memo=kopf.Memo(settings=settings),
        registry=REGISTRY,
    )
