"""pacing.py and the slot rule of rollout.py: a cluster-wide cap on rollouts in flight, oldest waiting first."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
from test_plan import NS, body, deployment, service, world
from test_reconcile import FakeKube

from servicelink import conditions as c
from servicelink.kube import Kube
from servicelink.model import ROLLED_AT_ANNOTATION, WORKLOAD_RESOURCES, WorkloadKind, WorkloadResource
from servicelink.pacing import Pacer
from servicelink.reconcile import Reconciler
from servicelink.rollout import Rollout, WorkloadKey, count_in_flight, plan_slots
from servicelink.settings import Settings
from servicelink.views import WorkloadView

NOW = "2026-12-07T10:00:00Z"


def rollout(name: str, kind: WorkloadKind = "Deployment") -> Rollout:
    return Rollout(kind, NS, name, "gw", "abcd1234", frozenset({"gw"}), ("AUTH_SERVICE_URL",))


def view(name: str, kind: WorkloadKind = "Deployment", generation: int = 1) -> WorkloadView:
    return WorkloadView(WORKLOAD_RESOURCES[kind], NS, name, {}, {"gw": None}, None, generation=generation)


def key(name: str, kind: WorkloadKind = "Deployment") -> WorkloadKey:
    return (kind, NS, name)


def names(rollouts: list[Rollout]) -> list[str]:
    return [r.name for r in rollouts]


# --- The rule ------------------------------------------------------------------------------------


def test_no_cap_lets_every_rollout_go() -> None:
    go, held = plan_slots([rollout("a"), rollout("b")], workloads={}, in_flight={key("x"): NOW}, waiting=[], cap=0)
    assert (names(go), held) == (["a", "b"], [])


def test_slots_go_to_the_oldest_waiting_and_the_rest_wait_until_the_first_in_flight_times_out() -> None:
    in_flight = {key("x"): "2026-12-07T10:09:00Z", key("y"): "2026-12-07T10:05:00Z"}
    waiting = [key("c"), key("a"), key("b"), key("d")]
    go, held = plan_slots(
        [rollout("a"), rollout("b"), rollout("d")], workloads={}, in_flight=in_flight, waiting=waiting, cap=4
    )
    assert names(go) == ["a"]  # c is older, but another ServiceLink's: its slot is kept for it
    assert [(h.rollout.name, h.reason, h.due, h.why) for h in held] == [
        ("b", c.WAITING_FOR_ROLLOUT_SLOT, "2026-12-07T10:05:00Z", "at most 4 in flight"),
        ("d", c.WAITING_FOR_ROLLOUT_SLOT, "2026-12-07T10:05:00Z", "at most 4 in flight"),
    ]
    assert not held[0].timed


def test_a_full_cap_holds_all_but_a_workload_in_flight_already_and_a_cronjob() -> None:
    in_flight = {key("a"): NOW, key("b"): NOW}
    plans = [rollout("a"), rollout("nightly", "CronJob"), rollout("c")]
    workloads = {("CronJob", "nightly"): view("nightly", "CronJob")}
    go, held = plan_slots(plans, workloads=workloads, in_flight=in_flight, waiting=[key("c")], cap=2)
    assert names(go) == ["a", "nightly"]  # a's rollout is replaced, not added; a CronJob starts none
    assert names([h.rollout for h in held]) == ["c"]


def test_a_rollout_holds_its_slot_until_its_timeout() -> None:
    rolled = {key("old"): "2026-12-07T09:49:59Z", key("new"): "2026-12-07T09:59:00Z", key("odd"): "yesterday"}
    assert count_in_flight(rolled, timeout=600, now=NOW) == {
        key("new"): "2026-12-07T10:09:00Z",
        key("odd"): "2026-12-07T10:10:00Z",  # unreadable: counted from now, never freed early
    }


# --- The line ------------------------------------------------------------------------------------


def test_the_line_keeps_each_waiters_place_and_a_taken_slot_until_the_watch_sees_the_patch() -> None:
    pacer = Pacer(cap=2, timeout=600)
    pacer.line_up((NS, "one"), [key("b"), key("a")])
    pacer.line_up((NS, "two"), [key("c"), key("a")])
    pacer.line_up((NS, "one"), [key("a"), key("d")])  # b is no longer due for it: it leaves the line
    assert pacer.waiting() == [key("a"), key("c"), key("d")]
    assert pacer.first_in_line(2) == [(NS, "one"), (NS, "two")]
    assert pacer.first_in_line(0) == []

    pacer.take(key("a"), generation=1, now=NOW)  # for both ServiceLinks
    assert pacer.waiting() == [key("c"), key("d")]
    seen: dict[WorkloadKey, WorkloadView] = {key("a"): view("a", generation=1)}
    assert pacer.in_flight({}, workload=seen.get, now=NOW) == {key("a"): "2026-12-07T10:10:00Z"}
    seen[key("a")] = view("a", generation=2)  # the watch saw the patch: its own rolled-at counts from now on
    assert pacer.in_flight({}, workload=seen.get, now=NOW) == {}
    assert pacer.in_flight({key("a"): NOW}, workload=seen.get, now=NOW) == {key("a"): "2026-12-07T10:10:00Z"}

    pacer.take(key("c"), generation=1, now=NOW)
    pacer.release(key("c"))  # refused: the slot was not used
    pacer.leave((NS, "one"))
    assert pacer.in_flight({}, workload=seen.get, now=NOW) == {}
    assert pacer.waiting() == []


# --- A reconcile ---------------------------------------------------------------------------------


class RollingKube(FakeKube):
    """Patches as the API server does: a new generation its controller has not seen, stamped rolled-at."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.patched: list[str] = []

    def set_workload_config_hash(
        self, *, resource: WorkloadResource, name: str, value: str, stamp: Mapping[str, str] | None = None, **_: Any
    ) -> bool:
        self._call("set_workload_config_hash")
        self.patched.append(name)
        self.cache.put_workload(resource, rolling(name, config_hash=value, rolled_at=dict(stamp or {})))
        return True

    def complete(self, name: str) -> list[tuple[str, str]]:
        """The controller finished ``name``'s rollout; return the ServiceLinks its watch event calls on."""
        workload = self.cache.workload("Deployment", NS, name)
        assert workload is not None
        done = rolling(name, config_hash=workload.config_hash, rolled_at={ROLLED_AT_ANNOTATION: NOW})
        done["status"] = {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
        return self.cache.put_workload(WORKLOAD_RESOURCES["Deployment"], done)


def rolling(name: str, *, config_hash: str | None, rolled_at: Mapping[str, str]) -> dict[str, Any]:
    found = deployment(name, reads="gw", config_hash=config_hash)
    found["metadata"] |= {"generation": 2, "annotations": dict(rolled_at)}
    found["status"] = {"observedGeneration": 1}
    return found


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def test_a_cap_of_one_rolls_three_consumers_one_after_another_each_once(executor: ThreadPoolExecutor) -> None:
    sl = body("gateway", {"key": "AUTH_URL", "service": "auth-service"})
    kube = RollingKube(world(sl))
    for name in ("a", "b", "c"):
        kube.cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment(name, reads="gw"))
    requeued: list[tuple[str, str]] = []
    counted: list[tuple[int, int]] = []
    run = Reconciler(
        kube=cast(Kube, kube),
        world=kube.cache,
        settings=Settings(max_rollouts_in_flight=1),
        executor=executor,
        requeue=requeued.append,
        on_pacing=lambda in_flight, waiting: counted.append((in_flight, waiting)),
    )
    asyncio.run(run.reconcile(NS, "gateway"))  # the first: nothing rolled, the ConfigMap is new
    kube.cache.put_service(service("auth-service", 4000))

    asyncio.run(run.reconcile(NS, "gateway"))
    assert kube.patched == ["a"]
    status = kube.cache.servicelink(NS, "gateway")["status"]  # type: ignore[index]
    rolled_out = next(cond for cond in status["conditions"] if cond["type"] == c.ROLLED_OUT)
    assert rolled_out["reason"] == c.WAITING_FOR_ROLLOUT_SLOT
    assert f"Deployment {NS}/b waits for a rollout slot (at most 1 in flight)" in rolled_out["message"]
    assert [(d["key"], d["reason"], d.get("due")) for d in status["deferred"]] == [
        ("AUTH_URL", c.WAITING_FOR_ROLLOUT_SLOT, None)
    ]
    assert counted[-1] == (1, 2)

    asyncio.run(run.reconcile(NS, "gateway"))  # a is still rolling: nothing more
    assert kube.patched == ["a"]
    kube.cache.put_service(service("auth-service", 5000))  # a change while b and c wait: still one rollout each
    asyncio.run(run.reconcile(NS, "gateway"))
    assert kube.patched == ["a", "a"]  # in flight already: its rollout is replaced, no second slot

    assert kube.complete("a") == [(NS, "gateway")]  # its watch event reconciles the ServiceLink
    asyncio.run(run.reconcile(NS, "gateway"))
    assert kube.patched == ["a", "a", "b"]
    kube.complete("b")
    asyncio.run(run.reconcile(NS, "gateway"))
    kube.complete("c")
    asyncio.run(run.reconcile(NS, "gateway"))
    assert kube.patched == ["a", "a", "b", "c"]
    status = kube.cache.servicelink(NS, "gateway")["status"]  # type: ignore[index]
    assert "deferred" not in status
    assert next(cond for cond in status["conditions"] if cond["type"] == c.ROLLED_OUT)["status"] == "True"
    assert counted[-1] == (0, 0)
