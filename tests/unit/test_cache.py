"""The cache the reconciles read: kept by watch events, rebuilt by relists."""

from __future__ import annotations

from typing import Any

import pytest

from servicelink.cache import Cache, claim_of, endpoints_of, linked_services
from servicelink.mapping import parse_or_refuse
from servicelink.model import WORKLOAD_RESOURCES, WorkloadResource
from servicelink.views import Endpoints


def servicelink(
    name: str, configmap: str, *links: dict[str, Any], namespace: str = "gallery", **metadata: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            **metadata,
        },
        "spec": {"configMapName": configmap, "links": list(links)},
    }


def service(name: str, port: int, namespace: str = "gallery") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"ports": [{"port": port}]}}


def deployment(name: str, *, env_from: str, namespace: str = "gallery") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"spec": {"containers": [{"envFrom": [{"configMapRef": {"name": env_from}}]}]}}},
    }


def endpointslice(name: str, service_name: str, *ready: bool | None) -> dict[str, Any]:
    endpoints = [{"conditions": {} if r is None else {"ready": r}} for r in ready]
    return {
        "metadata": {"name": name, "namespace": "gallery", "labels": {"kubernetes.io/service-name": service_name}},
        "endpoints": endpoints,
    }


def test_a_service_event_finds_exactly_the_servicelinks_that_use_it() -> None:
    cache = Cache()
    cache.put_servicelink(
        servicelink("gateway", "gw", {"key": "A", "service": "auth-service"}, {"key": "B", "service": "app-service"})
    )
    cache.put_servicelink(servicelink("worker", "wk", {"key": "B", "service": "app-service"}))
    cache.put_servicelink(servicelink("x", "x", {"key": "A", "service": "auth-service", "namespace": "identity"}))
    assert cache.servicelinks_of(("gallery", "auth-service")) == [("gallery", "gateway")]
    assert cache.servicelinks_of(("gallery", "app-service")) == [("gallery", "gateway"), ("gallery", "worker")]
    assert cache.servicelinks_of(("identity", "auth-service")) == [("gallery", "x")]
    # An edit that drops a link stops the Service from triggering it.
    cache.put_servicelink(servicelink("gateway", "gw", {"key": "A", "service": "auth-service"}))
    assert cache.servicelinks_of(("gallery", "app-service")) == [("gallery", "worker")]
    cache.drop_servicelink("gallery", "worker")
    assert cache.servicelinks_of(("gallery", "app-service")) == []
    assert cache.servicelink("gallery", "worker") is None


def test_claims_by_configmap_leave_out_servicelinks_being_deleted() -> None:
    cache = Cache()
    cache.put_servicelink(servicelink("first", "shared", {"key": "A", "service": "a"}))
    cache.put_servicelink(
        servicelink("second", "shared", {"key": "B", "service": "b"}, deletionTimestamp="2026-01-01T00:00:01Z")
    )
    assert [(c.name, c.keys) for c in cache.claims("gallery", "shared")] == [("first", frozenset({"A"}))]


def test_endpoints_add_up_over_slices_and_unknown_readiness_counts_as_ready() -> None:
    cache = Cache()
    cache.put_servicelink(servicelink("gateway", "gw", {"key": "A", "service": "auth"}))
    assert cache.put_endpointslice(endpointslice("a-1", "auth", True, False)) == [("gallery", "gateway")]
    cache.put_endpointslice(endpointslice("a-2", "auth", None))
    assert cache.endpoints(("gallery", "auth")) == Endpoints(ready=2, total=3)
    assert cache.drop_endpointslice("gallery", "a-1") == [("gallery", "gateway")]
    assert cache.endpoints(("gallery", "auth")) == Endpoints(ready=1, total=1)
    assert cache.put_endpointslice({"metadata": {"name": "orphan", "namespace": "gallery"}}) == []
    assert cache.endpoints(("gallery", "nothing")) is None


