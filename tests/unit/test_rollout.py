"""rollout.py: which workloads read the ConfigMap, and which of them a change must roll."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from servicelink.model import WORKLOAD_RESOURCES, RolledOut, StaleJob, Workloads
from servicelink.render import render_hash
from servicelink.resolve import LinkResult
from servicelink.rollout import (
    Deferred,
    Rollout,
    SecretOutput,
    carried_hash,
    consumed,
    describe_workload,
    find_stale_jobs,
    follow_rollouts,
    merge_rollouts,
    parse_config_hash,
    plan_deferral,
    plan_rollouts,
    progress_of,
    reads_of,
    render_config_hash,
    restore_deferred,
    rollout_settled,
    select_consumers,
)
from servicelink.views import (
    NO_READS,
    Endpoints,
    JobView,
    Progress,
    Reads,
    ServiceView,
    WorkloadView,
    read_configmaps,
    read_progress,
    read_secrets,
    read_workload_ref,
    template_record,
)

CM = "gateway-service-config"
CREDS = "db-credentials"
AUTH_OLD = "http://auth-service:3001"
AUTH_NEW = "http://auth-service:4000"
APP = "http://app:80"


def container(name: str = "app", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "example/app:1", **fields}


def env_from(name: str = CM) -> dict[str, Any]:
    return {"envFrom": [{"configMapRef": {"name": name}}]}


def key_ref(key: str, name: str = CM) -> dict[str, Any]:
    return {"name": key, "valueFrom": {"configMapKeyRef": {"name": name, "key": key}}}


def secret_key_ref(key: str, name: str = CREDS) -> dict[str, Any]:
    return {"name": key, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}


def workload_body(
    name: str,
    pod_spec: dict[str, Any],
    *,
    labels: dict[str, str] | None = None,
    config_hash: str | None = None,
    namespace: str = "gallery",
) -> dict[str, Any]:
    template_meta: dict[str, Any] = {"labels": {"app": name}}
    if config_hash is not None:
        template_meta["annotations"] = {"servicelink.dev/config-hash": config_hash, "other": "x"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": template_meta, "spec": pod_spec}},
    }


def view(name: str, pod_spec: dict[str, Any], kind: Any = "Deployment", **kw: Any) -> WorkloadView:
    return WorkloadView.from_body(WORKLOAD_RESOURCES[kind], workload_body(name, pod_spec, **kw))


def cronjob_body(name: str, pod_spec: dict[str, Any], *, config_hash: str | None = None) -> dict[str, Any]:
    """A CronJob whose Jobs run the pod template of ``workload_body``: it sits under ``spec.jobTemplate``."""
    template = workload_body(name, pod_spec, config_hash=config_hash)["spec"]["template"]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": "gallery", "generation": 3, "resourceVersion": "41"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}},
        "status": {"lastScheduleTime": "2026-12-06T22:00:00Z"},
    }


def argo_rollout_body(
    name: str,
    pod_spec: dict[str, Any] | None,
    *,
    config_hash: str | None = None,
    generation: int = 2,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An Argo Rollout: with ``pod_spec``, an inline template where a Deployment has it; with None, a
    ``spec.workloadRef`` to the Deployment ``name`` instead, and no template of its own."""
    spec: dict[str, Any] = {"replicas": 2, "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}}
    if pod_spec is None:
        spec["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    else:
        spec |= workload_body(name, pod_spec, config_hash=config_hash)["spec"]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": "gallery", "generation": generation, "resourceVersion": "7"},
        "spec": spec,
        "status": status or {},
    }


def workloads(**raw: Any) -> Workloads:
    return Workloads.model_validate(raw)


def plan(consumers: list[tuple[WorkloadView, Reads]], **kwargs: Any) -> list[Rollout]:
    """``plan_rollouts`` for the ServiceLink of ``CM``, the only servicelink ConfigMap of the namespace."""
    return plan_rollouts(consumers, configmap=CM, managed_configmaps=frozenset({CM}), **kwargs)


# --- read_configmaps ----------------------------------------------------------------------------------------


def test_env_from_reads_every_key() -> None:
    assert read_configmaps({"containers": [container(**env_from())]}) == {CM: None}


def test_env_value_from_reads_only_that_key() -> None:
    pod = {"containers": [container(env=[key_ref("AUTH_SERVICE_URL"), {"name": "PLAIN", "value": "x"}])]}
    assert read_configmaps(pod) == {CM: frozenset({"AUTH_SERVICE_URL"})}


def test_keys_from_several_containers_add_up() -> None:
    pod = {"containers": [container("a", env=[key_ref("A")]), container("b", env=[key_ref("B")])]}
    assert read_configmaps(pod) == {CM: frozenset({"A", "B"})}


def test_env_from_wins_over_single_keys() -> None:
    pod = {"containers": [container("a", env=[key_ref("A")]), container("b", **env_from())]}
    assert read_configmaps(pod) == {CM: None}


def test_configmap_volume_without_items_reads_every_key() -> None:
    pod = {"containers": [container()], "volumes": [{"name": "cfg", "configMap": {"name": CM}}]}
    assert read_configmaps(pod) == {CM: None}


def test_configmap_volume_with_items_reads_those_keys() -> None:
    pod = {
        "containers": [container()],
        "volumes": [
            {
                "name": "cfg",
                "configMap": {"name": CM, "items": [{"key": "A", "path": "a.txt"}, {"key": "B", "path": "b.txt"}]},
            }
        ],
    }
    assert read_configmaps(pod) == {CM: frozenset({"A", "B"})}


def test_projected_volume_sources_are_read_apart_by_kind_with_their_items() -> None:
    pod = {
        "containers": [container()],
        "volumes": [
            {
                "name": "all",
                "projected": {
                    "sources": [
                        {"configMap": {"name": CM, "items": [{"key": "A", "path": "a"}]}},
                        {"configMap": {"name": "other"}},
                        {"secret": {"name": CREDS, "items": [{"key": "PASSWORD", "path": "password"}]}},
                        {"secret": {"name": "api-token"}},
                        {"serviceAccountToken": {"path": "token"}},
                    ]
                },
            }
        ],
    }
    assert read_configmaps(pod) == {CM: frozenset({"A"}), "other": None}
    assert read_secrets(pod) == {CREDS: frozenset({"PASSWORD"}), "api-token": None}


def test_init_containers_count() -> None:
    pod = {"initContainers": [container("migrate", env=[key_ref("DB_URL")])], "containers": [container()]}
    assert read_configmaps(pod) == {CM: frozenset({"DB_URL"})}


def test_secrets_and_other_sources_are_not_configmaps() -> None:
    pod = {
        "containers": [
            container(
                envFrom=[{"secretRef": {"name": CM}}],
                env=[
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": CM, "key": "S"}}},
                    {"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
            )
        ],
        "volumes": [{"name": "s", "secret": {"secretName": CM}}, {"name": "e", "emptyDir": {}}],
    }
    assert read_configmaps(pod) == {}
    assert read_secrets(pod) == {CM: None}


def test_empty_pod_spec_reads_nothing() -> None:
    assert read_configmaps({}) == {}
    assert read_secrets({}) == {}


# --- read_secrets -------------------------------------------------------------------------------------------


def test_secret_env_from_reads_every_key() -> None:
    assert read_secrets({"containers": [container(envFrom=[{"secretRef": {"name": CREDS}}])]}) == {CREDS: None}


def test_secret_key_ref_reads_only_that_key() -> None:
    pod = {"containers": [container(env=[secret_key_ref("PASSWORD"), {"name": "PLAIN", "value": "x"}])]}
    assert read_secrets(pod) == {CREDS: frozenset({"PASSWORD"})}


def test_secret_keys_from_init_and_app_containers_add_up_and_env_from_wins() -> None:
    pod = {
        "initContainers": [container("migrate", env=[secret_key_ref("USERNAME")])],
        "containers": [container(env=[secret_key_ref("PASSWORD")])],
    }
    assert read_secrets(pod) == {CREDS: frozenset({"USERNAME", "PASSWORD"})}
    pod["containers"].append(container("sidecar", envFrom=[{"secretRef": {"name": CREDS}}]))
    assert read_secrets(pod) == {CREDS: None}


def test_secret_volume_is_named_by_secret_name_and_its_items_restrict_the_keys() -> None:
    every = {"name": "all", "secret": {"secretName": CREDS}}
    some = {"name": "some", "secret": {"secretName": "tls", "items": [{"key": "tls.crt", "path": "cert.pem"}]}}
    by_name = {"name": "wrong", "secret": {"name": "not-a-secret-volume-field"}}  # a ConfigMap volume's field
    pod = {"containers": [container()], "volumes": [every, some, by_name]}
    assert read_secrets(pod) == {CREDS: None, "tls": frozenset({"tls.crt"})}


def test_a_configmap_and_a_secret_of_the_same_name_are_read_apart() -> None:
    pod = {
        "containers": [container(env=[key_ref("HOST", name="db"), secret_key_ref("PASSWORD", name="db")])],
        "volumes": [{"name": "c", "configMap": {"name": "db", "items": [{"key": "PORT", "path": "port"}]}}],
    }
    assert read_configmaps(pod) == {"db": frozenset({"HOST", "PORT"})}
    assert read_secrets(pod) == {"db": frozenset({"PASSWORD"})}


# --- WorkloadView.from_body ---------------------------------------------------------------------------------


def test_workload_view_reads_name_labels_reads_and_hash() -> None:
    got = view(
        "gateway-service",
        {"containers": [container(**env_from())]},
        kind="StatefulSet",
        labels={"tier": "edge"},
        config_hash="9f2c1e0b",
    )
    assert got.kind == "StatefulSet"
    assert (got.namespace, got.name) == ("gallery", "gateway-service")
    assert got.labels == {"tier": "edge"}
    assert got.reads == {CM: None}
    assert got.config_hash == "9f2c1e0b"


def test_workload_view_reads_who_may_roll_it_from_the_workloads_own_annotation() -> None:
    body = workload_body("web", {"containers": [container()]})
    body["metadata"]["annotations"] = {"servicelink.dev/rollable-by": "gateway, edge"}
    assert WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], body).rollable_by == frozenset({"gateway", "edge"})
    assert view("web", {"containers": [container()]}).rollable_by == frozenset()


def test_workload_never_rolled_has_no_hash() -> None:
    assert view("web", {"containers": [container()]}).config_hash is None


def test_workload_view_tolerates_a_bare_body() -> None:
    got = WorkloadView.from_body(
        WORKLOAD_RESOURCES["DaemonSet"], {"metadata": {"name": "agent", "namespace": "gallery"}}
    )
    assert got.reads == {}
    assert got.config_hash is None
    assert got.labels == {}


def test_a_cronjob_is_read_from_its_job_template() -> None:
    body = cronjob_body("report", {"containers": [container(env=[key_ref("AUTH_SERVICE_URL")])]}, config_hash="ab")
    got = WorkloadView.from_body(WORKLOAD_RESOURCES["CronJob"], body)
    assert got.reads == {CM: frozenset({"AUTH_SERVICE_URL"})}
    assert got.config_hash == "ab"
    assert got.resource_version == "41"
    # Its own spec.template would be a Deployment's place: a CronJob has none, and reads nothing from it.
    assert (
        WorkloadView.from_body(
            WORKLOAD_RESOURCES["CronJob"], workload_body("report", {"containers": [container(**env_from())]})
        ).reads
        == {}
    )


def test_an_argo_rollout_is_read_from_its_inline_template_and_one_with_a_workload_ref_reads_nothing() -> None:
    inline = WorkloadView.from_body(
        WORKLOAD_RESOURCES["Rollout"], argo_rollout_body("web", {"containers": [container(**env_from())]})
    )
    assert inline.reads == {CM: None}
    assert inline.kind == "Rollout"
    # The template lives in the referenced Deployment: that Deployment is the consumer, not the Rollout.
    assert WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], argo_rollout_body("web", None)).reads == {}


