"""How soon a WorkloadMapping whose kind is not followed yet is checked again by the mappings' queue, and that
none is read when they are off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from runtimes import bare_runtime

from servicelink.conditions import BUILT_IN_KIND
from servicelink.kube import ApiError
from servicelink.runtime import MAPPING_RECHECK_FIRST, MAPPING_RECHECK_MAX, _resync, recheck_delay
from servicelink.settings import Settings
from servicelink.workqueue import WorkQueue


def test_a_mapping_not_followed_yet_is_checked_after_two_seconds_then_twice_as_late_up_to_a_minute() -> None:
    assert recheck_delay(None) == MAPPING_RECHECK_FIRST == 2.0
    assert [recheck_delay(d) for d in (2.0, 4.0, 32.0, 60.0)] == [4.0, 8.0, 60.0, 60.0]
    assert MAPPING_RECHECK_MAX == 60.0


def test_with_workload_mappings_off_relist_reads_no_workload_mapping() -> None:
    """--workload-mappings=false: the operator reads nothing cluster-scoped, the chart's rbac.namespaced grants none."""

    class OnlyNamespaced:
        def __init__(self) -> None:
            self.listed: list[tuple[str, str | None]] = []

        def list_mappings(self) -> list[dict[str, Any]]:
            raise AssertionError("listed the WorkloadMappings")

        def list_objects(self, *, kind: str, namespace: str | None) -> list[dict[str, Any]]:
            self.listed.append((kind, namespace))
            return []

    kube = OnlyNamespaced()
    settings = Settings(namespaces=("gallery", "shop"), workload_mappings=False)
    with ThreadPoolExecutor(2) as executor:
        runtime = bare_runtime(settings, kube=kube, executor=executor)
        assert asyncio.run(runtime.relist()) == []
    assert sorted(kube.listed) == [("ServiceLink", "gallery"), ("ServiceLink", "shop")]


def test_a_mapping_status_the_api_server_refused_is_written_by_the_retry() -> None:
    """A refused status write raises (the mappings' queue retries it); the retry writes the status and its Event,
    as the mapping's status on the API server still says nothing of it."""

    class RefusesOnce:
        def __init__(self) -> None:
            self.written: list[dict[str, Any]] = []
            self.events: list[str] = []

        def patch_mapping_status(self, *, name: str, status: dict[str, Any]) -> None:
            if not self.written and not self.events:
                self.events.append("refused")
                raise ApiError(status=403, reason="Forbidden")
            self.written.append(status)

        def record_event(self, *, involved: dict[str, str], reason: str, message: str, warning: bool) -> None:
            self.events.append(reason)

    kube = RefusesOnce()
    queue = WorkQueue(reconcile=lambda key: asyncio.sleep(0, None), window=0.0, workers=1, is_transient=bool)
    queue.active.set()
    mapping = {"metadata": {"name": "deployments.apps", "generation": 1}, "spec": {"kind": "Deployment"}}
    with ThreadPoolExecutor(2) as executor:
        runtime = bare_runtime(Settings(), kube=kube, executor=executor, queue=queue)
        runtime.mapping_changed(mapping)

        async def check_twice() -> None:
            with pytest.raises(ApiError):
                await runtime.reconcile_mapping(runtime.mappings["deployments.apps"])
            await runtime.reconcile_mapping(runtime.mappings["deployments.apps"])  # the retry, as the queue runs it

        asyncio.run(check_twice())
    assert [c["reason"] for s in kube.written for c in s["conditions"]] == [BUILT_IN_KIND]
    assert kube.events == ["refused", BUILT_IN_KIND]
    assert runtime.mappings["deployments.apps"]["status"] == kube.written[0]


class NotServed:
    """A cluster that serves no widgets: it counts the discovery reads of the mapping's checks."""

    def __init__(self, mapping: dict[str, Any]) -> None:
        self.mapping = mapping
        self.reads = 0

    def list_mappings(self) -> list[dict[str, Any]]:
        return [self.mapping]

    def list_objects(self, *, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        return []

    def served_kind(self, *, group: str, version: str, plural: str) -> str | None:
        self.reads += 1
        return None

    def patch_mapping_status(self, *, name: str, status: dict[str, Any]) -> None:
        self.mapping = {**self.mapping, "status": status}

    def record_event(self, *, involved: dict[str, str], reason: str, message: str, warning: bool) -> None:
        pass


def widgets(generation: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "widgets.example.com", "generation": generation},
        "spec": {"kind": "Widget", "version": "v1", "template": ".spec.template"},
    }


def test_resyncs_leave_a_mapping_not_followed_to_its_backoff_and_a_new_generation_is_checked_at_once() -> None:
    """Five resyncs, and the watch event of the status just written, within the 2 s before its first recheck read
    discovery no more: the mapping is checked once. An annotation its owner sets, and a new generation of its
    spec, are checked at once."""
    kube = NotServed(widgets(1))
    queue = WorkQueue(reconcile=lambda key: asyncio.sleep(0, None), window=0.0, workers=1, is_transient=bool)
    queue.active.set()
    with ThreadPoolExecutor(4) as executor:
        runtime = bare_runtime(Settings(resync_seconds=0.2), kube=kube, executor=executor, queue=queue)

        async def resync_five_times() -> None:
            runtime.mapping_queue.start()
            runtime.mapping_changed(kube.mapping)
            await wait_for(lambda: kube.reads == 1 and "status" in kube.mapping)
            runtime.mapping_changed(kube.mapping)  # kopf's event of the status written
            resync = asyncio.create_task(_resync(runtime))
            await asyncio.sleep(1.1)  # five resyncs; the first recheck is due 2 s after the first check
            resync.cancel()
            assert kube.reads == 1
            assert runtime.recheck_delays == {"widgets.example.com": MAPPING_RECHECK_FIRST}
            # Touched by its owner (as docs/how-to/follow-any-kind.md says to): checked at once.
            touched = widgets(1)
            touched["metadata"]["annotations"] = {"servicelink.dev/checked": "1"}
            kube.mapping = touched
            runtime.mapping_changed(kube.mapping)
            await wait_for(lambda: kube.reads == 2)
            kube.mapping = widgets(2)
            runtime.mapping_changed(kube.mapping)
            await wait_for(lambda: kube.reads == 3)
            await runtime.mapping_queue.stop()

        asyncio.run(asyncio.wait_for(resync_five_times(), 5.0))
    assert runtime.recheck_delays == {"widgets.example.com": MAPPING_RECHECK_FIRST}  # a new spec waits its shortest


async def wait_for(predicate: Callable[[], bool], within: float = 1.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)
