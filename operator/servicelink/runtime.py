"""The operator's life cycle outside kopf: start-up, relist, resync and the Lease election (does I/O).

``handlers.py`` wires these to kopf's start-up and cleanup; nothing here imports kopf.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from servicelink import metrics
from servicelink.alerts import render_payload
from servicelink.cache import Cache
from servicelink.conditions import FORBIDDEN, KIND_NOT_SERVED, WATCH_FAILED
from servicelink.informer import Informer, Keep
from servicelink.kube import (
    NAMESPACES,
    ApiError,
    Conflict,
    Kube,
    Source,
    TransportError,
    instance_name,
    listed_source,
    load_client,
    mapping_reference,
    shared_secrets_source,
    utc_now,
    workload_source,
)
from servicelink.leader import LEASE_NAME, decide
from servicelink.mapping import (
    MAPPED_VERBS,
    Followed,
    Served,
    parse_or_refuse,
    plan_followed,
    plan_mapping,
    plan_mapping_event,
    plan_mapping_status,
    plan_watch_failed,
)
from servicelink.model import WORKLOAD_RESOURCES, Condition, ListedKind, WorkloadResource
from servicelink.reconcile import Reconciler, TransientError
from servicelink.scope import matches
from servicelink.settings import Settings
from servicelink.sink import AlertSink, SendFailed
from servicelink.views import ObjectKey
from servicelink.workqueue import WorkQueue

log = logging.getLogger(__name__)
# A mapping whose kind is not served, not granted or not watched yet is checked again after this many seconds,
# then twice as late each time, up to the cap: one discovery read (and three access reviews once served) per check.
MAPPING_RECHECK_FIRST = 2.0
MAPPING_RECHECK_MAX = 60.0
RECHECKED_REASONS = frozenset({KIND_NOT_SERVED, FORBIDDEN, WATCH_FAILED})
MAPPING = "WorkloadMapping"  # the first part of a mapping's key in its work queue (they are cluster-scoped)
OwnerVersion = tuple[int, tuple[tuple[str, str], ...]]


def _owner_version(metadata: Mapping[str, Any]) -> OwnerVersion:
    """What a mapping's owner changes, not the operator: its spec's generation, and its annotations."""
    annotations = metadata.get("annotations") or {}
    return int(metadata.get("generation") or 0), tuple(sorted((str(k), str(v)) for k, v in annotations.items()))


_T = TypeVar("_T")


def recheck_delay(before: float | None) -> float:
    """Seconds until a mapping not followed yet is checked again, given the wait before (None: its first)."""
    return MAPPING_RECHECK_FIRST if before is None else min(before * 2, MAPPING_RECHECK_MAX)


LEASE_SECONDS = 15  # a Lease not renewed for this long may be taken over
RENEW_SECONDS = 5  # the holder renews this often; others retry this often


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
    # The kinds WorkloadMappings map and the operator follows, by mapping name (<plural>.<group>).
    mapped: dict[str, WorkloadResource] = field(default_factory=dict)
    # The WorkloadMappings as last seen, with the status last written, by name.
    mappings: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    # How long a mapping not followed yet waited last before its check again (``_recheck_in``), by name.
    recheck_delays: dict[str, float] = field(default_factory=dict)
    # What its owner last changed of each mapping when its last check began (``_owner_version``), by name.
    checked_versions: dict[str, OwnerVersion] = field(default_factory=dict)
    # Mappings are reconciled by a queue of their own, one at a time, on every replica (each follows the kinds
    # mapped): a failed check is retried with backoff, and one not followed yet is checked again later.
    mapping_queue: WorkQueue = field(init=False)
    # What the operator reads, each kind in each watched namespace kept by list and watch (informer.py).
    informers: dict[Source, Informer] = field(default_factory=dict)
    sink: AlertSink | None = None  # with --alert-secret
    # With --namespace-selector: the namespaces whose labels match it, as the Namespace informer last saw them.
    selected: set[str] = field(default_factory=set)
    started: bool = False  # the namespaces were listed: one selected from now on lists its ServiceLinks
    selecting: set[asyncio.Task[None]] = field(default_factory=set)  # those lists, held until done
    unserve_ready: Callable[[], None] = lambda: None  # takes the gauge of ServiceLinks by Ready off /metrics

    def __post_init__(self) -> None:
        self.mapping_queue = WorkQueue(
            reconcile=self._reconcile_mapping_key,
            window=0.0,
            workers=1,
            is_transient=lambda error: isinstance(error, (ApiError, *TransportError)),
        )

    def mapping_changed(self, body: Mapping[str, Any]) -> None:
        """A WorkloadMapping was created or changed, or kopf saw it again: keep it and check it (``check_mapping``)."""
        name = str((body.get("metadata") or {}).get("name", ""))
        self.mappings[name] = body
        self.check_mapping(name)

    def check_mapping(self, name: str) -> None:
        """Queue a check of the mapping ``name``: at once if its owner changed it since its last check (a new
        generation, or annotations: ``kubectl annotate`` asks a check now; it waits its shortest again), else unless
        a check is queued already.

        A mapping not followed yet keeps its pending recheck (``_recheck_in``): a resync, or the watch event of a
        status just written, must not cut its backoff short, or each resync would read discovery once for every
        such mapping at the same moment. A CRD installed meanwhile is found by that recheck.
        """
        key = (MAPPING, name)
        metadata = (self.mappings.get(name) or {}).get("metadata") or {}
        if self.checked_versions.get(name) != _owner_version(metadata):
            self.recheck_delays.pop(name, None)
            self.mapping_queue.add(key)
        elif not self.mapping_queue.is_queued(key):
            self.mapping_queue.add(key)

    def mapping_deleted(self, name: str) -> None:
        """A WorkloadMapping was deleted: stop following its kind (its queued check finds it gone)."""
        self.mappings.pop(name, None)
        self.recheck_delays.pop(name, None)
        self.checked_versions.pop(name, None)
        self._set_mapped(name, None)

    async def _reconcile_mapping_key(self, key: tuple[str, str]) -> float | None:
        body = self.mappings.get(key[1])
        if body is None:
            return None  # deleted since it was queued
        return await self.reconcile_mapping(body)

    async def _run(self, call: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    async def reconcile_mapping(self, body: Mapping[str, Any]) -> float | None:
        """Follow the kind a WorkloadMapping maps, if it can be; write the mapping's status if it changed.

        Following it lists its objects into the cache and watches them
        (``inform_workloads``). A mapping that changed its kind or path replaces
        what was followed under it; one that fails a check
        (``mapping.plan_mapping``) stops it being followed. Return in how many
        seconds to check it again: for a kind not served, not granted or not
        watched yet, twice as late each time (``_recheck_in``); else None.
        """
        metadata = body.get("metadata") or {}
        name, generation = str(metadata.get("name", "")), int(metadata.get("generation") or 0)
        # At the start: a check that fails is retried by the queue's backoff, which a resync leaves alone too.
        self.checked_versions[name] = _owner_version(metadata)
        spec = body.get("spec") or {}
        parsed = parse_or_refuse(name, spec, generation=generation)
        followed: WorkloadResource | None = None
        count: int | None = None
        if isinstance(parsed, Condition):
            ready = parsed
        else:
            resource = parsed
            served_kind = await self._run(
                functools.partial(
                    self.kube.served_kind, group=resource.group, version=resource.version, plural=resource.plural
                )
            )
            denied: tuple[str, ...] = ()
            if served_kind is not None:
                allowed = await asyncio.gather(
                    *(
                        self._run(
                            functools.partial(self.kube.may, group=resource.group, plural=resource.plural, verb=v)
                        )
                        for v in MAPPED_VERBS
                    )
                )
                denied = tuple(v for v, ok in zip(MAPPED_VERBS, allowed, strict=True) if not ok)
            planned = plan_mapping(resource, served=Served(served_kind, denied), generation=generation)
            if isinstance(planned, Condition):
                ready = planned
            else:
                followed = planned
        # Before informing: a kind or path that changed stops its old informers, so the new ones list it again.
        self._set_mapped(name, followed)
        if followed is not None:
            failure = await self.inform_workloads(followed)
            if failure is not None:
                ready = plan_watch_failed(followed, failure, generation=generation)
            else:
                held = self._held(followed)
                count = held.count
                ready = plan_followed(followed, str(spec.get("template", "")), followed=held, generation=generation)
        status = plan_mapping_status(
            body.get("status") or {}, ready, followed=count, generation=generation, now=utc_now()
        )
        leading = self.queue.active.is_set()  # the leader writes; the others follow quietly
        if status is not None and leading:
            await self._run(functools.partial(self.kube.patch_mapping_status, name=name, status=status))
        # Kept only once written: after a refused write the retry compares with what the API server holds, and
        # writes again. The spec as last seen (maybe newer than ``body``), with the status written.
        current = self.mappings.get(name)
        if status is not None and current is not None:
            self.mappings[name] = {**current, "status": status}
        if status is not None and leading:
            event = plan_mapping_event(body.get("status") or {}, ready)
            if event is not None:
                record = functools.partial(
                    self.kube.record_event,
                    involved=mapping_reference(name=name, uid=str(metadata.get("uid", ""))),
                    reason=event.reason,
                    message=event.message,
                    warning=event.warning,
                )
                await self._run(record)
        return self._recheck_in(name, ready.reason)

    def _held(self, resource: WorkloadResource) -> Followed:
        """The objects of a followed kind its informers keep in the cache: how many, and which have no pod template."""
        namespaces = self._namespaces()
        count = sum(len(self.cache.held(resource.kind, ns)) for ns in namespaces)
        missing = (key for ns in namespaces for key in self.cache.without_template(resource.kind, ns))
        return Followed(count, sorted(f"{namespace}/{name}" for namespace, name in missing))

    async def _list_watched(self, list_one: Callable[..., list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Call ``list_one(namespace=...)`` for each watched namespace (None: all at once); return every item."""
        pages = await asyncio.gather(
            *(self._run(functools.partial(list_one, namespace=ns)) for ns in self._namespaces())
        )
        return [item for page in pages for item in page]

    def serves(self, namespace: str) -> bool:
        """Whether the ServiceLinks of ``namespace`` are reconciled: the settings serve it
        (``Settings.serves``), and its labels match ``--namespace-selector`` when one is given."""
        return self.settings.serves(namespace) and (not self.settings.selector or namespace in self.selected)

    def _put_namespace(self, body: Mapping[str, Any]) -> list[ObjectKey]:
        metadata = body.get("metadata") or {}
        name = str(metadata.get("name", ""))
        self._select(name, matches(self.settings.selector, metadata.get("labels") or {}))
        return []

    def _drop_namespace(self, namespace: str, name: str) -> list[ObjectKey]:
        self._select(name, False)
        return []

    def _select(self, namespace: str, selected: bool) -> None:
        """Serve ``namespace`` from now on, or stop: a namespace that leaves has its ServiceLinks forgotten, nothing
        written or deleted; one that comes in has them listed and reconciled."""
        if selected == (namespace in self.selected):
            return
        if selected:
            self.selected.add(namespace)
            if self.started and self.settings.serves(namespace):
                log.info("namespace %s matches --namespace-selector: serving it", namespace)
                task = asyncio.create_task(self._list_servicelinks(namespace), name=f"servicelink-select-{namespace}")
                self.selecting.add(task)
                task.add_done_callback(self.selecting.discard)
            return
        self.selected.discard(namespace)
        keys = [key for key in self.cache.servicelink_keys() if key[0] == namespace]
        if keys:
            log.info("namespace %s no longer matches --namespace-selector: %d ServiceLinks left", namespace, len(keys))
        for key in keys:
            self.cache.drop_servicelink(*key)  # its reconcile, if queued, finds it gone and writes nothing

    async def _list_servicelinks(self, namespace: str) -> None:
        try:
            listed = await self._run(functools.partial(self.kube.list_objects, kind="ServiceLink", namespace=namespace))
        except (ApiError, *TransportError) as error:  # the next resync lists them
            log.warning("could not list the ServiceLinks of namespace %s: %s", namespace, error)
            return
        if namespace in self.selected:  # not unselected meanwhile
            self.queue.add_all(sorted({key for body in listed for key in self.cache.put_servicelink(body)}))

    def _namespaces(self) -> list[str | None]:
        """The namespaces to list and watch, each on its own (None: all at once; the informers then pass over
        what ignored namespaces hold). A listed namespace that is also ignored is not watched at all."""
        if not self.settings.namespaces:
            return [None]
        return [ns for ns in self.settings.namespaces if self.settings.serves(ns)]

    def _inform(self, source: Source, keep: Keep, serves: Callable[[str], bool] | None = None) -> Informer:
        """The informer of ``source``, started now if it was not running."""
        informer = self.informers.get(source)
        if informer is None:
            informer = Informer(
                source,
                kube=self.kube,
                keep=keep,
                due=self.queue.add_all,
                run=self._run,
                serves=self.settings.serves if serves is None else serves,
                inactivity=self.settings.watch_inactivity_seconds,
            )
            self.informers[source] = informer
            informer.start()
        return informer

    def inform(self) -> list[Informer]:
        """Start keeping every kind the settings follow, in each watched namespace; return their informers."""
        cache = self.cache
        informers: list[Informer] = []
        if self.settings.selector:  # first: start-up waits for it before listing the ServiceLinks
            keep = Keep(self._put_namespace, self._drop_namespace, lambda _: [("", ns) for ns in self.selected])
            informers.append(self._inform(NAMESPACES, keep, serves=lambda _: True))
        kept: list[tuple[ListedKind, Keep]] = [
            (
                "Service",
                Keep(cache.put_service, cache.drop_service, functools.partial(cache.held, "Service")),
            ),
            (
                "EndpointSlice",
                Keep(cache.put_endpointslice, cache.drop_endpointslice, functools.partial(cache.held, "EndpointSlice")),
            ),
            (
                "Job",
                Keep(cache.put_job, cache.drop_job, functools.partial(cache.held, "Job")),
            ),
        ]
        informers += [self._inform(listed_source(kind, ns), keep) for kind, keep in kept for ns in self._namespaces()]
        if self.settings.secrets:
            secrets = Keep(cache.put_secret, cache.drop_secret, functools.partial(cache.held, "Secret"))
            informers += [self._inform(shared_secrets_source(ns), secrets) for ns in self._namespaces()]
        for kind in self.settings.workload_kinds:
            informers += self._inform_kind(WORKLOAD_RESOURCES[kind])
        return informers

    def _inform_kind(self, resource: WorkloadResource) -> list[Informer]:
        cache = self.cache
        keep = Keep(
            lambda body: cache.put_workload(resource, body),
            lambda ns, name: cache.drop_workload(resource.kind, ns, name),
            functools.partial(cache.held, resource.kind),
        )
        return [self._inform(workload_source(resource, ns), keep) for ns in self._namespaces()]

    async def inform_workloads(self, resource: WorkloadResource) -> str | None:
        """Keep the workloads of the kind ``resource`` by list and watch; once each watch is open or has failed,
        return why one cannot watch, or None when events flow."""
        informers = self._inform_kind(resource)
        await asyncio.gather(*(informer.settled.wait() for informer in informers))
        return next((f"{i.source}: {i.failure}" for i in informers if i.failure is not None), None)

    def _stop_informing(self, resource: WorkloadResource) -> None:
        for ns in self._namespaces():
            informer = self.informers.pop(workload_source(resource, ns), None)
            if informer is not None:
                informer.stop()

    def _set_mapped(self, name: str, resource: WorkloadResource | None) -> None:
        before = self.mapped.pop(name, None)
        if resource is not None:
            self.mapped[name] = resource
        if before is not None and before != resource:
            self._stop_informing(before)
        if before is not None and before.kind != (resource.kind if resource else None):
            log.info("no longer following %s (WorkloadMapping %s)", before.kind, name)
            for namespace, workload in self.cache.held(before.kind, None):
                self.cache.drop_workload(before.kind, namespace, workload)
        elif resource is not None and before != resource:
            log.info("following %s (WorkloadMapping %s)", resource.kind, name)

    def _recheck_in(self, name: str, reason: str) -> float | None:
        if reason not in RECHECKED_REASONS:
            self.recheck_delays.pop(name, None)
            return None
        delay = recheck_delay(self.recheck_delays.get(name))
        self.recheck_delays[name] = delay
        return delay

    async def relist(self) -> list[str]:
        """Keep the WorkloadMappings and the ServiceLinks of one fresh list of each; return the mappings' names.

        With ``workload_mappings`` off no WorkloadMapping is listed: the list is taken as empty.

        The kinds informers keep need no relist: their watches keep them, and
        list again when the API server has forgotten where they were.
        """
        try:
            mappings = await self._run(self.kube.list_mappings) if self.settings.workload_mappings else []
        except ApiError as error:
            if error.status != 404:
                raise
            # An install from before WorkloadMappings: their CRD is missing. The built-in kinds are followed.
            log.warning("the WorkloadMapping CRD is not installed: no kind is mapped (apply crds/servicelink.yaml)")
            mappings = []
        listed = {str((m.get("metadata") or {}).get("name", "")): m for m in mappings}
        for name in [n for n in (*self.mapped, *self.mappings) if n not in listed]:
            self.mapping_deleted(name)  # deleted while no watch saw it
        self.mappings.update(listed)
        since = self.cache.mark()
        listed_links = await self._list_watched(functools.partial(self.kube.list_objects, kind="ServiceLink"))
        serves = self.serves
        servicelinks = [link for link in listed_links if serves(str((link.get("metadata") or {}).get("namespace")))]
        self.cache.replace_servicelinks(servicelinks, since=since)
        return list(listed)