def test_a_rollouts_workload_ref_names_the_deployment_whose_template_it_runs() -> None:
    rollout = WORKLOAD_RESOURCES["Rollout"]
    assert WorkloadView.from_body(rollout, argo_rollout_body("web", None)).workload_ref == "web"
    assert read_workload_ref(rollout, argo_rollout_body("web", {"containers": []})) is None  # inline template
    # Only a Deployment is a workload servicelink patches; another kind, or no name, names none.
    other = argo_rollout_body("web", None)
    other["spec"]["workloadRef"] = {"apiVersion": "v1", "kind": "PodTemplate", "name": "web"}
    assert read_workload_ref(rollout, other) is None
    assert read_workload_ref(rollout, {"spec": {"workloadRef": {"kind": "Deployment"}}}) is None
    # A Deployment has no workloadRef, whatever its spec holds.
    assert read_workload_ref(WORKLOAD_RESOURCES["Deployment"], argo_rollout_body("web", None)) is None


def reads_configmap_and_secret_db() -> dict[str, Any]:
    """A pod spec that reads key HOST of the ConfigMap ``db``, key PASSWORD of the Secret ``db``, and one file of
    the Secret ``tls``."""
    tls = {"secretName": "tls", "items": [{"key": "tls.crt", "path": "cert.pem"}]}
    env = [key_ref("HOST", name="db"), secret_key_ref("PASSWORD", name="db")]
    return {"containers": [container(env=env)], "volumes": [{"name": "tls", "secret": tls}]}


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("Deployment", workload_body("web", reads_configmap_and_secret_db())),
        ("StatefulSet", workload_body("web", reads_configmap_and_secret_db())),
        ("DaemonSet", workload_body("web", reads_configmap_and_secret_db())),
        ("CronJob", cronjob_body("web", reads_configmap_and_secret_db())),
        ("Rollout", argo_rollout_body("web", reads_configmap_and_secret_db())),
    ],
)
def test_every_kind_views_the_secrets_its_pods_read_apart_from_its_configmaps(kind: Any, body: dict[str, Any]) -> None:
    got = WorkloadView.from_body(WORKLOAD_RESOURCES[kind], body)
    assert got.reads == {"db": frozenset({"HOST"})}
    assert got.secret_reads == {"db": frozenset({"PASSWORD"}), "tls": frozenset({"tls.crt"})}


def test_a_view_reading_no_secret_shares_one_empty_mapping() -> None:
    assert view("web", {"containers": [container(**env_from())]}).secret_reads is NO_READS
    assert WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], argo_rollout_body("web", None)).secret_reads == {}
    assert job("report", {"containers": [container(**env_from())]}).secret_reads is NO_READS


# --- select_consumers ---------------------------------------------------------------------------------------


def names(chosen: list[tuple[WorkloadView, Reads]]) -> list[str]:
    return [w.name for w, _ in chosen]


READER = view("reader", {"containers": [container(**env_from())]}, labels={"tier": "edge"})
KEY_READER = view("key-reader", {"containers": [container(env=[key_ref("APP_SERVICE_URL")])]})
BYSTANDER = view(
    "bystander", {"containers": [container(**env_from("unrelated"))]}, labels={"tier": "edge", "env": "prod"}
)
PLAIN = view("plain", {"containers": [container()]}, labels={"tier": "backend", "env": "dev"})
ALL = [READER, KEY_READER, BYSTANDER, PLAIN]


def test_auto_selects_only_workloads_that_read_the_configmap() -> None:
    chosen = select_consumers(ALL, spec=workloads(), configmap=CM)
    assert names(chosen) == ["key-reader", "reader"]
    assert dict((w.name, r) for w, r in chosen) == {"reader": None, "key-reader": frozenset({"APP_SERVICE_URL"})}


def test_auto_off_selects_nothing_by_itself() -> None:
    assert select_consumers(ALL, spec=workloads(auto=False), configmap=CM) == []


def test_named_workload_that_does_not_read_the_configmap_counts_as_reading_all() -> None:
    chosen = select_consumers(
        ALL, spec=workloads(auto=False, names=[{"kind": "Deployment", "name": "plain"}]), configmap=CM
    )
    assert [(w.name, r) for w, r in chosen] == [("plain", None)]