def test_workloads_by_the_configmap_they_read_follow_edits() -> None:
    cache = Cache()
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("gateway", env_from="gw"))
    cache.put_workload(WORKLOAD_RESOURCES["StatefulSet"], deployment("db", env_from="gw"))
    assert [w.name for w in cache.workloads("gallery", reading="gw")] == ["gateway", "db"]
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("gateway", env_from="other"))
    assert [w.name for w in cache.workloads("gallery", reading="gw")] == ["db"]
    assert [w.name for w in cache.workloads("gallery", reading=None)] == ["gateway", "db"]
    cache.drop_workload("StatefulSet", "gallery", "db")
    assert cache.workloads("gallery", reading="gw") == []
    gateway = cache.workload("Deployment", "gallery", "gateway")
    assert gateway is not None
    assert gateway.reads == {"other": None}
    assert cache.workload("StatefulSet", "gallery", "db") is None


def test_a_relist_forgets_what_was_deleted_meanwhile() -> None:
    cache = Cache()
    cache.put_service(service("auth", 3001))
    cache.put_service(service("gone", 1))
    cache.put_servicelink(servicelink("old", "o", {"key": "A", "service": "gone"}))
    cache.replace_servicelinks([servicelink("new", "n", {"key": "A", "service": "auth"})], since=cache.mark())
    assert cache.servicelink_keys() == [("gallery", "new")]
    assert cache.servicelinks_of(("gallery", "gone")) == []
    assert cache.servicelinks_of(("gallery", "auth")) == [("gallery", "new")]


def test_helpers_tolerate_malformed_specs() -> None:
    assert linked_services("gallery", {"links": "not a list"}) == set()
    assert linked_services("gallery", {"links": [{"key": "A"}, "junk", {"service": "s"}]}) == {("gallery", "s")}
    assert claim_of({"metadata": {"name": "x"}, "spec": {"links": []}}) is None
    assert endpoints_of({}) == Endpoints(ready=0, total=0)


def test_only_the_operators_own_status_write_needs_no_reconcile() -> None:
    from servicelink.cache import needs_reconcile

    before = servicelink("gateway", "gw", {"key": "A", "service": "auth"}, resourceVersion="1")
    status_only = {**before, "metadata": {**before["metadata"], "resourceVersion": "2"}, "status": {"hash": "x"}}
    assert not needs_reconcile(before, status_only)
    assert needs_reconcile(None, before)
    assert needs_reconcile(before, servicelink("gateway", "gw", {"key": "B", "service": "auth"}))
    deleting = {**before, "metadata": {**before["metadata"], "deletionTimestamp": "2026-01-01T00:00:09Z"}}
    assert needs_reconcile(before, deleting)


def test_a_relist_never_undoes_an_event_newer_than_its_list() -> None:
    cache = Cache()
    cache.put_servicelink(servicelink("gateway", "gw", {"key": "A", "service": "auth"}))
    cache.put_servicelink(servicelink("doomed", "d", {"key": "A", "service": "auth"}))
    since = cache.mark()  # the relist's list begins: it will see gateway reading auth, doomed alive
    cache.put_servicelink(servicelink("gateway", "gw", {"key": "A", "service": "db"}))  # events while it runs
    cache.drop_servicelink("gallery", "doomed")
    cache.put_servicelink(servicelink("born", "b", {"key": "A", "service": "auth"}))
    listed = [
        servicelink("gateway", "gw", {"key": "A", "service": "auth"}),
        servicelink("doomed", "d", {"key": "A", "service": "auth"}),
    ]
    cache.replace_servicelinks(listed, since=since)
    assert cache.servicelinks_of(("gallery", "db")) == [("gallery", "gateway")]
    assert sorted(cache.servicelink_keys()) == [("gallery", "born"), ("gallery", "gateway")]
    # The next relist, begun after those events, is the truth again.
    cache.replace_servicelinks(listed[:1], since=cache.mark())
    assert cache.servicelink_keys() == [("gallery", "gateway")]
    assert cache.servicelinks_of(("gallery", "auth")) == [("gallery", "gateway")]


def test_what_the_cache_holds_of_a_kind_is_listed_by_namespace_for_an_informer_to_forget() -> None:
    cache = Cache()
    cache.put_service(service("auth", 3001))
    cache.put_service(service("auth", 3001, namespace="shop"))
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("gateway", env_from="gw"))
    cache.put_job(job("migrate", env_from="gw"))
    assert cache.held("Service", None) == [("gallery", "auth"), ("shop", "auth")]
    assert cache.held("Service", "shop") == [("shop", "auth")]
    assert cache.held("Deployment", "gallery") == [("gallery", "gateway")]
    assert cache.held("StatefulSet", None) == []
    assert cache.held("Job", "gallery") == [("gallery", "migrate")]
    assert cache.held("Secret", None) == []  # this install reads no Secret


