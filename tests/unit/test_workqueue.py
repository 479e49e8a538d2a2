"""workqueue.py: the WorkQueue coalesces triggers, never overlaps one key, and retries failures.

Runs a real asyncio loop with a plain async function as reconcile.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from servicelink.views import ObjectKey
from servicelink.workqueue import _BACKOFF_START, WorkQueue

A: ObjectKey = ("gallery", "gateway-service")
B: ObjectKey = ("gallery", "cart-service")
WINDOW = 0.05


def run(test: Callable[[], Coroutine[Any, Any, None]], timeout: float = 10.0) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout))


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def queue(
    reconcile: Callable[[ObjectKey], Awaitable[None]],
    *,
    workers: int = 2,
    is_transient: Callable[[BaseException], bool] = lambda error: True,
) -> WorkQueue:
    return WorkQueue(reconcile=reconcile, window=WINDOW, workers=workers, is_transient=is_transient)


def settled_counts(feed: Callable[[WorkQueue], Awaitable[None]], expected: set[ObjectKey]) -> Counter[ObjectKey]:
    """Reconciles per key after ``feed`` filled a fresh queue and every expected key ran, then a few windows more."""
    calls: Counter[ObjectKey] = Counter()

    async def reconcile(key: ObjectKey) -> None:
        calls[key] += 1

    async def scenario() -> None:
        q = queue(reconcile)
        q.start()
        try:
            await feed(q)
            await wait_until(lambda: all(calls[key] >= 1 for key in expected))
            await asyncio.sleep(WINDOW * 4)
        finally:
            await q.stop()

    run(scenario)
    return calls


def test_key_added_many_times_within_the_window_reconciles_once() -> None:
    async def feed(q: WorkQueue) -> None:
        for _ in range(5):
            q.add(A)
        q.add_all([A, A])

    assert settled_counts(feed, {A}) == Counter({A: 1})


def test_reconcile_waits_the_coalescing_window() -> None:
    started: list[float] = []

    async def reconcile(key: ObjectKey) -> None:
        started.append(time.monotonic())

    async def scenario() -> None:
        q = queue(reconcile)
        q.start()
        try:
            added = time.monotonic()
            q.add(A)
            await wait_until(lambda: bool(started))
        finally:
            await q.stop()
        assert started[0] - added >= WINDOW * 0.9

    run(scenario)


def test_different_keys_each_reconcile_once() -> None:
    async def feed(q: WorkQueue) -> None:
        q.add_all([A, B, A, B])

    assert settled_counts(feed, {A, B}) == Counter({A: 1, B: 1})


def test_key_added_while_running_reconciles_once_more_afterwards() -> None:
    calls: list[ObjectKey] = []
    release = asyncio.Event()

    async def reconcile(key: ObjectKey) -> None:
        calls.append(key)
        if len(calls) == 1:
            await release.wait()

    async def scenario() -> None:
        q = queue(reconcile)
        q.start()
        try:
            q.add(A)
            await wait_until(lambda: len(calls) == 1)
            for _ in range(3):
                q.add(A)  # a burst of triggers during the run
            await asyncio.sleep(WINDOW * 3)
            assert len(calls) == 1  # never started again while the first run is going
            release.set()
            await wait_until(lambda: len(calls) == 2)
            await asyncio.sleep(WINDOW * 4)
        finally:
            await q.stop()
        assert calls == [A, A]

    run(scenario)


def test_a_reconcile_that_asks_to_look_again_runs_again_after_that_long() -> None:
    times: list[float] = []

    async def reconcile(key: ObjectKey) -> float | None:
        times.append(time.monotonic())
        return WINDOW * 5 if len(times) < 3 else None  # like a ConfigMap not shared yet, then shared

    async def scenario() -> None:
        q = WorkQueue(reconcile=reconcile, window=WINDOW, workers=2, is_transient=lambda error: True)
        q.start()
        try:
            q.add(A)
            await wait_until(lambda: len(times) == 3)
            await asyncio.sleep(WINDOW * 10)
        finally:
            await q.stop()
        assert len(times) == 3  # None: no more runs without a trigger
        assert all(later - earlier >= WINDOW * 5 for earlier, later in itertools.pairwise(times))

    run(scenario)


def test_one_key_never_runs_concurrently_while_other_keys_do() -> None:
    active: Counter[ObjectKey] = Counter()
    peak: Counter[ObjectKey] = Counter()
    overall: list[int] = []
    calls: Counter[ObjectKey] = Counter()

    async def reconcile(key: ObjectKey) -> None:
        active[key] += 1
        peak[key] = max(peak[key], active[key])
        overall.append(sum(active.values()))
        calls[key] += 1
        await asyncio.sleep(WINDOW * 4)
        active[key] -= 1

    async def scenario() -> None:
        q = queue(reconcile, workers=4)
        q.start()
        try:
            q.add_all([A, B])
            await wait_until(lambda: active[A] == 1 and active[B] == 1)
            for _ in range(5):  # triggers for A while A runs, with three idle workers
                q.add(A)
                await asyncio.sleep(WINDOW / 2)
            await wait_until(lambda: calls[A] == 2 and len(q) == 0)
        finally:
            await q.stop()
        assert peak[A] == 1
        assert peak[B] == 1
        assert max(overall) == 2  # A and B do run side by side
        assert calls == Counter({A: 2, B: 1})

    run(scenario)


def test_steady_triggers_reconcile_once_after_they_stop() -> None:
    started: list[float] = []

    async def reconcile(key: ObjectKey) -> None:
        started.append(time.monotonic())

    async def scenario() -> None:
        window = 0.2  # wide, so that a slow machine does not stretch a gap past it
        q = WorkQueue(reconcile=reconcile, window=window, workers=2, is_transient=lambda error: True)
        q.start()
        try:
            for _ in range(6):  # a burst spread over 1.5 windows, e.g. one apply of several Services
                q.add(A)
                await asyncio.sleep(window / 4)
            last = time.monotonic()
            await wait_until(lambda: bool(started))
            await asyncio.sleep(window * 2)
        finally:
            await q.stop()
        assert len(started) == 1
        assert started[0] >= last

    run(scenario)


def burst_starts(gaps: list[float], window: float) -> list[float]:
    """When a key added after each of ``gaps`` (seconds, from the add before) was reconciled, from the first add."""
    started: list[float] = []

    async def reconcile(key: ObjectKey) -> None:
        started.append(time.monotonic())

    async def scenario() -> None:
        q = WorkQueue(reconcile=reconcile, window=window, workers=2, is_transient=lambda error: True)
        q.start()
        try:
            first = time.monotonic()
            q.add(A)
            for gap in gaps:
                await asyncio.sleep(gap)
                q.add(A)
            await asyncio.sleep(window * 8)
        finally:
            await q.stop()
        started[:] = [at - first for at in started]

    run(scenario)
    return started


def test_a_burst_keeps_its_rhythm_so_a_member_delayed_past_the_window_joins_it() -> None:
    """Members 0.4 windows apart set the rhythm; one 1.2 windows late is still within 3 of those gaps."""
    window = 0.2
    assert len(burst_starts([window * 0.4, window * 0.4, window * 1.2, window * 0.4], window)) == 1


def test_a_single_change_waits_the_window_alone_and_changes_far_apart_reconcile_apart() -> None:
    window = 0.2
    (alone,) = burst_starts([], window)
    assert window * 0.9 <= alone < window * 2
    # Two windows and more apart: no rhythm, each is its own change.
    assert len(burst_starts([window * 2.5, window * 2.5], window)) == 3


def test_never_ending_triggers_still_reconcile() -> None:
    calls: list[float] = []

    async def reconcile(key: ObjectKey) -> None:
        calls.append(time.monotonic())

    async def scenario() -> None:
        window = 0.01
        q = WorkQueue(reconcile=reconcile, window=window, workers=1, is_transient=lambda error: True)
        q.start()
        try:
            deadline = time.monotonic() + window * 60
            while time.monotonic() < deadline:  # a trigger every half window, for 60 windows
                q.add(A)
                await asyncio.sleep(window / 2)
            assert calls, "a steady stream of triggers starved the ServiceLink"
        finally:
            await q.stop()

    run(scenario)


def test_failing_reconcile_is_retried_until_it_succeeds() -> None:
    attempts: list[float] = []
    seen_errors: list[BaseException] = []

    async def reconcile(key: ObjectKey) -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RuntimeError("HTTP 503 Service Unavailable")

    def is_transient(error: BaseException) -> bool:
        seen_errors.append(error)
        return True

    async def scenario() -> None:
        q = queue(reconcile, is_transient=is_transient)
        q.start()
        try:
            q.add(A)
            await wait_until(lambda: len(attempts) >= 2)
            await asyncio.sleep(WINDOW * 4)
        finally:
            await q.stop()
        assert len(attempts) == 2  # retried once, and not again after success
        assert attempts[1] - attempts[0] >= 0.4  # with a backoff, not in a hot loop
        assert [str(error) for error in seen_errors] == ["HTTP 503 Service Unavailable"]

    run(scenario)


def test_non_transient_failure_is_retried_too_and_does_not_stop_other_keys() -> None:
    calls: Counter[ObjectKey] = Counter()

    async def reconcile(key: ObjectKey) -> None:
        calls[key] += 1
        if key == A and calls[A] == 1:
            raise ValueError("bug in one ServiceLink")

    async def scenario() -> None:
        q = queue(reconcile, workers=1, is_transient=lambda error: False)
        q.start()
        try:
            q.add_all([A, B])
            await wait_until(lambda: calls[A] >= 2 and calls[B] >= 1)
        finally:
            await q.stop()
        assert calls[B] == 1

    run(scenario)


def test_len_counts_pending_and_running_keys() -> None:
    release = asyncio.Event()
    started: list[ObjectKey] = []

    async def reconcile(key: ObjectKey) -> None:
        started.append(key)
        await release.wait()

    async def scenario() -> None:
        q = queue(reconcile, workers=1)
        q.add_all([A, B, A])
        assert len(q) == 2
        q.start()
        try:
            await wait_until(lambda: len(started) == 1)
            assert len(q) == 2  # one running, one waiting for the single worker
            release.set()
            await wait_until(lambda: len(q) == 0)
        finally:
            await q.stop()
        assert sorted(started) == sorted([A, B])

    run(scenario)


@pytest.mark.parametrize("workers", [1, 3])
def test_stop_cancels_a_running_reconcile(workers: int) -> None:
    cancelled: list[ObjectKey] = []

    async def reconcile(key: ObjectKey) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(key)
            raise

    async def scenario() -> None:
        q = queue(reconcile, workers=workers)
        q.start()
        q.add(A)
        await asyncio.sleep(WINDOW * 3)
        await q.stop()
        assert cancelled == [A]

    run(scenario)


def test_gradual_keys_never_queue_more_than_the_workers_and_a_trigger_overtakes_them() -> None:
    order: list[ObjectKey] = []
    backlog: list[int] = []
    keys: list[ObjectKey] = [("resync", f"link-{i}") for i in range(40)]

    async def scenario() -> None:
        q: WorkQueue

        async def reconcile(key: ObjectKey) -> None:
            backlog.append(len(q))
            order.append(key)
            await asyncio.sleep(0.02)

        q = queue(reconcile, workers=2)
        q.start()
        try:
            feeding = asyncio.create_task(q.add_gradually(keys))
            await wait_until(lambda: len(order) >= 4)
            q.add(A)
            await feeding
            await wait_until(lambda: len(order) == len(keys) + 1)
        finally:
            await q.stop()

    run(scenario)
    assert sorted(order) == sorted([*keys, A])
    assert max(backlog) <= 3  # 2 gradual keys and the trigger
    assert order.index(A) < len(keys) // 2


def test_gradual_keys_skip_what_is_already_queued() -> None:
    async def feed(q: WorkQueue) -> None:
        q.add(A)
        await q.add_gradually([A, B])

    assert settled_counts(feed, {A, B}) == Counter({A: 1, B: 1})


def test_keys_in_retry_backoff_never_stall_a_gradual_feed() -> None:
    done: list[ObjectKey] = []
    failing: list[ObjectKey] = [("broken", f"link-{i}") for i in range(4)]
    healthy: list[ObjectKey] = [("resync", f"link-{i}") for i in range(6)]

    async def reconcile(key: ObjectKey) -> None:
        if key in failing:
            raise ValueError("a bug in this ServiceLink")
        done.append(key)

    async def scenario() -> None:
        q = queue(reconcile, workers=2, is_transient=lambda error: True)
        q.start()
        try:
            q.add_all(failing)
            await asyncio.sleep(WINDOW * 3)  # each failed once and now waits out its backoff
            await q.add_gradually(healthy)
            await wait_until(lambda: len(done) == len(healthy), within=_BACKOFF_START * 0.9)
        finally:
            await q.stop()

    run(scenario)


def test_a_key_is_waiting_while_queued_but_not_while_running_or_in_backoff() -> None:
    seen: dict[str, bool] = {}
    attempts: list[float] = []

    async def reconcile(key: ObjectKey) -> None:
        attempts.append(time.monotonic())
        seen.setdefault("running", q.is_waiting(key))
        raise RuntimeError("HTTP 503 Service Unavailable")

    async def scenario() -> None:
        q.add(A)
        assert q.is_waiting(A)
        assert not q.is_waiting(B)
        q.start()
        try:
            await wait_until(lambda: len(attempts) >= 1)
            await asyncio.sleep(WINDOW)
            assert len(attempts) == 1
            assert not q.is_waiting(A)  # in backoff: another ServiceLink's rollout does not wait for it
        finally:
            await q.stop()
        assert seen == {"running": False}

    q = queue(reconcile)
    run(scenario)