def test_name_needs_the_right_kind() -> None:
    chosen = select_consumers(
        ALL, spec=workloads(auto=False, names=[{"kind": "StatefulSet", "name": "plain"}]), configmap=CM
    )
    assert chosen == []


def test_named_workload_that_reads_one_key_keeps_its_reads() -> None:
    chosen = select_consumers(
        ALL, spec=workloads(auto=False, names=[{"kind": "Deployment", "name": "key-reader"}]), configmap=CM
    )
    assert [(w.name, r) for w, r in chosen] == [("key-reader", frozenset({"APP_SERVICE_URL"}))]


def test_selector_match_labels_adds_workloads() -> None:
    chosen = select_consumers(ALL, spec=workloads(auto=False, selector={"matchLabels": {"tier": "edge"}}), configmap=CM)
    assert names(chosen) == ["bystander", "reader"]


def test_auto_and_selector_together_do_not_duplicate() -> None:
    chosen = select_consumers(ALL, spec=workloads(selector={"matchLabels": {"tier": "edge"}}), configmap=CM)
    assert names(chosen) == ["bystander", "key-reader", "reader"]


@pytest.mark.parametrize(
    ("expressions", "expected"),
    [
        ([{"key": "env", "operator": "In", "values": ["prod", "staging"]}], ["bystander"]),
        ([{"key": "env", "operator": "NotIn", "values": ["prod"]}], ["key-reader", "plain", "reader"]),
        ([{"key": "env", "operator": "Exists"}], ["bystander", "plain"]),
        ([{"key": "env", "operator": "DoesNotExist"}], ["key-reader", "reader"]),
        (
            [{"key": "tier", "operator": "In", "values": ["edge"]}, {"key": "env", "operator": "DoesNotExist"}],
            ["reader"],
        ),
    ],
)
def test_selector_match_expressions(expressions: list[dict[str, Any]], expected: list[str]) -> None:
    chosen = select_consumers(ALL, spec=workloads(auto=False, selector={"matchExpressions": expressions}), configmap=CM)
    assert names(chosen) == expected


def test_empty_selector_selects_nothing() -> None:
    assert select_consumers(ALL, spec=workloads(auto=False, selector={}), configmap=CM) == []


# --- plan_rollouts ------------------------------------------------------------------------------------------


def test_consumer_with_a_stale_hash_is_patched_to_the_new_hash() -> None:
    new = {"AUTH_SERVICE_URL": AUTH_NEW}
    w = view(
        "gateway", {"containers": [container(**env_from())]}, config_hash=render_hash({"AUTH_SERVICE_URL": AUTH_OLD})
    )
    plans = plan([(w, None)], managed=new, baseline={"AUTH_SERVICE_URL": AUTH_OLD}, desired=new)
    assert len(plans) == 1
    assert plans[0].name == "gateway"
    assert plans[0].namespace == "gallery"
    assert plans[0].hash == render_hash(new)
    assert plans[0].changed_keys == ("AUTH_SERVICE_URL",)


def test_consumer_whose_hash_is_current_is_not_patched() -> None:
    values = {"AUTH_SERVICE_URL": AUTH_NEW}
    w = view("gateway", {"containers": [container(**env_from())]}, config_hash=render_hash(values))
    # Even a recorded change does not roll a consumer already carrying the hash: exactly once per change.
    assert plan([(w, None)], managed=values, baseline={"AUTH_SERVICE_URL": AUTH_OLD}, desired=values) == []


def test_consumer_without_hash_is_patched_when_a_key_it_reads_changed() -> None:
    new = {"AUTH_SERVICE_URL": AUTH_NEW, "APP_SERVICE_URL": APP}
    w = view("gateway", {"containers": [container(**env_from())]})
    plans = plan([(w, None)], managed=new, baseline={"AUTH_SERVICE_URL": AUTH_OLD, "APP_SERVICE_URL": APP}, desired=new)
    assert [(p.name, p.hash, p.changed_keys) for p in plans] == [("gateway", render_hash(new), ("AUTH_SERVICE_URL",))]


def test_consumer_without_hash_is_not_patched_when_nothing_changed() -> None:
    values = {"AUTH_SERVICE_URL": AUTH_OLD}
    w = view("late-comer", {"containers": [container(**env_from())]})
    assert plan([(w, None)], managed=values, baseline=values, desired=values) == []


def test_a_cronjob_follows_the_same_rule_as_a_deployment() -> None:
    old = {"AUTH_SERVICE_URL": AUTH_OLD, "APP_SERVICE_URL": APP}
    new = {"AUTH_SERVICE_URL": AUTH_NEW, "APP_SERVICE_URL": APP}
    reads_auth = {"containers": [container(env=[key_ref("AUTH_SERVICE_URL")])]}
    reads_app = {"containers": [container(env=[key_ref("APP_SERVICE_URL")])]}
    auth = WorkloadView.from_body(WORKLOAD_RESOURCES["CronJob"], cronjob_body("auth-report", reads_auth))
    app = WorkloadView.from_body(WORKLOAD_RESOURCES["CronJob"], cronjob_body("app-report", reads_app))
    consumers = select_consumers([auth, app], spec=workloads(), configmap=CM)
    plans = plan(consumers, managed=new, baseline=old, desired=new)
    # Key-level precision: only the CronJob reading the changed key, with the hash of what it reads.
    auth_hash = render_hash({"AUTH_SERVICE_URL": AUTH_NEW})
    assert [(p.kind, p.name, p.hash) for p in plans] == [("CronJob", "auth-report", auth_hash)]
    # Never for nothing: carrying the hash, it is not patched again, whether a change is recorded or not.
    done = WorkloadView.from_body(
        WORKLOAD_RESOURCES["CronJob"], cronjob_body("auth-report", reads_auth, config_hash=auth_hash)
    )
    only_auth = frozenset({"AUTH_SERVICE_URL"})
    assert plan([(done, only_auth)], managed=new, baseline=new, desired=new) == []
    assert plan([(done, only_auth)], managed=new, baseline=old, desired=new) == []
    # One created after the change (no hash) is not patched either.
    late = WorkloadView.from_body(WORKLOAD_RESOURCES["CronJob"], cronjob_body("late", reads_auth))
    assert plan([(late, only_auth)], managed=new, baseline=new, desired=new) == []


def test_an_argo_rollout_follows_the_same_rule_and_a_workload_ref_rolls_its_deployment() -> None:
    old = {"AUTH_SERVICE_URL": AUTH_OLD, "APP_SERVICE_URL": APP}
    new = {"AUTH_SERVICE_URL": AUTH_NEW, "APP_SERVICE_URL": APP}
    reads_auth = {"containers": [container(env=[key_ref("AUTH_SERVICE_URL")])]}
    reads_app = {"containers": [container(env=[key_ref("APP_SERVICE_URL")])]}
    inline = WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], argo_rollout_body("canary", reads_auth))
    unrelated = WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], argo_rollout_body("other", reads_app))
    by_ref = WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], argo_rollout_body("referenced", None))
    referenced = view("referenced", reads_auth)  # the Deployment the workloadRef names
    consumers = select_consumers([inline, unrelated, by_ref, referenced], spec=workloads(), configmap=CM)
    assert sorted((w.kind, w.name) for w, _ in consumers) == [
        ("Deployment", "referenced"),
        ("Rollout", "canary"),
        ("Rollout", "other"),
    ]
    plans = plan(consumers, managed=new, baseline=old, desired=new)
    auth_hash = render_hash({"AUTH_SERVICE_URL": AUTH_NEW})
    assert sorted((p.kind, p.name, p.hash) for p in plans) == [
        ("Deployment", "referenced", auth_hash),
        ("Rollout", "canary", auth_hash),
    ]
    # Never for nothing: carrying the hash, it is not patched again.
    done = WorkloadView.from_body(
        WORKLOAD_RESOURCES["Rollout"], argo_rollout_body("canary", reads_auth, config_hash=auth_hash)
    )
    assert plan([(done, frozenset({"AUTH_SERVICE_URL"}))], managed=new, baseline=old, desired=new) == []