def test_dropping_workloads_and_slices_keeps_their_indexes() -> None:
    cache = Cache()
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("gateway", env_from="gw"))
    cache.put_endpointslice(endpointslice("a-1", "auth", True))
    assert [w.name for w in cache.workloads("gallery", reading="gw")] == ["gateway"]
    assert cache.endpoints(("gallery", "auth")) == Endpoints(ready=1, total=1)
    cache.drop_workload("Deployment", "gallery", "gateway")
    cache.drop_endpointslice("gallery", "a-1")
    assert cache.workloads("gallery", reading="gw") == []
    assert cache.endpoints(("gallery", "auth")) is None


def test_only_a_change_a_servicelink_reads_counts_as_a_service_change() -> None:
    cache = Cache()
    cache.put_servicelink(servicelink("gateway", "gw", {"key": "A", "service": "auth"}))
    gateway = [("gallery", "gateway")]
    assert cache.put_service(service("auth", 3001)) == gateway
    assert cache.put_service(service("auth", 3001)) == []  # replayed, as at start
    labelled = service("auth", 3001)
    labelled["metadata"]["labels"] = {"tier": "backend"}
    assert cache.put_service(labelled) == []
    assert cache.put_service(service("auth", 3002)) == gateway
    assert cache.drop_service("gallery", "auth") == gateway
    assert cache.drop_service("gallery", "auth") == []


def test_an_endpointslice_names_its_servicelinks_only_when_its_counts_change() -> None:
    cache = Cache()
    cache.put_servicelink(servicelink("gateway", "gw", {"key": "A", "service": "auth"}))
    gateway = [("gallery", "gateway")]
    assert cache.put_endpointslice(endpointslice("a-1", "auth", True)) == gateway
    assert cache.put_endpointslice(endpointslice("a-1", "auth", True)) == []
    assert cache.put_endpointslice(endpointslice("a-1", "auth", False)) == gateway
    assert cache.endpoints(("gallery", "auth")) == Endpoints(ready=0, total=1)


def test_a_workload_finds_the_servicelinks_of_what_it_reads_and_those_that_rolled_it() -> None:
    cache = Cache()
    cache.put_servicelink(servicelink("gateway", "gateway-config", {"key": "A", "service": "auth"}))
    opted_in = servicelink("selector", "other-config", {"key": "B", "service": "auth"})
    cache.put_servicelink({**opted_in, "status": {"rolledOut": [{"kind": "Deployment", "name": "web", "hash": "ab"}]}})
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], deployment("web", env_from="gateway-config"))
    assert cache.servicelinks_rolling(("Deployment", "gallery", "web")) == [
        ("gallery", "gateway"),
        ("gallery", "selector"),
    ]
    cache.put_servicelink(opted_in)  # its next rollout names other workloads
    assert cache.servicelinks_rolling(("Deployment", "gallery", "web")) == [("gallery", "gateway")]
    cache.drop_servicelink("gallery", "gateway")
    assert cache.servicelinks_rolling(("Deployment", "gallery", "web")) == []


def test_a_servicelink_change_reconciles_it_and_its_configmap_siblings_but_its_own_status_write_nothing() -> None:
    cache = Cache()
    cache.put_servicelink(servicelink("first", "shared", {"key": "A", "service": "a"}))
    second = servicelink("second", "shared", {"key": "A", "service": "b"})
    assert cache.put_servicelink(second) == [("gallery", "second"), ("gallery", "first"), ("gallery", "second")]
    assert cache.put_servicelink({**second, "status": {"observedGeneration": 1}}) == []
    assert cache.drop_servicelink("gallery", "second") == [("gallery", "second"), ("gallery", "first")]


