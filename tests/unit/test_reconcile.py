"""reconcile.py: the order in which a plan is run, against an in-memory stand-in for ``Kube`` (no API server).

The stand-in keeps ConfigMaps as server-side apply leaves them and writes the
ServiceLink's status and finalizers back into the real ``Cache``, as the
watches would; what each call decides is tested in test_plan.py.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
from test_plan import AUTH, NS, apply_merge_patch, body, configmap, deployment, world

from servicelink import conditions as c
from servicelink.alerts import NOT_READY, Alert
from servicelink.cache import Cache
from servicelink.kube import ApiError, Conflict, Kube
from servicelink.model import FIELD_MANAGER, FINALIZER, WORKLOAD_RESOURCES, WorkloadResource
from servicelink.reconcile import Reconciler, TransientError
from servicelink.settings import Settings


class FakeKube:
    """The calls ``Reconciler`` makes, kept in memory; ``fail`` queues an error for a method's next call."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.events: list[tuple[str, bool]] = []
        self.failures: dict[str, list[Exception]] = {}

    def fail(self, method: str, error: Exception) -> None:
        self.failures.setdefault(method, []).append(error)

    def _call(self, method: str) -> None:
        self.calls.append(method)
        if self.failures.get(method):
            raise self.failures[method].pop(0)

    def _servicelink(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.cache.servicelink(namespace, name)
        assert found is not None
        return {**found, "metadata": dict(found["metadata"])}

    def get_configmap(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        self._call("get_configmap")
        return copy.deepcopy(self.configmaps.get((namespace, name)))

    def apply_configmap(self, *, body: Mapping[str, Any], force: bool) -> dict[str, Any]:
        self._call("apply_configmap")
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        stored = self.configmaps.get(key)
        if stored is not None and metadata.get("resourceVersion") not in (None, stored["metadata"]["resourceVersion"]):
            raise Conflict("the object has been modified")
        before = stored or configmap({})
        others = [m for m in before["metadata"]["managedFields"] if m["manager"] != FIELD_MANAGER]
        theirs = {f[2:] for m in others for f in m["fieldsV1"]["f:data"]}
        data = {k: v for k, v in before["data"].items() if k in theirs} | dict(body["data"])
        after = configmap(
            data, ours=tuple(body["data"]), shared=stored is not None and "annotations" in stored["metadata"]
        )
        after["metadata"] |= {
            "name": key[1],
            "resourceVersion": str(int(before["metadata"]["resourceVersion"]) + 1),
            "managedFields": after["metadata"]["managedFields"] + others,
        }
        if "ownerReferences" in metadata:
            after["metadata"]["ownerReferences"] = metadata["ownerReferences"]
        self.configmaps[key] = after
        return copy.deepcopy(after)  # what the server returns is the caller's own

    def patch_servicelink_status(self, *, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self._call("patch_servicelink_status")
        sl = self._servicelink(namespace, name)
        sl["status"] = apply_merge_patch(sl.get("status") or {}, status)
        self.cache.put_servicelink(sl)

    def set_servicelink_finalizers(
        self, *, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> None:
        self._call("set_servicelink_finalizers")
        sl = self._servicelink(namespace, name)
        sl["metadata"]["finalizers"] = finalizers
        self.cache.put_servicelink(sl)

    def set_workload_config_hash(
        self,
        *,
        resource: WorkloadResource,
        namespace: str,
        name: str,
        annotation: str,
        value: str,
        resource_version: str,
        stamp: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        in_place: bool = False,
        restart_at: str | None = None,
    ) -> bool:
        self._call("set_workload_config_hash")
        workload = self.cache.workload("Deployment", namespace, name)
        assert workload is not None
        self.cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment(name, reads="gw", config_hash=value))
        return True

    def record_event(self, *, involved: Mapping[str, str], reason: str, message: str, warning: bool = False) -> None:
        self._call("record_event")
        self.events.append((reason, warning))


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def reconciler(kube: FakeKube, executor: ThreadPoolExecutor) -> Reconciler:
    return Reconciler(kube=cast(Kube, kube), world=kube.cache, settings=Settings(), executor=executor)


def reconcile(run: Reconciler, name: str = "gateway") -> float | None:
    return asyncio.run(run.reconcile(NS, name))


def status(kube: FakeKube, name: str = "gateway") -> Mapping[str, Any]:
    found = kube.cache.servicelink(NS, name)
    assert found is not None
    return found.get("status") or {}


def reason(kube: FakeKube, kind: str) -> str:
    return str(next(cond["reason"] for cond in status(kube)["conditions"] if cond["type"] == kind))


def changed_after_first_reconcile(executor: ThreadPoolExecutor) -> tuple[FakeKube, Reconciler]:
    """A ServiceLink reconciled once, with a consumer; then the user edits its link, and its value changes."""
    kube = FakeKube(world(body()))
    kube.cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("web", reads="gw"))
    run = reconciler(kube, executor)
    reconcile(run)
    sl = kube._servicelink(NS, "gateway")
    sl["spec"] = {**sl["spec"], "links": [{**sl["spec"]["links"][0], "path": "/v2"}]}
    kube.cache.put_servicelink(sl)
    return kube, run


def test_a_new_servicelink_creates_its_configmap_reports_then_writes_its_status(
    executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="servicelink.reconcile")
    kube = FakeKube(world(body()))
    kube.cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("web", reads="gw"))
    run = reconciler(kube, executor)
    assert reconcile(run) is None
    assert kube.calls == ["get_configmap", "apply_configmap", "record_event", "patch_servicelink_status"]
    assert kube.events == [("ValueChanged", False)]
    assert kube.configmaps[(NS, "gw")]["data"] == {"AUTH_URL": AUTH}
    assert f"{NS}/gateway: values changed: AUTH_URL: <unset> -> {AUTH}" in caplog.text  # what operators grep for
    assert status(kube)["values"] == {"AUTH_URL": AUTH}
    # Its status comes back through the watch: the next reconcile reads and writes nothing.
    kube.calls.clear()
    reconcile(run)
    assert kube.calls == ["get_configmap"]


def test_a_change_writes_over_the_copy_last_seen_and_patches_the_consumer_before_reporting_it(
    executor: ThreadPoolExecutor,
) -> None:
    kube, run = changed_after_first_reconcile(executor)
    kube.calls.clear()
    reconcile(run)
    assert kube.calls == [
        "apply_configmap",  # guarded by the version our last apply returned: no read first
        "set_workload_config_hash",
        "record_event",
        "patch_servicelink_status",
    ]
    assert [r["name"] for r in status(kube)["rolledOut"]] == ["web"]
    web = kube.cache.workload("Deployment", NS, "web")
    assert web is not None
    assert web.config_hash is not None


def test_a_shared_configmap_holds_deletion_first_and_gives_the_keys_back(executor: ThreadPoolExecutor) -> None:
    kube = FakeKube(world(body()))
    kube.configmaps[(NS, "gw")] = configmap({"LOG_LEVEL": "debug"}, shared=True, LOG_LEVEL="helm")
    run = reconciler(kube, executor)
    reconcile(run)
    assert kube.calls[:3] == ["get_configmap", "set_servicelink_finalizers", "apply_configmap"]
    assert kube.configmaps[(NS, "gw")]["data"] == {"LOG_LEVEL": "debug", "AUTH_URL": AUTH}
    gone = kube._servicelink(NS, "gateway")
    assert gone["metadata"]["finalizers"] == [FINALIZER]
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kube.cache.put_servicelink(gone)
    kube.calls.clear()
    reconcile(run)
    assert kube.calls == ["get_configmap", "apply_configmap", "set_servicelink_finalizers"]
    assert kube.configmaps[(NS, "gw")]["data"] == {"LOG_LEVEL": "debug"}
    assert kube._servicelink(NS, "gateway")["metadata"]["finalizers"] == []


def test_a_configmap_not_shared_is_reported_and_looked_at_again(executor: ThreadPoolExecutor) -> None:
    kube = FakeKube(world(body()))
    kube.configmaps[(NS, "gw")] = configmap({"LOG_LEVEL": "debug"}, LOG_LEVEL="helm")
    assert reconcile(reconciler(kube, executor)) == pytest.approx(15.0)
    assert kube.calls == ["get_configmap", "patch_servicelink_status", "record_event"]
    assert kube.events == [(c.CONFIGMAP_NOT_SHARED, True)]


def test_a_lost_race_on_the_configmap_is_retried_without_a_status(executor: ThreadPoolExecutor) -> None:
    kube = FakeKube(world(body()))
    run = reconciler(kube, executor)
    kube.fail("apply_configmap", Conflict("modified"))
    with pytest.raises(TransientError, match="changed while we wrote it"):
        reconcile(run)
    assert kube.calls == ["get_configmap", "apply_configmap"]
    kube.calls.clear()
    reconcile(run)
    assert kube.calls == ["get_configmap", "apply_configmap", "record_event", "patch_servicelink_status"]


def test_a_copy_no_longer_current_is_read_again_and_decides_nothing(executor: ThreadPoolExecutor) -> None:
    kube, run = changed_after_first_reconcile(executor)
    kube.configmaps[(NS, "gw")]["metadata"]["resourceVersion"] = "99"  # someone else wrote it meanwhile
    kube.calls.clear()
    reconcile(run)
    assert kube.calls[:3] == ["apply_configmap", "get_configmap", "apply_configmap"]
    assert kube.configmaps[(NS, "gw")]["data"] == {"AUTH_URL": f"{AUTH}/v2"}


def test_consent_withdrawn_since_the_copy_was_seen_stops_the_write(executor: ThreadPoolExecutor) -> None:
    kube = FakeKube(world(body()))
    kube.configmaps[(NS, "gw")] = configmap({"LOG_LEVEL": "debug"}, shared=True, LOG_LEVEL="helm")
    run = reconciler(kube, executor)
    reconcile(run)
    stored = kube.configmaps[(NS, "gw")]
    del stored["metadata"]["annotations"]  # the owner takes its consent back: a new version
    stored["metadata"]["resourceVersion"] = "99"
    sl = kube._servicelink(NS, "gateway")
    sl["spec"] = {**sl["spec"], "links": [{**sl["spec"]["links"][0], "path": "/v2"}]}
    kube.cache.put_servicelink(sl)
    kube.calls.clear()
    assert reconcile(run) == pytest.approx(15.0)
    assert kube.calls[:2] == ["apply_configmap", "get_configmap"]
    assert "apply_configmap" not in kube.calls[1:]
    assert kube.configmaps[(NS, "gw")]["data"]["AUTH_URL"] == AUTH
    assert reason(kube, c.SYNCED) == c.CONFIGMAP_NOT_SHARED


@pytest.mark.parametrize("status_code", [429, 500, 503])
def test_a_transient_error_stops_the_reconcile_for_a_retry(executor: ThreadPoolExecutor, status_code: int) -> None:
    kube = FakeKube(world(body()))
    kube.fail("get_configmap", ApiError(status=status_code, reason="busy"))
    with pytest.raises(TransientError, match=f"HTTP {status_code}"):
        reconcile(reconciler(kube, executor))
    assert kube.calls == ["get_configmap"]


def test_a_refused_write_is_a_status_and_one_warning(executor: ThreadPoolExecutor) -> None:
    kube = FakeKube(world(body()))
    kube.fail("apply_configmap", ApiError(status=403, reason="Forbidden"))
    reconcile(reconciler(kube, executor))
    assert kube.calls == ["get_configmap", "apply_configmap", "patch_servicelink_status", "record_event"]
    assert kube.events == [(c.WRITE_FAILED, True)]
    assert reason(kube, c.SYNCED) == c.WRITE_FAILED


def test_a_refused_event_does_not_fail_the_reconcile(executor: ThreadPoolExecutor) -> None:
    kube = FakeKube(world(body()))
    kube.fail("record_event", ApiError(status=500, reason="busy"))
    reconcile(reconciler(kube, executor))
    assert kube.calls[-1] == "patch_servicelink_status"
    assert status(kube)["values"] == {"AUTH_URL": AUTH}


def test_a_lost_race_on_a_workload_keeps_its_rollout_for_the_retry(executor: ThreadPoolExecutor) -> None:
    kube, run = changed_after_first_reconcile(executor)
    kube.fail("set_workload_config_hash", Conflict("modified"))
    with pytest.raises(TransientError, match="Deployment gallery/web changed meanwhile"):
        reconcile(run)
    kube.calls.clear()
    reconcile(run)  # the ConfigMap holds the new value already; the rollout owed goes out
    assert kube.calls == ["get_configmap", "set_workload_config_hash", "record_event", "patch_servicelink_status"]
    assert kube.events[-1] == ("RolledOut", False)
    web = kube.cache.workload("Deployment", NS, "web")
    assert web is not None
    assert web.config_hash is not None


def test_a_refused_patch_stays_owed_in_the_status_and_a_restarted_operator_rolls_it_once(
    executor: ThreadPoolExecutor,
) -> None:
    kube, run = changed_after_first_reconcile(executor)
    kube.fail("set_workload_config_hash", ApiError(422, "Unprocessable Entity"))
    reconcile(run)
    assert reason(kube, c.ROLLED_OUT) == c.ROLLOUT_FAILED
    assert [(d["key"], d["reason"]) for d in status(kube)["deferred"]] == [("AUTH_URL", c.ROLLOUT_FAILED)]
    restarted = reconciler(kube, executor)  # nothing in memory: what is owed is read from the status
    kube.calls.clear()
    reconcile(restarted)
    assert kube.calls.count("set_workload_config_hash") == 1
    assert "deferred" not in status(kube)
    kube.calls.clear()
    reconcile(restarted)
    assert "set_workload_config_hash" not in kube.calls


def test_an_invalid_spec_is_reported_once(executor: ThreadPoolExecutor) -> None:
    invalid = body()
    invalid["spec"]["links"] = []
    kube = FakeKube(world(invalid))
    run = reconciler(kube, executor)
    reconcile(run)
    assert kube.calls == ["patch_servicelink_status", "record_event"]
    assert kube.events == [(c.INVALID_SPEC, True)]
    kube.calls.clear()
    reconcile(run)
    assert kube.calls == []


def test_a_configmap_kubernetes_writes_itself_is_never_created(executor: ThreadPoolExecutor) -> None:
    """A ServiceLink that passed a CRD without the rule, naming kube-root-ca.crt: reported, nothing written."""
    reserved = body()
    reserved["spec"]["configMapName"] = "kube-root-ca.crt"
    kube = FakeKube(world(reserved))
    reconcile(reconciler(kube, executor))
    assert kube.calls == ["patch_servicelink_status", "record_event"]
    assert kube.configmaps == {}
    assert kube.events == [(c.INVALID_SPEC, True)]
    ready = next(cond for cond in status(kube)["conditions"] if cond["type"] == "Ready")
    assert (ready["reason"], ready["message"].split(": Value error, ")[0]) == (c.INVALID_SPEC, "spec.configMapName")
    assert "name a ConfigMap of your own" in ready["message"]


def test_each_alert_is_queued_once_beside_its_event_and_a_lost_service_alerts_not_ready(
    executor: ThreadPoolExecutor,
) -> None:
    kube, run = changed_after_first_reconcile(executor)
    queued: list[Alert] = []
    run.alert = queued.append
    reconcile(run)
    (changed,) = queued
    assert (changed.reason, changed.namespace, changed.name) == ("ValueChanged", NS, "gateway")
    assert changed.changes == (f"AUTH_URL: {AUTH} -> {AUTH}/v2",)
    assert changed.rolled == (f"Deployment {NS}/web",)
    queued.clear()
    reconcile(run)  # nothing changed: no alert
    assert queued == []
    assert reason(kube, c.READY) == c.ROLLOUT_IN_PROGRESS  # on its way: a Service lost now still alerts
    kube.cache.drop_service(NS, "auth-service")
    reconcile(run)
    (lost,) = queued
    assert (lost.reason, lost.condition_reason) == (NOT_READY, c.SERVICE_NOT_FOUND)