def test_key_ref_consumer_is_not_rolled_when_only_another_key_changes() -> None:
    baseline = {"AUTH_SERVICE_URL": AUTH_OLD, "APP_SERVICE_URL": APP}
    desired = {"AUTH_SERVICE_URL": AUTH_NEW, "APP_SERVICE_URL": APP}
    reads = frozenset({"APP_SERVICE_URL"})
    fresh = view("app-reader", {"containers": [container(env=[key_ref("APP_SERVICE_URL")])]})
    rolled = view(
        "app-reader-2",
        {"containers": [container(env=[key_ref("APP_SERVICE_URL")])]},
        config_hash=render_hash({"APP_SERVICE_URL": APP}),
    )
    assert plan([(fresh, reads), (rolled, reads)], managed=desired, baseline=baseline, desired=desired) == []


def test_key_ref_consumer_is_rolled_when_its_key_changes() -> None:
    baseline = {"AUTH_SERVICE_URL": AUTH_OLD, "APP_SERVICE_URL": APP}
    desired = {"AUTH_SERVICE_URL": AUTH_NEW, "APP_SERVICE_URL": APP}
    reads = frozenset({"AUTH_SERVICE_URL"})
    w = view("auth-reader", {"containers": [container(env=[key_ref("AUTH_SERVICE_URL")])]})
    plans = plan([(w, reads)], managed=desired, baseline=baseline, desired=desired)
    assert [(p.name, p.hash) for p in plans] == [("auth-reader", render_hash({"AUTH_SERVICE_URL": AUTH_NEW}))]


def test_added_and_removed_keys_count_as_changes() -> None:
    w = view("gateway", {"containers": [container(**env_from())]})
    added = plan([(w, None)], managed={"A": "1", "B": "2"}, baseline={"A": "1"}, desired={"A": "1", "B": "2"})
    removed = plan([(w, None)], managed={"A": "1"}, baseline={"A": "1", "B": "2"}, desired={"A": "1"})
    assert [p.changed_keys for p in added] == [("B",)]
    assert [p.changed_keys for p in removed] == [("B",)]


def test_hash_covers_sibling_keys_the_consumer_reads() -> None:
    managed = {"AUTH_SERVICE_URL": AUTH_NEW, "CART_URL": "http://cart:80"}
    w = view("gateway", {"containers": [container(**env_from())]}, config_hash="00000000")
    plans = plan(
        [(w, None)], managed=managed, baseline={"AUTH_SERVICE_URL": AUTH_OLD}, desired={"AUTH_SERVICE_URL": AUTH_NEW}
    )
    assert [p.hash for p in plans] == [render_hash(managed)]


def test_each_consumer_is_planned_once() -> None:
    new = {"AUTH_SERVICE_URL": AUTH_NEW}
    ws = [view(n, {"containers": [container(**env_from())]}) for n in ("a", "b", "c")]
    plans = plan([(w, None) for w in ws], managed=new, baseline={"AUTH_SERVICE_URL": AUTH_OLD}, desired=new)
    assert sorted(p.name for p in plans) == ["a", "b", "c"]
    assert {p.hash for p in plans} == {render_hash(new)}


def test_consumed_filters_by_reads() -> None:
    values = {"A": "1", "B": "2"}
    assert consumed(values, None) == values
    assert consumed(values, frozenset({"B", "C"})) == {"B": "2"}


# --- workloads reading several servicelink ConfigMaps ----------------------------------------------------------

OTHER = "common-config"
BOTH = frozenset({CM, OTHER})


def two_reader(config_hash: str | None = None) -> WorkloadView:
    return view(
        "edge",
        {"containers": [container(envFrom=[{"configMapRef": {"name": n}} for n in (CM, OTHER)])]},
        config_hash=config_hash,
    )


def plan_for(configmap: str, w: WorkloadView, managed: dict[str, str], baseline: dict[str, str]) -> list[Rollout]:
    return plan_rollouts(
        [(w, None)], configmap=configmap, managed_configmaps=BOTH, managed=managed, baseline=baseline, desired=managed
    )


def test_parse_config_hash_reads_a_bare_hash_and_entries() -> None:
    assert parse_config_hash(None) == {}
    assert parse_config_hash("a191b442") == {"": "a191b442"}
    assert parse_config_hash("a=1234abcd,b.c=00ff00ff") == {"a": "1234abcd", "b.c": "00ff00ff"}
    assert parse_config_hash("a=1,junk,=2,b=") == {"a": "1"}


def test_one_source_keeps_the_bare_hash_of_the_last_release() -> None:
    value = render_config_hash(None, sources=frozenset({CM}), updates={CM: "1234abcd"})
    assert value == "1234abcd"
    assert carried_hash(value, configmap=CM, sources=frozenset({CM})) == "1234abcd"


def test_several_sources_carry_one_entry_each_and_an_update_keeps_the_others() -> None:
    value = render_config_hash(
        "a=11111111,b=22222222,gone=33333333", sources=frozenset({"a", "b"}), updates={"b": "44444444"}
    )
    assert value == "a=11111111,b=44444444"


def test_a_bare_hash_among_several_sources_is_nobodys_entry() -> None:
    assert carried_hash("1234abcd", configmap=CM, sources=BOTH) is None
    assert render_config_hash("1234abcd", sources=BOTH, updates={OTHER: "ffffffff"}) == f"{OTHER}=ffffffff"


def test_two_servicelinks_of_one_workload_do_not_undo_each_other() -> None:
    # The storm of issue 11: each ServiceLink set the one annotation to its own ConfigMap's hash.
    mine, common = {"REDIS_URL": "redis://redis:6380"}, {"AUTH_URL": "http://auth:3001"}
    w = two_reader()
    (first,) = plan_for(CM, w, mine, {"REDIS_URL": "redis://redis:6379"})
    w = two_reader(merge_rollouts(w.config_hash, [first]))
    assert w.config_hash == f"{CM}={render_hash(mine)}"
    assert plan_for(OTHER, w, common, common) == []
    assert plan_for(CM, w, mine, mine) == []


def test_an_upgrade_from_the_bare_hash_rolls_nothing_up_to_date() -> None:
    mine, common = {"REDIS_URL": "redis://redis:6379"}, {"AUTH_URL": "http://auth:3001"}
    w = two_reader(render_hash(mine))  # what the last release wrote, rolled by this ServiceLink last
    assert plan_for(CM, w, mine, mine) == []
    assert plan_for(OTHER, w, common, common) == []


def test_shares_of_two_servicelinks_go_out_in_one_value() -> None:
    w = two_reader(f"{CM}=11111111,{OTHER}=22222222")
    a = Rollout("Deployment", "gallery", "edge", CM, "33333333", BOTH, ("A",))
    b = Rollout("Deployment", "gallery", "edge", OTHER, "44444444", BOTH, ("B",))
    assert merge_rollouts(w.config_hash, [a, b]) == f"{OTHER}=44444444,{CM}=33333333"


def rolled(w: WorkloadView, config_hash: str) -> WorkloadView:
    """``w`` as servicelink's patch to ``config_hash`` leaves it: the hash on its template, the record on itself."""
    return dataclasses.replace(
        w, config_hash=config_hash, rolled_template=template_record(w.template_digest, config_hash)
    )


def test_an_undo_to_an_older_hash_is_kept_until_a_value_it_reads_changes() -> None:
    old, new, newer = ({"AUTH_URL": f"http://auth:{port}"} for port in (3001, 4001, 5001))
    w = rolled(view("edge", {"containers": [container(envFrom=[env_from()])]}), render_hash(new))
    assert not w.changed_since_rolled
    # kubectl rollout undo brought back the template servicelink rolled away from: its new pods read `new` already.
    back = dataclasses.replace(w, config_hash=render_hash(old))
    assert back.changed_since_rolled
    assert plan([(back, None)], managed=new, baseline=new, desired=new) == []
    # The next change of a value it reads rolls it, once, onto the current values.
    (rollout,) = plan([(back, None)], managed=newer, baseline=new, desired=newer)
    assert rollout.hash == render_hash(newer)