def test_a_workload_names_the_servicelinks_that_rolled_it_only_when_its_rollout_settles() -> None:
    cache = Cache()
    cache.put_servicelink(servicelink("gateway", "gw", {"key": "A", "service": "auth"}))
    rolling = deployment("web", env_from="gw")
    rolling["metadata"]["generation"] = 2
    assert cache.put_workload(WORKLOAD_RESOURCES["Deployment"], rolling) == []  # first seen: nothing to compare with
    rolled = {
        **deployment("web", env_from="gw"),
        "status": {"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
    }
    assert cache.put_workload(WORKLOAD_RESOURCES["Deployment"], rolled) == [("gallery", "gateway")]
    assert cache.put_workload(WORKLOAD_RESOURCES["Deployment"], rolled) == []  # a replay, or a replica coming up
    assert cache.drop_workload("Deployment", "gallery", "web") == []


def job(name: str, *, env_from: str, complete: bool = False) -> dict[str, Any]:
    status = {"conditions": [{"type": "Complete", "status": "True"}]} if complete else {"active": 1}
    return {**deployment(name, env_from=env_from), "status": status}


def test_only_running_jobs_that_read_a_configmap_are_kept() -> None:
    cache = Cache()
    assert cache.put_job(job("migrate", env_from="gw")) == []
    cache.put_job(job("done", env_from="gw", complete=True))
    cache.put_job({"metadata": {"name": "reads-nothing", "namespace": "gallery"}})
    assert [j.name for j in cache.jobs("gallery", reading="gw")] == ["migrate"]
    assert cache.jobs("gallery", reading="other") == []
    cache.put_job(job("migrate", env_from="gw", complete=True))
    assert cache.jobs("gallery", reading="gw") == []
    cache.put_job(job("late", env_from="gw"))
    assert [j.name for j in cache.jobs("gallery", reading="gw")] == ["late"]
    cache.drop_job("gallery", "late")
    assert cache.jobs("gallery", reading="gw") == []


def test_a_job_that_finishes_or_goes_reconciles_the_servicelinks_listing_it() -> None:
    cache = Cache()
    listing = servicelink("gateway", "gw", {"key": "A", "service": "auth"})
    cache.put_servicelink({**listing, "status": {"staleJobs": [{"name": "migrate", "hash": "unknown", "keys": ["A"]}]}})
    cache.put_servicelink(servicelink("other", "gw2", {"key": "B", "service": "auth"}))
    assert cache.put_job(job("migrate", env_from="gw")) == []  # running: nothing to update
    assert cache.put_job(job("migrate", env_from="gw", complete=True)) == [("gallery", "gateway")]
    assert cache.drop_job("gallery", "migrate") == [("gallery", "gateway")]
    assert cache.drop_job("gallery", "unlisted") == []
    cache.put_servicelink(listing)  # its status no longer lists it
    assert cache.drop_job("gallery", "migrate") == []


def test_a_deployment_knows_the_argo_rollouts_whose_workload_ref_names_it() -> None:
    cache = Cache()

    def rollout(name: str, ref: str | None) -> dict[str, Any]:
        spec = {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ref}} if ref else {}
        return {"metadata": {"name": name, "namespace": "gallery"}, "spec": spec}

    cache.put_workload(WORKLOAD_RESOURCES["Rollout"], rollout("web", "web-template"))
    cache.put_workload(WORKLOAD_RESOURCES["Rollout"], rollout("canary", "web-template"))
    assert cache.rollouts_templated_by("gallery", "web-template") == ["canary", "web"]
    assert cache.rollouts_templated_by("other", "web-template") == []
    # Pointed elsewhere, or deleted, it is no longer named.
    cache.put_workload(WORKLOAD_RESOURCES["Rollout"], rollout("canary", None))
    cache.drop_workload("Rollout", "gallery", "web")
    assert cache.rollouts_templated_by("gallery", "web-template") == []


