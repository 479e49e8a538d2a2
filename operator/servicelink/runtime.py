"""The operator's life cycle outside kopf: start-up, relist, resync and the Lease election (does I/O).

``handlers.py`` wires these to kopf's start-up and cleanup; nothing here imports kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from servicelink import metrics
from servicelink.cache import Cache
from servicelink.conditions import FORBIDDEN, KIND_NOT_SERVED
from servicelink.kube import (
    ApiError,
    Conflict,
    Kube,
    TransportError,
    instance_name,
    load_client,
    mapping_reference,
    utc_now,
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
)
from servicelink.model import WORKLOAD_RESOURCES, Condition, ListedKind, WorkloadKind, WorkloadResource
from servicelink.reconcile import Reconciler, TransientError
from servicelink.settings import Settings
from servicelink.workqueue import WorkQueue

log = logging.getLogger(__name__)
# A mapping whose kind is not served or not granted is checked again after this many seconds, then twice as
# late each time, up to the cap: one discovery read (and three access reviews once served) per check.
MAPPING_RECHECK_FIRST = 2.0
MAPPING_RECHECK_MAX = 60.0
RECHECKED_REASONS = frozenset({KIND_NOT_SERVED, FORBIDDEN})


@dataclass(frozen=True)
class _Waiting:
    body: Mapping[str, Any]  # the mapping as last seen, with the status last written
    delay: float
    due: float  # time.monotonic() of the next check


_T = TypeVar("_T")

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
    # Mappings whose kind is not served or not granted yet, checked again until it is (``recheck_mappings``).
    waiting: dict[str, _Waiting] = field(default_factory=dict)
    # Called with each kind a mapping starts following, so kopf watches it (handlers.watch_workloads).
    on_followed: Callable[[WorkloadResource], None] = lambda resource: None
    recheck: asyncio.Task[None] | None = None
    secret_watches: list[asyncio.Task[None]] = field(default_factory=list)

    def kinds(self) -> list[WorkloadResource]:
        """Every kind the operator follows now: the built-in ones its settings enable, then the mapped ones."""
        return [*(WORKLOAD_RESOURCES[kind] for kind in self.settings.workload_kinds), *self.mapped.values()]

    def follows(self, kind: WorkloadKind) -> WorkloadResource | None:
        """The kind ``kind`` as the operator follows it now, or None when it does not."""
        return next((r for r in self.kinds() if r.kind == kind), None)

    async def _run(self, call: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    async def reconcile_mapping(self, body: Mapping[str, Any], *, again: bool = False) -> WorkloadResource | None:
        """Follow the kind a WorkloadMapping maps, if it can be; write the mapping's status if it changed.

        Return the kind followed, or None. Following it lists its objects into
        the cache, and ``on_followed`` makes kopf watch it. A mapping that changed
        its kind or path replaces what was followed under it; one that fails a
        check (``mapping.plan_mapping``) stops it being followed. One whose kind
        is not served or not granted yet waits to be checked ``again`` by
        ``recheck_mappings``, each time twice as late, the first time as soon as
        it changes.
        """
        metadata = body.get("metadata") or {}
        name, generation = str(metadata.get("name", "")), int(metadata.get("generation") or 0)
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
                bodies = await self._list_mapped(followed)
                count = len(bodies)
                missing = sorted(
                    f"{(b.get('metadata') or {}).get('namespace')}/{(b.get('metadata') or {}).get('name')}"
                    for b in bodies
                    if not followed.pod_template(b)
                )
                template = str(spec.get("template", ""))
                ready = plan_followed(followed, template, followed=Followed(count, missing), generation=generation)
        self._set_mapped(name, followed)
        status = plan_mapping_status(
            body.get("status") or {}, ready, followed=count, generation=generation, now=utc_now()
        )
        self._wait(name, body if status is None else {**body, "status": status}, ready.reason, again=again)
        if followed is not None:
            self.on_followed(followed)
        if status is not None and self.queue.active.is_set():  # the leader writes; the others follow quietly
            await self._run(functools.partial(self.kube.patch_mapping_status, name=name, status=status))
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
        return followed

    async def _list_watched(self, list_one: Callable[..., list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Call ``list_one(namespace=...)`` for each watched namespace (None: all at once); return every item."""
        namespaces: list[str | None] = list(self.settings.namespaces) or [None]
        pages = await asyncio.gather(*(self._run(functools.partial(list_one, namespace=ns)) for ns in namespaces))
        return [item for page in pages for item in page]

    async def _list_mapped(self, resource: WorkloadResource) -> list[dict[str, Any]]:
        """List the objects of a mapped kind in the watched namespaces into the cache, and return them."""
        since = self.cache.mark()
        bodies = await self._list_watched(functools.partial(self.kube.list_workloads, resource=resource))
        self.cache.replace_workloads(resource, bodies, since=since)
        return bodies

    def _set_mapped(self, name: str, resource: WorkloadResource | None) -> None:
        before = self.mapped.pop(name, None)
        if resource is not None:
            self.mapped[name] = resource
        if before is not None and before.kind != (resource.kind if resource else None):
            log.info("no longer following %s (WorkloadMapping %s)", before.kind, name)
            self.cache.replace_workloads(before, [], since=self.cache.mark())
        elif resource is not None and before != resource:
            log.info("following %s (WorkloadMapping %s)", resource.kind, name)

    def forget_mapping(self, name: str) -> None:
        """A WorkloadMapping was deleted: stop following its kind and forget its objects."""
        self.waiting.pop(name, None)
        self._set_mapped(name, None)

    def _wait(self, name: str, body: Mapping[str, Any], reason: str, *, again: bool) -> None:
        if reason not in RECHECKED_REASONS:
            self.waiting.pop(name, None)
            return
        before = self.waiting.get(name)
        delay = min(before.delay * 2, MAPPING_RECHECK_MAX) if again and before else MAPPING_RECHECK_FIRST
        self.waiting[name] = _Waiting(body, delay, time.monotonic() + delay)

    async def recheck_mappings(self) -> None:
        """Check again each waiting mapping that is due: its CRD may be installed, or its grant given, since."""
        now = time.monotonic()
        for name, waiting in list(self.waiting.items()):
            if waiting.due <= now and self.waiting.get(name) is waiting:
                await self.reconcile_mapping(waiting.body, again=True)

    async def relist(self) -> None:
        """Rebuild the cache from one fresh list of every watched kind."""

        async def fetch(kind: ListedKind) -> list[dict[str, Any]]:
            return await self._list_watched(functools.partial(self.kube.list_objects, kind=kind))

        async def fetch_workloads(resource: WorkloadResource) -> list[dict[str, Any]]:
            try:
                return await self._list_watched(functools.partial(self.kube.list_workloads, resource=resource))
            except ApiError as error:
                # An optional kind whose CRD is not installed (yet): none of it. Once it is served, kopf
                # starts its watch (handlers.follow_kinds sees to it), and the watch fills the cache.
                if error.status != 404 or not resource.optional:
                    raise
                what = resource.kind
                log.warning("%s is enabled but not served (is its CRD installed?): none followed until it is", what)
                return []

        try:
            mappings = await self._run(self.kube.list_mappings)
        except ApiError as error:
            if error.status != 404:
                raise
            # An install from before WorkloadMappings: their CRD is missing. The built-in kinds are followed.
            log.warning("the WorkloadMapping CRD is not installed: no kind is mapped (apply crds/servicelink.yaml)")
            mappings = []
        listed = {str((m.get("metadata") or {}).get("name", "")) for m in mappings}
        for name in [n for n in (*self.mapped, *self.waiting) if n not in listed]:
            self.forget_mapping(name)  # deleted while no watch saw it
        for mapping in mappings:
            await self.reconcile_mapping(mapping)
        resources = [WORKLOAD_RESOURCES[kind] for kind in self.settings.workload_kinds]
        since = self.cache.mark()
        servicelinks, services, slices, jobs, *workloads = await asyncio.gather(
            fetch("ServiceLink"),
            fetch("Service"),
            fetch("EndpointSlice"),
            fetch("Job"),
            *(fetch_workloads(r) for r in resources),
        )
        self.cache.replace_servicelinks(servicelinks, since=since)
        self.cache.replace_services(services, since=since)
        self.cache.replace_endpointslices(slices, since=since)
        self.cache.replace_jobs(jobs, since=since)
        for resource, bodies in zip(resources, workloads, strict=True):
            self.cache.replace_workloads(resource, bodies, since=since)
        if self.settings.secrets:
            await self.relist_secrets()

    async def relist_secrets(self) -> None:
        """List the shared Secrets of the watched namespaces into the cache; queue the ServiceLinks of those that
        changed (an event the watch missed)."""
        since = self.cache.mark()
        namespaces: list[str | None] = list(self.settings.namespaces) or [None]
        listed = await asyncio.gather(
            *(self._run(functools.partial(self.kube.list_shared_secrets, namespace=ns)) for ns in namespaces)
        )
        self.queue.add_all(self.cache.replace_secrets([s for items, _ in listed for s in items], since=since))

    def apply_secret_event(self, kind: str, body: Mapping[str, Any]) -> None:
        """Keep the cache by one event of a shared Secret's watch; queue the ServiceLinks it concerns."""
        metadata = body.get("metadata") or {}
        if kind == "DELETED":
            due = self.cache.drop_secret(str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        else:
            due = self.cache.put_secret(body)
        self.queue.add_all(due)


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
    )
    queue = WorkQueue(
        reconcile=metrics.timed(reconciler.reconcile),
        window=config.coalesce_seconds,
        workers=config.workers,
        is_transient=lambda error: isinstance(error, TransientError),
    )
    reconciler.is_waiting = queue.is_waiting
    runtime = Runtime(settings=config, queue=queue, cache=cache, reconciler=reconciler, kube=kube, executor=executor)
    if config.secrets:
        cache.keep_secrets()
    await runtime.relist()
    if config.secrets:
        watched: list[str | None] = list(config.namespaces) or [None]
        runtime.secret_watches = [
            asyncio.create_task(_watch_secrets(runtime, ns), name=f"servicelink-secrets-{ns or 'all'}")
            for ns in watched
        ]
    queue.start(active=not config.leader_elect)
    queue.add_all(cache.servicelink_keys())
    runtime.resync = asyncio.create_task(_resync(runtime), name="servicelink-resync")
    runtime.recheck = asyncio.create_task(_recheck(runtime), name="servicelink-mappings")
    if config.leader_elect:
        identity = f"{instance_name()}-{os.getpid()}"
        runtime.election = asyncio.create_task(_elect(runtime, identity), name="servicelink-election")
    return runtime