def test_a_template_as_servicelink_left_it_with_an_old_hash_is_rolled_onto_the_current_values() -> None:
    # Rolled to `old`, then opted out (or its kind not followed) while the value became `new`; now rolled again.
    old, new = {"AUTH_URL": "http://auth:3001"}, {"AUTH_URL": "http://auth:4001"}
    w = rolled(view("edge", {"containers": [container(envFrom=[env_from()])]}), render_hash(old))
    assert [r.hash for r in plan([(w, None)], managed=new, baseline=new, desired=new)] == [render_hash(new)]
    # Rolled by a release that left no record: its entry is compared, as before.
    unrecorded = dataclasses.replace(w, rolled_template=None)
    assert [r.hash for r in plan([(unrecorded, None)], managed=new, baseline=new, desired=new)] == [render_hash(new)]


def test_a_consumer_whose_owner_made_it_read_another_key_is_not_rolled_again() -> None:
    values = {"AUTH_URL": "http://auth:3001", "APP_URL": "http://app:3002"}
    before = rolled(
        view("edge", {"containers": [container(env=[key_ref("AUTH_URL")])]}),
        render_hash({"AUTH_URL": values["AUTH_URL"]}),
    )
    # Its owner's edit (a rollout of its own) added APP_URL; the record on its metadata stayed.
    edited = dataclasses.replace(
        view("edge", {"containers": [container(env=[key_ref("AUTH_URL"), key_ref("APP_URL")])]}),
        config_hash=before.config_hash,
        rolled_template=before.rolled_template,
    )
    assert edited.changed_since_rolled
    assert plan([(edited, frozenset({"AUTH_URL", "APP_URL"}))], managed=values, baseline=values, desired=values) == []


def test_the_template_digest_leaves_the_config_hash_out_and_the_view_reads_the_record_label() -> None:
    body = workload_body("edge", {"containers": [container(envFrom=[env_from()])]}, config_hash="22222222")
    body["metadata"]["labels"] = {"servicelink.dev/rolled-template": "33333333"}
    w = WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], body)
    assert w.rolled_template == "33333333"
    other_hash = view("edge", {"containers": [container(envFrom=[env_from()])]}, config_hash="44444444")
    assert w.template_digest == other_hash.template_digest
    other_spec = view("edge", {"containers": [container(envFrom=[env_from("x")])]}, config_hash="22222222")
    assert w.template_digest != other_spec.template_digest


# --- rollout progress -------------------------------------------------------------------------------


def deployment_status(
    *, generation: int = 2, observed: int = 2, replicas: int = 2, updated: int = 2, total: int = 2, available: int = 2,
    conditions: list[dict[str, str]] | None = None, paused: bool = False,
) -> dict[str, Any]:  # fmt: skip
    return {
        "metadata": {"name": "gateway", "namespace": "gallery", "generation": generation},
        "spec": {"replicas": replicas, "paused": paused},
        "status": {
            "observedGeneration": observed,
            "replicas": total,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": conditions or [],
        },
    }


GATEWAY = "Deployment gallery/gateway"
ROLLING = Progress("Progressing", f"{GATEWAY}: new pods not yet available")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (deployment_status(), Progress("Complete")),
        (deployment_status(observed=1), ROLLING),  # the controller has not seen the new template
        (deployment_status(updated=1, total=3, available=2), ROLLING),  # one of two updated
        (deployment_status(total=3, available=2), ROLLING),  # an old pod still terminating
        (deployment_status(available=1), ROLLING),  # an updated pod not available yet
        (deployment_status(replicas=0, updated=0, total=0, available=0), Progress("Complete")),
        (deployment_status(paused=True, updated=0), Progress("Progressing", f"{GATEWAY}: paused; rolls once resumed")),
    ],
)  # fmt: skip
def test_a_deployment_is_complete_once_every_updated_replica_is_available(
    body: dict[str, Any], expected: Progress
) -> None:
    assert read_progress(WORKLOAD_RESOURCES["Deployment"], body) == expected


def test_a_deployment_past_its_deadline_stalls_with_its_own_message() -> None:
    message = 'ReplicaSet "gateway-5cf58646bc" has timed out progressing.'
    deadline = {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": message}
    body = deployment_status(updated=1, available=0, conditions=[deadline])
    assert read_progress(WORKLOAD_RESOURCES["Deployment"], body) == Progress(
        "Stalled", f"Deployment gallery/gateway: {message}"
    )
    # A replica count moving does not change what is reported, so it never turns into a status write.
    assert read_progress(WORKLOAD_RESOURCES["Deployment"], deployment_status(updated=1, available=0)) == read_progress(
        WORKLOAD_RESOURCES["Deployment"], deployment_status(updated=2, available=1)
    )


def test_statefulsets_and_daemonsets_report_from_their_own_status() -> None:
    meta = {"name": "db", "namespace": "gallery", "generation": 4}
    sts = {"metadata": meta, "spec": {"replicas": 3}, "status": {"observedGeneration": 4, "updatedReplicas": 3}}
    assert (
        read_progress(
            WORKLOAD_RESOURCES["StatefulSet"], {**sts, "status": {**sts["status"], "availableReplicas": 2}}
        ).state
        == "Progressing"
    )
    assert (
        read_progress(
            WORKLOAD_RESOURCES["StatefulSet"], {**sts, "status": {**sts["status"], "availableReplicas": 3}}
        ).state
        == "Complete"
    )
    assert (
        read_progress(WORKLOAD_RESOURCES["StatefulSet"], {**sts, "status": {**sts["status"], "readyReplicas": 3}}).state
        == "Complete"
    )
    partitioned = {**sts, "spec": {"replicas": 3, "updateStrategy": {"rollingUpdate": {"partition": 2}}}}
    partial = {"observedGeneration": 4, "updatedReplicas": 1, "availableReplicas": 3}
    assert read_progress(WORKLOAD_RESOURCES["StatefulSet"], {**partitioned, "status": partial}).state == "Complete"
    on_delete = {**sts, "spec": {"replicas": 3, "updateStrategy": {"type": "OnDelete"}}}
    assert read_progress(WORKLOAD_RESOURCES["StatefulSet"], on_delete).state == "Complete"  # nothing rolls it by itself
    ds = {"metadata": meta, "spec": {}, "status": {"observedGeneration": 4, "desiredNumberScheduled": 2}}
    rolling = {**ds["status"], "updatedNumberScheduled": 2, "numberAvailable": 1}
    assert read_progress(WORKLOAD_RESOURCES["DaemonSet"], {**ds, "status": rolling}).state == "Progressing"
    assert (
        read_progress(WORKLOAD_RESOURCES["DaemonSet"], {**ds, "status": {**rolling, "numberAvailable": 2}}).state
        == "Complete"
    )
    assert (
        read_progress(WORKLOAD_RESOURCES["DaemonSet"], {**ds, "metadata": {**meta, "generation": 5}}).state
        == "Progressing"
    )


STALLED = Progress("Stalled", "Deployment gallery/gateway: timed out")


@pytest.mark.parametrize(
    ("before", "after", "requeue"),
    [
        (ROLLING, Progress("Complete"), True),  # the rollout completed
        (ROLLING, STALLED, True),  # it stalled
        (STALLED, Progress("Complete"), True),  # fixed
        (STALLED, ROLLING, True),  # the stall cleared: a new template, or pods coming
        (Progress("Complete"), ROLLING, False),  # started: whoever patched it reported that
        (ROLLING, ROLLING, False),  # a replica came up
        (Progress("Complete"), Progress("Complete"), False),
        (None, Progress("Complete"), False),  # the replay at start
    ],
)
def test_only_a_rollout_completing_or_stalling_reconciles_the_servicelinks(
    before: Progress | None, after: Progress, requeue: bool
) -> None:
    assert rollout_settled(before, after) is requeue


def test_progress_of_counts_a_workload_patched_just_now_as_rolling_whatever_the_watch_said() -> None:
    done = WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], deployment_status())
    gone = RolledOut(kind="Deployment", name="gone", hash="aa")
    rolled = [RolledOut(kind="Deployment", name="gateway", hash="bb"), gone]
    views = {("Deployment", "gateway"): done}
    assert progress_of(rolled, namespace="gallery", workloads=views, just_rolled=frozenset()) == [Progress("Complete")]
    just = frozenset({("Deployment", "gateway")})
    assert progress_of(rolled, namespace="gallery", workloads=views, just_rolled=just) == [ROLLING]


