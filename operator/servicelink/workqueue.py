"""A work queue that coalesces triggers per ServiceLink and runs reconciles (asyncio, no API calls of its own).

Like controller-runtime's workqueue: a key added while pending is not added
twice; a key added while being reconciled is reconciled once more afterwards;
one key is never reconciled by two workers at once. A key runs once the
coalescing window has passed without another trigger for it (a trailing-edge
debounce, capped at ``_MAX_WAIT_WINDOWS`` windows), so a burst of Service
changes that touch one ServiceLink, such as one ``kubectl apply`` of five
Services, reconciles it once and rolls each consumer once. Once a second
trigger has come, the key waits for a silence of ``_BURST_GAPS`` times the
longest gap between its triggers so far (gaps up to ``_BURST_GAP_MAX_WINDOWS``
windows count), if that is longer than the window: a burst keeps its own
rhythm, so a member a busy machine delays a little is still part of it, while
a single change waits the window alone, and triggers a few windows apart (an
EndpointSlice that keeps changing) do not stretch it. A resync feeds its
keys in gradually (``add_gradually``), so a trigger that arrives meanwhile waits
behind a handful of them, not behind every ServiceLink of the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from servicelink.views import ObjectKey

log = logging.getLogger(__name__)
# While a reconcile runs: the monotonic time of the first trigger it serves, for latency metrics.
TRIGGERED_AT: contextvars.ContextVar[float] = contextvars.ContextVar("servicelink_triggered_at")
_BACKOFF_START = 0.5
_BACKOFF_MAX = 60.0
_MAX_WAIT_WINDOWS = 20  # a steady stream of triggers still reconciles at least this often
_BURST_GAPS = 3.0  # within a burst, a silence of this many of its longest gaps ends it
_BURST_GAP_MAX_WINDOWS = 2.0  # a gap longer than this many windows separates two changes: it sets no rhythm


@dataclass
class WorkQueue:
    """Runs ``reconcile(key)`` for added keys with ``workers`` tasks.

    ``reconcile`` may return a number of seconds: the key is then reconciled
    again after that long, for a state no watch announces (controller-runtime's
    ``RequeueAfter``). None: only the next trigger reconciles it.
    """

    reconcile: Callable[[ObjectKey], Awaitable[float | None]]
    window: float
    workers: int
    is_transient: Callable[[BaseException], bool]
    _due: list[tuple[float, int, ObjectKey]] = field(default_factory=list)
    _pending: dict[ObjectKey, float] = field(default_factory=dict)
    _first_added: dict[ObjectKey, float] = field(default_factory=dict)
    _last_added: dict[ObjectKey, float] = field(default_factory=dict)
    _longest_gap: dict[ObjectKey, float] = field(default_factory=dict)  # between two triggers of a pending key
    _running: set[ObjectKey] = field(default_factory=set)
    _again: set[ObjectKey] = field(default_factory=set)
    _failures: dict[ObjectKey, int] = field(default_factory=dict)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _finished: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Cleared while another replica leads: keys still queue up, none runs.
    active: asyncio.Event = field(default_factory=asyncio.Event)
    _counter: int = 0

    def add(self, key: ObjectKey, *, delay: float | None = None) -> None:
        """Schedule ``key``: after ``delay`` if given (a retry), else once the window passes with no new trigger."""
        if key in self._running:
            self._again.add(key)
            return
        now = time.monotonic()
        if delay is not None:
            due = now + delay
            if key in self._pending and self._pending[key] <= due:
                return
        else:
            first = self._first_added.setdefault(key, now)
            last = self._last_added.get(key)
            self._last_added[key] = now
            if last is not None and now - last <= self.window * _BURST_GAP_MAX_WINDOWS:
                self._longest_gap[key] = max(self._longest_gap.get(key, 0.0), now - last)
            silence = max(self.window, _BURST_GAPS * self._longest_gap.get(key, 0.0))
            due = min(now + silence, first + self.window * _MAX_WAIT_WINDOWS)
            if key in self._pending and self._pending[key] == due:
                return
        self._pending[key] = due
        self._counter += 1
        heapq.heappush(self._due, (due, self._counter, key))
        self._wakeup.set()

    def add_all(self, keys: Iterable[ObjectKey]) -> None:
        """Schedule every key in ``keys``."""
        for key in keys:
            self.add(key)

    async def add_gradually(self, keys: Iterable[ObjectKey]) -> None:
        """Schedule every key in ``keys`` to run at once, while fewer than ``workers`` keys are busy.

        For a resync: keys already queued are skipped, and one added later by a
        trigger finds at most ``workers`` keys ahead of it. Keys waiting out a
        retry backoff do not count, so failing ServiceLinks never stall a resync.
        """
        for key in keys:
            if key in self._pending or key in self._running:
                continue
            while self._busy() >= self.workers:
                self._finished.clear()
                await self._finished.wait()
            self.add(key, delay=0.0)

    def is_queued(self, key: ObjectKey) -> bool:
        """Whether ``key`` is waiting (within its window, a retry backoff or a requeue delay) or being reconciled."""
        return key in self._pending or key in self._running

    def is_waiting(self, key: ObjectKey) -> bool:
        """Whether ``key`` is queued to run within its window (not waiting out a retry backoff)."""
        return key in self._pending and key not in self._failures

    def _busy(self) -> int:
        """Keys running, or due within one window."""
        soon = time.monotonic() + self.window
        return len(self._running) + sum(1 for due in self._pending.values() if due <= soon)

    def __len__(self) -> int:
        """Keys waiting or being reconciled."""
        return len(self._pending) + len(self._running)

    def start(self, *, active: bool = True) -> None:
        """Start the worker tasks on the running loop; with ``active`` False they wait for ``active``."""
        if active:
            self.active.set()
        self._tasks = [asyncio.create_task(self._work(), name=f"servicelink-worker-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        """Cancel the workers and wait for them."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _next(self) -> tuple[ObjectKey, float]:
        while True:
            while self._due and self._pending.get(self._due[0][2]) != self._due[0][0]:
                heapq.heappop(self._due)  # superseded by an earlier entry for the same key
            if self._due:
                wait = self._due[0][0] - time.monotonic()
                if wait <= 0:
                    _, _, key = heapq.heappop(self._due)
                    del self._pending[key]
                    self._last_added.pop(key, None)
                    self._longest_gap.pop(key, None)
                    return key, self._first_added.pop(key, time.monotonic())
            else:
                wait = None
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=wait)

    async def _work(self) -> None:
        while True:
            await self.active.wait()
            key, triggered_at = await self._next()
            self._running.add(key)
            TRIGGERED_AT.set(triggered_at)
            try:
                again_in = await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # one ServiceLink must never stop the others
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(_BACKOFF_MAX, _BACKOFF_START * 2 ** (failures - 1))
                if self.is_transient(error):
                    log.info("%s/%s: %s; retrying in %.1fs", *key, error, delay)
                else:
                    log.exception("%s/%s: reconcile failed; retrying in %.1fs", *key, delay)
                self._running.discard(key)
                self._again.discard(key)
                self.add(key, delay=delay)
                self._finished.set()
                continue
            self._failures.pop(key, None)
            self._running.discard(key)
            self._finished.set()
            if key in self._again:
                self._again.discard(key)
                self.add(key)
            elif again_in is not None:
                self.add(key, delay=again_in)