async def stop_runtime(runtime: Runtime) -> None:
    """Stop the resync timer, the election and the workers; reconciles in flight are cancelled."""
    for task in (runtime.resync, runtime.recheck, runtime.election, *runtime.secret_watches):
        if task is not None:
            task.cancel()
    await runtime.queue.stop()
    runtime.executor.shutdown(wait=False, cancel_futures=True)


SECRET_RETRY_SECONDS = (1.0, 30.0)  # after a failed list or watch of shared Secrets: first wait, cap


def _stream_secrets(runtime: Runtime, loop: asyncio.AbstractEventLoop, namespace: str | None, version: str) -> str:
    """Run one watch of shared Secrets from ``version`` on this thread; hand each event to the event loop.

    Return the resourceVersion to go on from once the API server closes it.
    """
    for kind, body in runtime.kube.watch_shared_secrets(namespace=namespace, resource_version=version):
        version = str((body.get("metadata") or {}).get("resourceVersion") or version)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            try:
                loop.call_soon_threadsafe(runtime.apply_secret_event, kind, body)
            except RuntimeError:  # the operator stopped: its loop is closed
                break
    return version


async def _in_daemon_thread(call: Callable[[], _T], *, name: str) -> _T:
    """Run a long blocking ``call`` (a watch) on a daemon thread and return its result.

    Not the executor: at exit it waits for its threads, and a watch holds one
    for minutes, so the operator would stop only once the watch ends.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(result: _T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast("_T", result))

    def run() -> None:
        try:
            result, error = call(), None
        except BaseException as raised:  # handed to the awaiting task
            result, error = None, raised
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody awaits it any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


async def _watch_secrets(runtime: Runtime, namespace: str | None) -> None:
    """Until cancelled, keep the shared Secrets of ``namespace`` (None: all) by list and watch.

    A Secret's data never reaches kopf: this watch asks the API server for the
    labelled Secrets alone. A watch that ends goes on from its last
    resourceVersion; one the API server has forgotten (410 Gone) lists again.
    """
    loop = asyncio.get_running_loop()
    delay = SECRET_RETRY_SECONDS[0]
    version = ""
    while True:
        try:
            if not version:
                since = runtime.cache.mark()
                items, version = await runtime._run(
                    functools.partial(runtime.kube.list_shared_secrets, namespace=namespace)
                )
                runtime.queue.add_all(runtime.cache.replace_secrets(items, since=since))
            watch = functools.partial(_stream_secrets, runtime, loop, namespace, version)
            version = await _in_daemon_thread(watch, name=f"servicelink-secrets-{namespace or '*'}")
            delay = SECRET_RETRY_SECONDS[0]
        except asyncio.CancelledError:
            raise
        except ApiError as error:
            if error.status != 410:
                log.warning("could not watch shared Secrets: HTTP %s %s; retrying", error.status, error.reason)
                await asyncio.sleep(delay)
                delay = min(delay * 2, SECRET_RETRY_SECONDS[1])
            version = ""
        except Exception as error:  # the API server may be away; list again once it is back
            log.warning("could not watch shared Secrets: %s; retrying", type(error).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, SECRET_RETRY_SECONDS[1])
            version = ""


async def _recheck(runtime: Runtime) -> None:
    """Until cancelled, check the waiting mappings that are due (``Runtime.recheck_mappings``)."""
    while True:
        await asyncio.sleep(1.0)
        try:
            await runtime.recheck_mappings()
        except Exception as error:  # the API server may be away; the next round retries
            log.debug("could not check the waiting WorkloadMappings: %s", error)


async def _resync(runtime: Runtime) -> None:
    """Each period, relist and reconcile every ServiceLink, to repair drift nobody announced."""
    while True:
        await asyncio.sleep(runtime.settings.resync_seconds)
        try:
            await runtime.relist()
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
            await runtime.relist()
            runtime.queue.active.set()
            runtime.queue.add_all(runtime.cache.servicelink_keys())
        elif leading and not now_leading:
            log.warning("no longer leading: another replica may act")
            runtime.queue.active.clear()
            runtime.reconciler.stand_down()
        leading = now_leading
        await asyncio.sleep(RENEW_SECONDS)