def test_a_cronjob_has_no_rollout_to_wait_for() -> None:
    body = cronjob_body("report", {"containers": [container(**env_from())]})
    # Whatever its status says (a Job running, generation ahead of anything observed), nothing is progressing.
    assert read_progress(WORKLOAD_RESOURCES["CronJob"], body) == Progress("Complete")
    assert read_progress(
        WORKLOAD_RESOURCES["CronJob"], {**body, "status": {"active": [{"name": "report-29001"}]}}
    ) == Progress("Complete")
    views = {("CronJob", "report"): WorkloadView.from_body(WORKLOAD_RESOURCES["CronJob"], body)}
    rolled = [RolledOut(kind="CronJob", name="report", hash="cc")]
    just = frozenset({("CronJob", "report")})
    # Patched just now, it is still complete: only the Jobs it starts next run the new template.
    assert progress_of(rolled, namespace="gallery", workloads=views, just_rolled=just) == [Progress("Complete")]


ARGO = "Rollout gallery/web"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"observedGeneration": "2", "phase": "Healthy"}, Progress("Complete")),
        (
            {"observedGeneration": "2", "phase": "Progressing"},
            Progress("Progressing", f"{ARGO}: new pods not yet available"),
        ),
        (
            {"observedGeneration": "2", "phase": "Paused", "message": "CanaryPauseStep"},
            Progress("Progressing", f"{ARGO}: paused; its steps go on once promoted or resumed"),
        ),
        (
            {"observedGeneration": "2", "phase": "Degraded", "message": "RolloutAborted: aborted"},
            Progress("Stalled", f"{ARGO}: RolloutAborted: aborted"),
        ),
        # The phase is the last revision's until the controller saw this generation; no status at all, no controller.
        (
            {"observedGeneration": "1", "phase": "Healthy"},
            Progress("Progressing", f"{ARGO}: new pods not yet available"),
        ),
        ({}, Progress("Progressing", f"{ARGO}: new pods not yet available")),
    ],
)
def test_an_argo_rollouts_progress_is_its_phase_once_its_generation_is_observed(
    status: dict[str, Any], expected: Progress
) -> None:
    body = argo_rollout_body("web", {"containers": [container(**env_from())]}, status=status)
    assert read_progress(WORKLOAD_RESOURCES["Rollout"], body) == expected
    assert WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], body).progress == expected


def restarting_rollout(restart_at: str | None, restarted_at: str | None, **metadata: Any) -> dict[str, Any]:
    """An Argo Rollout whose owner asks servicelink for restarts, with its spec and status as the controller saw."""
    status = {"observedGeneration": "2", "phase": "Healthy"} | ({"restartedAt": restarted_at} if restarted_at else {})
    body = argo_rollout_body("web", {"containers": [container(**env_from())]}, config_hash="11111111", status=status)
    body["metadata"]["annotations"] = {"servicelink.dev/rollout": " Restart ", **metadata}
    if restart_at:
        body["spec"]["restartAt"] = restart_at
    return body


def test_a_rollout_in_restart_mode_carries_the_hash_it_restarted_for_on_its_own_metadata() -> None:
    body = restarting_rollout(None, None, **{"servicelink.dev/config-hash": "22222222"})
    w = WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], body)
    assert (w.restart, w.config_hash) == (True, "22222222")  # not the template's 11111111
    # Only an inline template is restarted in place; any other value of the annotation rolls as usual.
    assert not WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], argo_rollout_body("web", None)).restart
    body["metadata"]["annotations"]["servicelink.dev/rollout"] = "revision"
    assert WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], body).config_hash == "11111111"
    # Due as any consumer: its entry (on its metadata) differs from what it reads.
    values = {"AUTH_URL": "http://auth:4001"}
    (rollout,) = plan([(w, None)], managed=values, baseline={"AUTH_URL": "http://auth:3001"}, desired=values)
    assert rollout.hash == render_hash(values)


@pytest.mark.parametrize(
    ("restart_at", "restarted_at", "expected"),
    [
        ("2026-12-07T10:00:00Z", None, Progress("Progressing", f"{ARGO}: restarting its pods")),
        ("2026-12-07T10:00:00Z", "2026-12-07T09:00:00Z", Progress("Progressing", f"{ARGO}: restarting its pods")),
        ("2026-12-07T10:00:00Z", "2026-12-07T10:00:00Z", Progress("Complete")),
        (None, None, Progress("Complete")),
    ],
)
def test_a_restart_asked_of_an_argo_rollout_is_in_progress_until_its_controller_says_it_restarted(
    restart_at: str | None, restarted_at: str | None, expected: Progress
) -> None:
    body = restarting_rollout(restart_at, restarted_at)
    assert read_progress(WORKLOAD_RESOURCES["Rollout"], body) == expected


def test_an_argo_rollout_patched_just_now_is_rolling() -> None:
    healthy = argo_rollout_body("web", {"containers": []}, status={"observedGeneration": "2", "phase": "Healthy"})
    views = {("Rollout", "web"): WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], healthy)}
    rolled = [RolledOut(kind="Rollout", name="web", hash="cc")]
    just = frozenset({("Rollout", "web")})
    assert progress_of(rolled, namespace="gallery", workloads=views, just_rolled=just) == [
        Progress("Progressing", f"{ARGO}: new pods not yet available")
    ]


def test_a_deployment_an_argo_rollout_runs_the_template_of_is_named_with_it() -> None:
    assert describe_workload("Deployment", "gallery", "web") == "Deployment gallery/web"
    assert (
        describe_workload("Deployment", "gallery", "web-template", templated_by=["web"])
        == "Deployment gallery/web-template (the template of Rollout gallery/web)"
    )
    assert describe_workload("Deployment", "gallery", "t", templated_by=["a", "b"]) == (
        "Deployment gallery/t (the template of Rollout gallery/a, Rollout gallery/b)"
    )


def test_progress_of_names_the_rollouts_of_a_deployment_in_its_message_and_nothing_else() -> None:
    template = WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], deployment_status())
    rolled = [RolledOut(kind="Deployment", name="gateway", hash="bb")]
    views = {("Deployment", "gateway"): template}
    just = frozenset({("Deployment", "gateway")})
    assert progress_of(
        rolled, namespace="gallery", workloads=views, just_rolled=just, templated_by={"gateway": ["gw"]}
    ) == [
        Progress(
            "Progressing", "Deployment gallery/gateway (the template of Rollout gallery/gw): new pods not yet available"
        )
    ]
    # Complete has no message to rename; another Deployment's Rollouts rename nothing.
    assert progress_of(
        rolled, namespace="gallery", workloads=views, just_rolled=frozenset(), templated_by={"gateway": ["gw"]}
    ) == [Progress("Complete")]
    assert progress_of(
        rolled, namespace="gallery", workloads=views, just_rolled=just, templated_by={"other": ["gw"]}
    ) == [ROLLING]


def rollout_of_gateway(name: str = "gw", **status: str) -> WorkloadView:
    """A Rollout whose ``spec.workloadRef`` names the Deployment ``gateway`` of ``deployment_status``."""
    body = argo_rollout_body(name, None, status=dict(status))
    body["spec"]["workloadRef"]["name"] = "gateway"
    return WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], body)


def test_a_rollout_keeps_the_generation_of_its_deployment_that_its_controller_saw() -> None:
    rollout = rollout_of_gateway(workloadObservedGeneration="3")
    assert (rollout.workload_ref, rollout.workload_generation, rollout.generation) == ("gateway", "3", 2)
    assert rollout_of_gateway().workload_generation == ""
    assert WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], deployment_status(generation=5)).generation == 5