def test_a_rollout_seeing_its_deployments_new_template_settles_the_servicelinks_that_rolled_that_deployment() -> None:
    cache = Cache()
    cache.put_servicelink(servicelink("gateway", "gw", {"key": "A", "service": "auth"}))
    template = {
        **deployment("web-template", env_from="gw"),
        "status": {"observedGeneration": 5},
    }
    template["metadata"]["generation"] = 5
    template["spec"]["replicas"] = 0  # Argo Rollouts keeps it at zero: done as soon as it is seen

    def rollout(seen: str, phase: str) -> dict[str, Any]:
        return {
            "metadata": {"name": "web", "namespace": "gallery", "generation": 1},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-template"}},
            "status": {"observedGeneration": "1", "workloadObservedGeneration": seen, "phase": phase},
        }

    rolled = ("Deployment", "gallery", "web-template")
    assert cache.put_workload(WORKLOAD_RESOURCES["Rollout"], rollout("4", "Healthy")) == []
    # The Deployment is done, but its Rollout has not seen generation 5: nothing settled.
    assert cache.put_workload(WORKLOAD_RESOURCES["Deployment"], template) == []
    assert cache.servicelinks_rolling(rolled) == [("gallery", "gateway")]
    assert cache.put_workload(WORKLOAD_RESOURCES["Rollout"], rollout("5", "Progressing")) == []  # its steps run
    assert cache.put_workload(WORKLOAD_RESOURCES["Rollout"], rollout("5", "Paused")) == []
    assert cache.put_workload(WORKLOAD_RESOURCES["Rollout"], rollout("5", "Healthy")) == [("gallery", "gateway")]
    assert cache.put_workload(WORKLOAD_RESOURCES["Rollout"], rollout("5", "Healthy")) == []  # a replay
    assert cache.put_workload(WORKLOAD_RESOURCES["Rollout"], rollout("5", "Degraded")) == [("gallery", "gateway")]
    # Deleted, the Rollout leaves the Deployment to its own progress: done, so it settles.
    assert cache.drop_workload("Rollout", "gallery", "web") == [("gallery", "gateway")]
    assert cache.drop_workload("Rollout", "gallery", "web") == []


def test_a_deployment_whose_generation_its_rollout_saw_before_the_deployment_event_came_settles_on_that_event() -> None:
    """The two watches are not ordered: the Rollout's status may name generation 5 while the cache holds 4."""
    cache = Cache()
    cache.put_servicelink(servicelink("gateway", "gw", {"key": "A", "service": "auth"}))
    template = {**deployment("web-template", env_from="gw"), "status": {"observedGeneration": 4}}
    template["metadata"]["generation"] = 4
    template["spec"]["replicas"] = 0
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], template)
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-template"}
    status = {"observedGeneration": "1", "workloadObservedGeneration": "5", "phase": "Healthy"}
    early = {"metadata": {"name": "web", "namespace": "gallery", "generation": 1}, "spec": {"workloadRef": ref}}
    assert cache.put_workload(WORKLOAD_RESOURCES["Rollout"], {**early, "status": status}) == []
    template["metadata"]["generation"] = 5
    template["status"] = {"observedGeneration": 5}
    assert cache.put_workload(WORKLOAD_RESOURCES["Deployment"], template) == [("gallery", "gateway")]


# --- readers of Secrets -----------------------------------------------------------------------------------------


def reading(name: str, *, configmap: str | None = None, secret: str | None = None, **fields: Any) -> dict[str, Any]:
    """A Deployment (or, with ``status``, a Job) whose pods read all of ``configmap`` and key PASSWORD of ``secret``."""
    container: dict[str, Any] = {"name": "app"}
    if configmap is not None:
        container["envFrom"] = [{"configMapRef": {"name": configmap}}]
    if secret is not None:
        container["env"] = [{"name": "P", "valueFrom": {"secretKeyRef": {"name": secret, "key": "PASSWORD"}}}]
    return {
        "metadata": {"name": name, "namespace": "gallery"},
        "spec": {"template": {"spec": {"containers": [container]}}},
        **fields,
    }


def test_workloads_reading_a_secret_follow_edits_and_deletes() -> None:
    cache = Cache()
    deployment_kind, statefulset_kind = WORKLOAD_RESOURCES["Deployment"], WORKLOAD_RESOURCES["StatefulSet"]
    cache.put_workload(deployment_kind, reading("web", secret="db-creds"))
    cache.put_workload(statefulset_kind, reading("db", secret="db-creds"))
    cache.put_workload(deployment_kind, reading("bystander", configmap="gw"))
    assert [w.name for w in cache.workloads_reading_secret("gallery", secret="db-creds")] == ["web", "db"]
    assert cache.workloads_reading_secret("other", secret="db-creds") == []
    web = cache.workload("Deployment", "gallery", "web")
    assert web is not None
    assert web.secret_reads == {"db-creds": frozenset({"PASSWORD"})}
    # An edit that reads another Secret moves it; a deleted workload leaves.
    cache.put_workload(deployment_kind, reading("web", secret="api-token"))
    assert [w.name for w in cache.workloads_reading_secret("gallery", secret="db-creds")] == ["db"]
    assert [w.name for w in cache.workloads_reading_secret("gallery", secret="api-token")] == ["web"]
    cache.drop_workload("StatefulSet", "gallery", "db")
    assert cache.workloads_reading_secret("gallery", secret="db-creds") == []
    cache.drop_workload("Deployment", "gallery", "web")
    assert cache.workloads_reading_secret("gallery", secret="api-token") == []


