"""servicelink's own informers: each keeps one kind of one namespace in the cache, by list and watch (does I/O).

kopf keeps the ServiceLinks and WorkloadMappings and runs their handlers. The
kinds servicelink only reads (Services, EndpointSlices, the workload kinds,
built in, optional or mapped, Jobs and shared Secrets) are kept by an
``Informer``. kopf would run its per-object machinery for each of their events
(a task, a body, its handler registry), list them a second time after the
start-up list, and watch only the kinds its registry held at start.

An informer lists, hands the list to the cache, then watches from the list's
resourceVersion on a daemon thread, handing each event to the event loop. A
watch that ends, or breaks, or stays silent longer than ``inactivity`` goes on
from the last resourceVersion it saw (bookmarks move it on); one the API
server has forgotten (410 Gone) lists again. A list or watch that then fails
is tried again after a second, then twice as late each time, up to
``RETRY_SECONDS[1]``. Each new failure is logged at WARNING; ``failure`` says
it until events flow again. What a namespace the settings do not serve holds
(``Settings.serves``: ``--ignore-namespaces``) is passed over, in lists and
events alike, so no kind of it reaches the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from servicelink.kube import ApiError, Kube, Source, Watch
from servicelink.views import ObjectKey

log = logging.getLogger(__name__)

RETRY_SECONDS = (1.0, 30.0)  # after a failed list or watch: the first wait, and the longest
# A kind not served (its CRD not installed yet) is listed again every UNSERVED_SECONDS[0] for UNSERVED_SECONDS[1],
# then as late again as it has waited so far, up to UNSERVED_SECONDS[2]: a CRD installed soon is watched within
# two seconds, and one never installed costs one request a minute.
UNSERVED_SECONDS = (2.0, 30.0, 60.0)
NOT_SERVED = "the API server does not serve it (is its CRD installed?)"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Keep:
    """How an informer keeps its kind in the cache; put and drop return the ServiceLinks to reconcile."""

    put: Callable[[Mapping[str, Any]], list[ObjectKey]]
    drop: Callable[[str, str], list[ObjectKey]]  # (namespace, name)
    held: Callable[[str | None], list[ObjectKey]]  # what the cache holds of the kind in a namespace (None: all)


class Informer:
    """Keeps ``source`` in the cache through ``keep``, and hands the ServiceLinks due to ``due``.

    ``settled`` is set once the first list was handed over and its watch is
    open, or once a list or watch failed (the cache then holds none of the
    kind): start-up waits for it, so no reconcile runs on a half-listed
    cluster. ``watching`` says whether events flow now: the last list
    succeeded and its watch is open; ``failure`` says why not.
    """

    def __init__(
        self,
        source: Source,
        *,
        kube: Kube,
        keep: Keep,
        due: Callable[[list[ObjectKey]], None],
        run: Callable[[Callable[[], Any]], Awaitable[Any]],
        inactivity: float = 70.0,
        serves: Callable[[str], bool] = lambda namespace: True,
    ) -> None:
        self.source = source
        self.settled = asyncio.Event()
        self.watching = False
        self.failure: str | None = None  # why it does not watch now; None while events flow or before a try
        self.count = 0  # objects in the last list
        self._kube = kube
        self._keep = keep
        self._due = due
        self._run = run
        self._inactivity = inactivity
        self._serves = serves
        self._version = ""  # the resourceVersion to watch from; "" to list first
        self._watch: Watch | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        """List and watch until ``stop``."""
        self._task = asyncio.create_task(self._inform(), name=f"servicelink-inform-{self.source}")

    def stop(self) -> None:
        """Stop watching; the objects it kept stay in the cache."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
        if self._watch is not None:
            self._watch.close()
        self.watching = False

    def _apply(self, kind: str, body: Mapping[str, Any]) -> None:
        if self._stopped:  # read from the watch as it was being closed
            return
        metadata = body.get("metadata") or {}
        if not self._serves(str(metadata.get("namespace", ""))):
            return
        if kind == "DELETED":
            self._due(self._keep.drop(str(metadata.get("namespace", "")), str(metadata.get("name", ""))))
        else:
            self._due(self._keep.put(body))

    def _stream(self, watch: Watch, loop: asyncio.AbstractEventLoop) -> None:
        """Read ``watch`` on this thread until it ends; hand each change to the event loop, and keep the
        resourceVersion to go on from."""
        for kind, body in watch:
            self._version = str((body.get("metadata") or {}).get("resourceVersion") or self._version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                try:
                    loop.call_soon_threadsafe(self._apply, kind, body)
                except RuntimeError:  # the operator stopped: its loop is closed
                    break

    async def _list(self) -> str:
        """List into the cache a page at a time, so only one page's bodies are decoded at once; forget what the
        list no longer has. Return the resourceVersion to watch from ("" when the kind is not served)."""
        listed: set[ObjectKey] = set()
        due: set[ObjectKey] = set()
        token: str | None = None
        try:
            while True:
                page = functools.partial(self._kube.list_page, self.source, token)
                items, token, version = await self._run(page)
                for body in items:
                    metadata = body.get("metadata") or {}
                    if not self._serves(str(metadata.get("namespace", ""))):
                        continue  # an ignored namespace: never held, so a list forgets any held before
                    listed.add((str(metadata.get("namespace", "")), str(metadata.get("name", ""))))
                    due.update(self._keep.put(body))
                if not token:
                    break
        except ApiError as error:
            if error.status != 404:
                raise
            listed, version = set(), ""  # not served (a CRD not installed, or deleted): none of it exists
            self._fail(NOT_SERVED)
        for namespace, name in self._keep.held(self.source.namespace):
            if (namespace, name) not in listed:
                due.update(self._keep.drop(namespace, name))
        self._due(sorted(due))
        self.count = len(listed)
        return str(version)

    def _fail(self, failure: str) -> None:
        if failure != self.failure:
            log.warning("cannot watch %s: %s; trying again", self.source, failure)
        self.failure = failure
        self.watching = False
        self.settled.set()

    async def _inform(self) -> None:
        loop = asyncio.get_running_loop()
        delay = RETRY_SECONDS[0]
        opened = 0.0  # loop.time() the last watch opened
        unserved_since: float | None = None
        while True:
            try:
                if not self._version:
                    self._version = await self._list()
                    if not self._version:  # not served
                        unserved_since = unserved_since or loop.time()
                        await asyncio.sleep(unserved_wait(loop.time() - unserved_since))
                        continue
                open_watch = functools.partial(
                    self._kube.watch_source, self.source, resource_version=self._version, inactivity=self._inactivity
                )
                self._watch = cast("Watch", await self._run(open_watch))
                if self.failure == NOT_SERVED:
                    log.info("%s is now served: watching it", self.source)
                elif self.failure is not None:
                    log.info("watching %s again", self.source)
                unserved_since = None
                self.failure, self.watching, opened = None, True, loop.time()
                self.settled.set()
                stream = functools.partial(self._stream, self._watch, loop)
                await _in_daemon_thread(stream, name=f"servicelink-watch-{self.source}")
                delay = RETRY_SECONDS[0]
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                if error.status == 410:  # the API server no longer has that version: list again at once
                    self._version = ""
                    continue
                self._fail(f"HTTP {error.status} {error.reason}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_SECONDS[1])
            except Exception as error:  # a connection broke or a read timed out, or the API server is away
                # A watch that flowed a while (not one that breaks as it opens): go on from where it was, at once.
                if self.watching and loop.time() - opened > RETRY_SECONDS[0]:
                    self.watching = False
                    log.debug("the watch of %s ended: %s; going on", self.source, type(error).__name__)
                    continue
                self._fail(type(error).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_SECONDS[1])


def unserved_wait(unserved_for: float) -> float:
    """Seconds to wait before listing again a kind unserved for ``unserved_for`` seconds (``UNSERVED_SECONDS``)."""
    every, patience, longest = UNSERVED_SECONDS
    return every if unserved_for < patience else min(unserved_for, longest)


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