GW = "Rollout gallery/gw"
UNSEEN = Progress("Progressing", f"{GW}: Argo Rollouts has not yet seen the new template of Deployment gallery/gateway")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, UNSEEN),  # no controller yet
        # The controller has not seen the Deployment's generation 2: the phase is the last revision's.
        ({"workloadObservedGeneration": "1", "observedGeneration": "2", "phase": "Healthy"}, UNSEEN),
        ({"workloadObservedGeneration": "2", "observedGeneration": "2", "phase": "Healthy"}, Progress("Complete")),
        (
            {"workloadObservedGeneration": "2", "observedGeneration": "2", "phase": "Progressing"},
            Progress("Progressing", f"{GW}: new pods not yet available"),
        ),
        (
            {"workloadObservedGeneration": "2", "observedGeneration": "2", "phase": "Paused"},
            Progress("Progressing", f"{GW}: paused; its steps go on once promoted or resumed"),
        ),
        (
            {"workloadObservedGeneration": "2", "observedGeneration": "2", "phase": "Degraded", "message": "aborted"},
            Progress("Stalled", f"{GW}: aborted"),
        ),
        # Its own spec changed too, and that generation is not seen yet.
        (
            {"workloadObservedGeneration": "2", "observedGeneration": "1", "phase": "Healthy"},
            Progress("Progressing", f"{GW}: new pods not yet available"),
        ),
    ],
)
def test_a_deployment_argo_rollouts_run_the_template_of_follows_their_phase_once_they_saw_its_generation(
    status: dict[str, str], expected: Progress
) -> None:
    # The Deployment itself is done (Argo Rollouts keeps it at zero replicas): that is not what is waited for.
    deployment = WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], deployment_status(generation=2))
    assert deployment.progress == Progress("Complete")
    assert follow_rollouts(deployment, [rollout_of_gateway(**status)]) == expected


def test_a_deployment_whose_rollouts_ask_for_restarts_follows_their_restart_not_a_new_revision() -> None:
    deployment = WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], deployment_status(generation=2))
    asking = {"servicelink.dev/rollout": "restart"}

    def restarting(restart_at: str | None, restarted_at: str | None) -> WorkloadView:
        status = {"workloadObservedGeneration": "2", "observedGeneration": "2", "phase": "Healthy"}
        body = argo_rollout_body("gw", None, status=status | ({"restartedAt": restarted_at} if restarted_at else {}))
        body["spec"]["workloadRef"]["name"] = "gateway"
        body["metadata"]["annotations"] = asking
        if restart_at:
            body["spec"]["restartAt"] = restart_at
        return WorkloadView.from_body(WORKLOAD_RESOURCES["Rollout"], body)

    asked = restarting("2026-12-07T10:00:00Z", None)
    assert (asked.asks_restart, asked.restart) == (True, False)  # its Deployment is what servicelink records on
    # Just now: the Rollout restarts; its template was not touched, so nothing waits for a new revision.
    just = follow_rollouts(deployment, [restarting(None, None)], patched_now=True)
    assert just == Progress("Progressing", f"{GW}: restarting its pods")
    assert follow_rollouts(deployment, [asked]) == Progress("Progressing", f"{GW}: restarting its pods")
    done = restarting("2026-12-07T10:00:00Z", "2026-12-07T10:00:00Z")
    assert follow_rollouts(deployment, [done]) == Progress("Complete")


def test_a_deployment_patched_just_now_waits_for_its_rollouts_to_see_it_and_one_without_any_for_itself() -> None:
    deployment = WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], deployment_status(generation=2))
    healthy = rollout_of_gateway(workloadObservedGeneration="2", observedGeneration="2", phase="Healthy")
    # This view predates the patch: its generation, and what the Rollout saw, are the last ones.
    assert follow_rollouts(deployment, [healthy], patched_now=True) == UNSEEN
    assert follow_rollouts(deployment, [], patched_now=True) == ROLLING
    assert follow_rollouts(deployment, []) == Progress("Complete")


def test_a_deployment_that_keeps_replicas_of_its_own_is_waited_for_too_once_its_rollouts_are_done() -> None:
    # workloadRef.scaleDown "never" (Argo's default) leaves the Deployment's pods running: its controller rolls them.
    rolling = WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], deployment_status(updated=1, available=1))
    healthy = rollout_of_gateway(workloadObservedGeneration="2", observedGeneration="2", phase="Healthy")
    assert follow_rollouts(rolling, [healthy]) == rolling.progress
    assert rolling.progress.state == "Progressing"
    stalled = rollout_of_gateway(workloadObservedGeneration="2", observedGeneration="2", phase="Degraded")
    assert follow_rollouts(rolling, [stalled]).state == "Stalled"  # the Rollout's, named first


def test_of_several_rollouts_a_stalled_one_comes_first_then_a_progressing_one() -> None:
    deployment = WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], deployment_status(generation=2))
    seen = {"workloadObservedGeneration": "2", "observedGeneration": "2"}
    healthy = rollout_of_gateway("a", **seen, phase="Healthy")
    paused = rollout_of_gateway("b", **seen, phase="Paused")
    degraded = rollout_of_gateway("c", **seen, phase="Degraded", message="aborted")
    assert follow_rollouts(deployment, [healthy]) == Progress("Complete")
    assert follow_rollouts(deployment, [paused, healthy]) == paused.progress
    assert follow_rollouts(deployment, [healthy, paused, degraded]) == Progress("Stalled", "Rollout gallery/c: aborted")


def test_progress_of_a_deployment_argo_rollouts_run_is_theirs_and_names_them() -> None:
    template = WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], deployment_status())
    rolled = [RolledOut(kind="Deployment", name="gateway", hash="bb")]
    views = {("Deployment", "gateway"): template}
    unseen, healthy = (
        rollout_of_gateway(),
        rollout_of_gateway(workloadObservedGeneration="2", observedGeneration="2", phase="Healthy"),
    )
    rolled_kw: dict[str, Any] = {"namespace": "gallery", "workloads": views, "templated_by": {"gateway": ["gw"]}}
    assert progress_of(rolled, just_rolled=frozenset(), rollouts={"gw": unseen}, **rolled_kw) == [UNSEEN]
    assert progress_of(rolled, just_rolled=frozenset(), rollouts={"gw": healthy}, **rolled_kw) == [Progress("Complete")]
    just = frozenset({("Deployment", "gateway")})
    assert progress_of(rolled, just_rolled=just, rollouts={"gw": healthy}, **rolled_kw) == [UNSEEN]


# --- waiting for endpoints --------------------------------------------------------------------------


def link(key: str, service: str, value: str, ready: int | None) -> LinkResult:
    endpoints = None if ready is None else Endpoints(ready=ready, total=max(ready, 1))
    return LinkResult(key=key, service=service, value=value, reason="Resolved", message="", endpoints=endpoints)


def test_a_changed_link_whose_service_has_no_ready_endpoint_holds_the_rollout() -> None:
    results = [
        link("AUTH_SERVICE_URL", "gallery/auth-v2", "http://auth-v2:3001", 0),
        link("APP_SERVICE_URL", "gallery/app", APP, None),  # unchanged: never waited for
    ]
    baseline = {"AUTH_SERVICE_URL": AUTH_OLD, "APP_SERVICE_URL": APP}
    desired = {"AUTH_SERVICE_URL": "http://auth-v2:3001", "APP_SERVICE_URL": APP}
    changed, blocked = plan_deferral(results, services={}, baseline=baseline, desired=desired)
    expected = [Deferred(key="AUTH_SERVICE_URL", service="gallery/auth-v2", previous=AUTH_OLD)]
    assert changed == blocked == expected
    # One ready endpoint: nothing blocks.
    results[0] = link("AUTH_SERVICE_URL", "gallery/auth-v2", "http://auth-v2:3001", 1)
    assert plan_deferral(results, services={}, baseline=baseline, desired=desired) == (expected, [])