def test_a_configmap_and_a_secret_of_the_same_name_have_their_own_readers() -> None:
    cache = Cache()
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], reading("config-reader", configmap="db"))
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], reading("secret-reader", secret="db"))
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], reading("both", configmap="db", secret="db"))
    assert [w.name for w in cache.workloads("gallery", reading="db")] == ["both", "config-reader"]
    assert [w.name for w in cache.workloads_reading_secret("gallery", secret="db")] == ["both", "secret-reader"]
    # Dropping the Secret from one workload leaves its ConfigMap reads alone, and the other way round.
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], reading("both", configmap="db"))
    assert [w.name for w in cache.workloads("gallery", reading="db")] == ["both", "config-reader"]
    assert [w.name for w in cache.workloads_reading_secret("gallery", secret="db")] == ["secret-reader"]
    cache.put_job(reading("migrate", configmap="db", status={"active": 1}))
    cache.put_job(reading("rotate", secret="db", status={"active": 1}))
    assert [j.name for j in cache.jobs("gallery", reading="db")] == ["migrate"]
    assert [j.name for j in cache.jobs_reading_secret("gallery", secret="db")] == ["rotate"]


def mapped_kind() -> WorkloadResource:
    mapping = {"kind": "CloneSet", "version": "v1alpha1", "template": ".spec.template"}
    resource = parse_or_refuse("clonesets.apps.kruise.io", mapping, generation=1)
    assert isinstance(resource, WorkloadResource)
    return resource


def test_a_mapped_kinds_objects_without_a_pod_template_at_its_path_are_named_until_they_gain_one() -> None:
    cache = Cache()
    resource = mapped_kind()  # its pod template at .spec.template
    cache.put_workload(resource, reading("web"))
    cache.put_workload(resource, {"metadata": {"name": "bare", "namespace": "gallery"}, "spec": {}})
    cache.put_workload(resource, {"metadata": {"name": "bare", "namespace": "shop"}, "spec": {"podTemplate": {}}})
    cache.put_workload(WORKLOAD_RESOURCES["Rollout"], {"metadata": {"name": "ref", "namespace": "gallery"}})
    assert cache.held(resource.kind, None) == [("gallery", "web"), ("gallery", "bare"), ("shop", "bare")]
    assert cache.without_template(resource.kind, None) == [("gallery", "bare"), ("shop", "bare")]
    assert cache.without_template(resource.kind, "shop") == [("shop", "bare")]
    cache.put_workload(resource, reading("bare"))  # it gained one
    cache.drop_workload(resource.kind, "shop", "bare")
    assert cache.without_template(resource.kind, None) == []