async def start_runtime(config: Settings) -> Runtime:
    """List the cluster into a new cache, then start the workers, the resync timer and the election."""
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
        on_pacing=metrics.record_pacing,
    )
    queue = WorkQueue(
        reconcile=metrics.timed(reconciler.reconcile),
        window=config.coalesce_seconds,
        workers=config.workers,
        is_transient=lambda error: isinstance(error, TransientError),
    )
    reconciler.is_waiting = queue.is_waiting
    reconciler.requeue = queue.add
    runtime = Runtime(settings=config, queue=queue, cache=cache, reconciler=reconciler, kube=kube, executor=executor)
    runtime.unserve_ready = metrics.serve_ready_counts(cache.ready_counts)
    if config.alert_secret:
        runtime.sink = alert_sink(kube, config)
        reconciler.alert = runtime.sink.offer
        runtime.sink.start()
    if config.secrets:
        cache.keep_secrets()
    informers = runtime.inform()
    if config.selector:  # which namespaces are served, before their ServiceLinks are listed
        await runtime.informers[NAMESPACES].settled.wait()
    runtime.started = True
    for name in await runtime.relist():  # each mapped kind followed before the first reconcile
        again_in = await runtime.reconcile_mapping(runtime.mappings[name])
        if again_in is not None:
            runtime.mapping_queue.add((MAPPING, name), delay=again_in)
    await asyncio.gather(*(informer.settled.wait() for informer in informers))
    runtime.mapping_queue.start()
    queue.start(active=not config.leader_elect)
    if not config.leader_elect:  # leading from now on: each mapping checked again at once, to write its status
        runtime.mapping_queue.add_all((MAPPING, name) for name in runtime.mappings)
    queue.add_all(cache.servicelink_keys())
    runtime.resync = asyncio.create_task(_resync(runtime), name="servicelink-resync")
    if config.leader_elect:
        identity = f"{instance_name()}-{os.getpid()}"
        runtime.election = asyncio.create_task(_elect(runtime, identity), name="servicelink-election")
    return runtime