def test_an_externalname_service_is_never_waited_for() -> None:
    external = ServiceView(
        namespace="gallery",
        name="db",
        type="ExternalName",
        ports=(),
        external_name="db.example.com",
        expose_to=frozenset(),
    )
    results = [link("DB_HOST", "gallery/db", "db.example.com", None)]
    _, blocked = plan_deferral(
        results, services={("gallery", "db"): external}, baseline={}, desired={"DB_HOST": "db.example.com"}
    )
    assert blocked == []


def test_a_held_back_key_still_counts_as_a_change_the_next_time() -> None:
    held = [
        Deferred(key="AUTH_SERVICE_URL", service="gallery/auth-v2", previous=AUTH_OLD),
        Deferred(key="NEW_URL", service="gallery/new", previous=None),
    ]
    written = {"AUTH_SERVICE_URL": AUTH_NEW, "NEW_URL": APP, "OTHER": "x"}
    assert restore_deferred(written, held) == {"AUTH_SERVICE_URL": AUTH_OLD, "OTHER": "x"}
    # A consumer never rolled (no entry) rolls for it once the endpoint is ready.
    view = WorkloadView.from_body(
        WORKLOAD_RESOURCES["Deployment"], workload_body("gateway", {"containers": [container(**env_from())]})
    )
    plans = plan_rollouts(
        [(view, None)],
        configmap=CM,
        managed_configmaps=frozenset({CM}),
        managed=written,
        baseline=restore_deferred(written, held),
        desired=written,
    )
    assert [p.changed_keys for p in plans] == [("AUTH_SERVICE_URL", "NEW_URL")]


# --- Jobs ----------------------------------------------------------------------------------------


def job_body(
    name: str, pod_spec: dict[str, Any], *, config_hash: str | None = None, finished: str | None = None
) -> dict[str, Any]:
    """A Job running ``pod_spec``; ``finished``: the type of the True condition that ends it."""
    template = workload_body(name, pod_spec, config_hash=config_hash)["spec"]["template"]
    conditions = [{"type": "Complete", "status": "False"}]
    if finished is not None:
        conditions.append({"type": finished, "status": "True"})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "gallery"},
        "spec": {"template": template},
        "status": {"active": 1, "conditions": conditions},
    }


def job(name: str, pod_spec: dict[str, Any], **kw: Any) -> JobView:
    return JobView.from_body(job_body(name, pod_spec, **kw))


def stale(
    jobs: list[JobView], *, changed: set[str], previous: tuple[StaleJob, ...] | list[StaleJob] = ()
) -> list[tuple[str, str, list[str]]]:
    found = find_stale_jobs(
        jobs,
        configmap=CM,
        changed=frozenset(changed),
        managed={"AUTH_URL": AUTH_NEW, "APP_URL": APP},
        previous=previous,
    )
    return [(entry.name, entry.hash, entry.keys) for entry in found]


def test_a_job_view_reads_what_its_pods_read_the_hash_they_carry_and_whether_it_runs() -> None:
    running = job("report", {"containers": [container(env=[key_ref("AUTH_URL")])]}, config_hash="abc")
    assert (running.name, running.reads, running.config_hash, running.running) == (
        "report",
        {CM: frozenset({"AUTH_URL"})},
        "abc",
        True,
    )
    for condition in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"):
        assert not job("done", {"containers": [container(**env_from())]}, finished=condition).running
    assert JobView.from_body({"metadata": {"name": "bare"}}).running  # not started yet: it will run


def test_a_job_view_reads_the_secrets_its_pods_read_apart_from_its_configmaps() -> None:
    got = job("migrate", reads_configmap_and_secret_db())
    assert got.reads == {"db": frozenset({"HOST"})}
    assert got.secret_reads == {"db": frozenset({"PASSWORD"}), "tls": frozenset({"tls.crt"})}


def test_a_running_job_reading_a_changed_key_is_stale_with_the_hash_it_started_on() -> None:
    unknown = job("by-hand", {"containers": [container(**env_from())]})
    from_cronjob = job("nightly-1", {"containers": [container(env=[key_ref("AUTH_URL")])]}, config_hash="0ld0ld00")
    assert stale([unknown, from_cronjob], changed={"AUTH_URL"}) == [
        ("by-hand", "unknown", ["AUTH_URL"]),
        ("nightly-1", "0ld0ld00", ["AUTH_URL"]),
    ]


def test_key_level_precision_and_other_configmaps_and_finished_jobs() -> None:
    other_key = job("app-only", {"containers": [container(env=[key_ref("APP_URL")])]})
    other_configmap = job("elsewhere", {"containers": [container(**env_from("another"))]})
    finished = job("done", {"containers": [container(**env_from())]}, finished="Complete")
    assert stale([other_key, other_configmap, finished], changed={"AUTH_URL"}) == []
    assert stale([other_key], changed=set()) == []  # nothing changed: nothing stale


def test_a_job_created_from_a_cronjob_annotated_for_the_change_is_not_stale() -> None:
    fresh = job(
        "nightly-2",
        {"containers": [container(env=[key_ref("AUTH_URL")])]},
        config_hash=render_hash({"AUTH_URL": AUTH_NEW}),
    )
    assert stale([fresh], changed={"AUTH_URL"}) == []


def test_a_listed_job_stays_while_it_runs_keeps_its_hash_and_gains_keys() -> None:
    running = job("by-hand", {"containers": [container(**env_from())]})
    before = [StaleJob(name="by-hand", hash="unknown", keys=["AUTH_URL"]), StaleJob(name="gone", hash="x", keys=["A"])]
    assert stale([running], changed=set(), previous=before) == [("by-hand", "unknown", ["AUTH_URL"])]
    assert stale([running], changed={"APP_URL"}, previous=before) == [("by-hand", "unknown", ["APP_URL", "AUTH_URL"])]
    finished = job("by-hand", {"containers": [container(**env_from())]}, finished="Failed")
    assert stale([finished], changed=set(), previous=before) == []


def test_a_reader_of_the_whole_configmap_alone_never_sees_the_secrets_keys() -> None:
    secret = SecretOutput("app-secrets", frozenset({"DATABASE_URL"}))
    cm_keys = frozenset({"API_URL"})
    whole = _reader({"envFrom": [{"configMapRef": {"name": "cm"}}]})
    both = _reader({"envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "app-secrets"}}]})
    key_ref = {"secretKeyRef": {"name": "app-secrets", "key": "DATABASE_URL"}}
    one_key = _reader({"env": [{"name": "D", "valueFrom": key_ref}]})
    assert reads_of(whole, configmap="cm", configmap_keys=cm_keys, secret=None) is None
    assert reads_of(whole, configmap="cm", configmap_keys=cm_keys, secret=secret) == cm_keys
    assert reads_of(both, configmap="cm", configmap_keys=cm_keys, secret=secret) == cm_keys | secret.keys
    assert reads_of(one_key, configmap="cm", configmap_keys=cm_keys, secret=secret) == frozenset({"DATABASE_URL"})
    assert reads_of(one_key, configmap="cm", configmap_keys=cm_keys, secret=None) is ...


def _reader(container: dict[str, Any]) -> WorkloadView:
    body = {
        "metadata": {"name": "w", "namespace": "gallery"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", **container}]}}},
    }
    return WorkloadView.from_body(WORKLOAD_RESOURCES["Deployment"], body)


def test_a_running_job_reading_the_servicelinks_secret_is_stale_when_its_key_changed_alone() -> None:
    secret = SecretOutput("app-secrets", frozenset({"DATABASE_URL"}))
    key_ref = {"secretKeyRef": {"name": "app-secrets", "key": "DATABASE_URL"}}
    migrate = job("migrate", {"containers": [container(env=[{"name": "D", "valueFrom": key_ref}])]})
    whole_configmap = job("report", {"containers": [container(**env_from())]})
    found = find_stale_jobs(
        [migrate, whole_configmap],
        configmap=CM,
        changed=frozenset({"DATABASE_URL"}),
        managed={"AUTH_URL": AUTH_NEW, "DATABASE_URL": "sha256:0123456789abcdef"},
        previous=(),
        secret=secret,
    )
    assert [(entry.name, entry.keys) for entry in found] == [("migrate", ["DATABASE_URL"])]