def as_cronjob(body: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": body["metadata"], "spec": {"jobTemplate": {"spec": body["spec"]}}}


@pytest.mark.parametrize(
    ("resource", "body"),
    [
        (WORKLOAD_RESOURCES["Deployment"], reading("web", secret="db-creds")),
        (WORKLOAD_RESOURCES["StatefulSet"], reading("web", secret="db-creds")),
        (WORKLOAD_RESOURCES["DaemonSet"], reading("web", secret="db-creds")),
        (WORKLOAD_RESOURCES["CronJob"], as_cronjob(reading("web", secret="db-creds"))),
        (WORKLOAD_RESOURCES["Rollout"], reading("web", secret="db-creds")),
        (mapped_kind(), reading("web", secret="db-creds")),
    ],
    ids=["Deployment", "StatefulSet", "DaemonSet", "CronJob", "Rollout", "mapped"],
)
def test_every_followed_kind_is_found_by_the_secret_its_pods_read(
    resource: WorkloadResource, body: dict[str, Any]
) -> None:
    cache = Cache()
    cache.put_workload(resource, body)
    assert [(w.kind, w.name) for w in cache.workloads_reading_secret("gallery", secret="db-creds")] == [
        (resource.kind, "web")
    ]
    cache.drop_workload(resource.kind, "gallery", "web")
    assert cache.workloads_reading_secret("gallery", secret="db-creds") == []


def test_only_running_jobs_that_read_a_secret_are_kept_by_it() -> None:
    cache = Cache()
    running, finished = {"active": 1}, {"conditions": [{"type": "Complete", "status": "True"}]}
    cache.put_job(reading("rotate", secret="db-creds", status=running))
    cache.put_job(reading("done", secret="db-creds", status=finished))
    assert [j.name for j in cache.jobs_reading_secret("gallery", secret="db-creds")] == ["rotate"]
    assert cache.jobs("gallery", reading="db-creds") == []
    cache.put_job(reading("rotate", secret="db-creds", status=finished))
    assert cache.jobs_reading_secret("gallery", secret="db-creds") == []
    cache.put_job(reading("rotate", secret="db-creds", status=running))
    cache.drop_job("gallery", "rotate")
    assert cache.jobs_reading_secret("gallery", secret="db-creds") == []
    cache.put_job(reading("late", secret="db-creds", status=running))
    assert [j.name for j in cache.jobs_reading_secret("gallery", secret="db-creds")] == ["late"]


def test_a_workload_reading_a_servicelinks_secret_finds_that_servicelink_and_its_secrets_changes_reach_it() -> None:
    cache = Cache()
    link = {"key": "DB_URL", "service": "db", "credentials": {"secretName": "pg"}}
    body = servicelink("shop", "shop-config", link)
    body["spec"]["secretName"] = "shop-secrets"
    cache.put_servicelink(body)
    reader = deployment("api", env_from="unrelated")
    reader["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"name": "shop-secrets"}}]
    cache.put_workload(WORKLOAD_RESOURCES["Deployment"], reader)
    assert cache.servicelinks_rolling(("Deployment", "gallery", "api")) == [("gallery", "shop")]
    assert cache.secret_writers("gallery", "shop-secrets") == ["shop"]

    shared = {"metadata": {"name": "pg", "namespace": "gallery", "resourceVersion": "1"}, "data": {}}
    assert cache.put_secret(shared) == []  # this install reads no Secret
    assert cache.secrets("gallery") is None
    cache.keep_secrets()
    assert cache.put_secret(shared) == [("gallery", "shop")]
    assert cache.put_secret(shared) == []  # the same version again: nothing to do
    assert cache.put_secret({**shared, "metadata": {**shared["metadata"], "resourceVersion": "2"}}) == [
        ("gallery", "shop")
    ]
    assert set(cache.secrets("gallery") or {}) == {"pg"}
    assert cache.drop_secret("gallery", "pg") == [("gallery", "shop")]
    assert cache.put_secret(shared) == [("gallery", "shop")]
    assert cache.held("Secret", "gallery") == [("gallery", "pg")]
    cache.drop_servicelink("gallery", "shop")
    assert cache.secret_writers("gallery", "shop-secrets") == []
    assert cache.drop_secret("gallery", "pg") == []


def with_ready(body: dict[str, Any], status: str, reason: str) -> dict[str, Any]:
    return {**body, "status": {"conditions": [{"type": "Ready", "status": status, "reason": reason}]}}


def test_servicelinks_are_counted_by_ready_status_and_reason_as_they_come_and_go() -> None:
    cache = Cache()
    first, second = servicelink("a", "cm-a"), servicelink("b", "cm-b")
    cache.put_servicelink(first)
    assert cache.ready_counts() == {("Unknown", ""): 1}  # no status yet
    cache.put_servicelink(with_ready(first, "True", "Reconciled"))
    cache.put_servicelink(with_ready(second, "False", "ServiceNotFound"))
    assert cache.ready_counts() == {("True", "Reconciled"): 1, ("False", "ServiceNotFound"): 1}
    cache.put_servicelink(with_ready(second, "True", "Reconciled"))
    assert cache.ready_counts() == {("True", "Reconciled"): 2}
    cache.drop_servicelink("gallery", "a")
    assert cache.ready_counts() == {("True", "Reconciled"): 1}