def alert_sink(kube: Kube, config: Settings) -> AlertSink:
    """The sink of ``config.alert_secret``: its thread reads the URL from the key ``url`` of that Secret, in the
    operator's namespace (``lease_namespace``: $POD_NAMESPACE), and POSTs each alert in ``alert_format``."""
    namespace, name = config.lease_namespace, config.alert_secret

    def read_url() -> str:
        try:
            secret = kube.get_secret(namespace=namespace, name=name)
        except ApiError as error:
            raise SendFailed(f"cannot read Secret {namespace}/{name}: HTTP {error.status} {error.reason}") from None
        except TransportError as error:
            raise SendFailed(f"cannot read Secret {namespace}/{name}: {type(error).__name__}") from None
        encoded = ((secret or {}).get("data") or {}).get("url")
        if secret is None or not encoded:
            raise SendFailed(f"Secret {namespace}/{name} {'has no key url' if secret else 'does not exist'}")
        return base64.b64decode(encoded).decode().strip()

    return AlertSink(
        read_url=read_url,
        render=functools.partial(render_payload, format=config.alert_format),
        record=metrics.record_alert,
    )


async def stop_runtime(runtime: Runtime) -> None:
    """Stop the resync timer, the election and the workers; reconciles in flight are cancelled."""
    for task in (runtime.resync, runtime.election):
        if task is not None:
            task.cancel()
    for informer in runtime.informers.values():
        informer.stop()
    for task in runtime.selecting:
        task.cancel()
    await runtime.mapping_queue.stop()
    await runtime.queue.stop()
    if runtime.sink is not None:
        runtime.sink.stop()
    runtime.unserve_ready()
    runtime.executor.shutdown(wait=False, cancel_futures=True)


async def _resync(runtime: Runtime) -> None:
    """Each period, relist and reconcile every ServiceLink, to repair drift nobody announced."""
    while True:
        await asyncio.sleep(runtime.settings.resync_seconds)
        try:
            for name in await runtime.relist():
                runtime.check_mapping(name)  # a recheck pending keeps its time
        except Exception as error:  # the API server may be away; the watches keep the cache meanwhile
            log.warning("resync could not list the cluster: %s", error)
        await runtime.queue.add_gradually(runtime.cache.servicelink_keys())


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
            # Each checked at once, once per takeover: the statuses no one wrote while no replica led.
            runtime.mapping_queue.add_all((MAPPING, name) for name in await runtime.relist())
            runtime.queue.active.set()
            runtime.queue.add_all(runtime.cache.servicelink_keys())
        elif leading and not now_leading:
            log.warning("no longer leading: another replica may act")
            runtime.queue.active.clear()
            runtime.reconciler.stand_down()
        leading = now_leading
        await asyncio.sleep(RENEW_SECONDS)
