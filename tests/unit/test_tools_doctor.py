"""tools/doctor.py: each check of the troubleshooting table, on literal objects."""

from __future__ import annotations

from typing import Any

from servicelink.model import WorkloadResource
from servicelink.tools.commands import mapped_kind_named
from servicelink.tools.doctor import ClusterState, examine, format_json, format_text


def service(namespace: str, name: str, *ports: int, **spec: Any) -> dict[str, Any]:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"port": p} for p in ports], **spec},
    }


def ready_slice(namespace: str, service_name: str, ready: bool = True) -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-1",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": ready}}],
    }


def deployment(name: str, *, env: list[dict[str, Any]], env_from: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "env": env}
    if env_from:
        container["envFrom"] = [{"configMapRef": {"name": env_from}}]
    return {
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"spec": {"containers": [container]}}},
    }


def configmap(name: str, data: dict[str, str], changed: str) -> dict[str, Any]:
    fields = {"f:data": {f"f:{k}": {} for k in data}}
    return {
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl-edit", "operation": "Update", "time": changed, "fieldsV1": fields}],
        },
        "data": data,
    }


def pod(app: str, started: str | None) -> dict[str, Any]:
    running = [{"name": "app", "state": {"running": {"startedAt": started}}}] if started else []
    return {
        "kind": "Pod",
        "metadata": {"name": f"{app}-x", "namespace": "shop", "labels": {"app": app}},
        "status": {"phase": "Running" if started else "Pending", "containerStatuses": running},
    }


CLUSTER = [
    service("shop", "api", 8080),
    ready_slice("shop", "api"),
    service("shop", "idle", 80),
    ready_slice("shop", "idle", ready=False),
    service("identity", "auth", 3001),
    ready_slice("identity", "auth"),
    service("shop", "payments", type="ExternalName", externalName="pay.example.com"),
]


def checks(objects: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    (report,) = examine(ClusterState.from_objects(objects), cluster_domain="cluster.local")
    return {f.variable: tuple(p.check for p in f.problems) for f in report.findings}


def test_each_problem_is_found_and_plain_values_are_not_addresses() -> None:
    env = [
        {"name": "API_URL", "value": "http://api:8080"},
        {"name": "MISSING_URL", "value": "http://nope:80"},
        {"name": "BAD_PORT", "value": "api:9999"},
        {"name": "IDLE_URL", "value": "http://idle"},
        {"name": "AUTH_URL", "value": "http://auth:3001"},
        {"name": "AUTH_FQDN", "value": "http://auth.identity.svc.cluster.local:3001"},
        {"name": "PAY_URL", "value": "https://payments:443"},
        {"name": "LOCAL", "value": "http://localhost:1"},
        {"name": "MODE", "value": "production"},
        {"name": "SITE", "value": "https://www.example.com"},
    ]
    assert checks([*CLUSTER, deployment("web", env=env)]) == {
        "API_URL": (),
        "MISSING_URL": ("ServiceNotFound",),
        "BAD_PORT": ("PortNotFound",),
        "IDLE_URL": ("NoReadyEndpoints",),
        "AUTH_URL": ("ShortNameAcrossNamespaces",),
        "AUTH_FQDN": (),
        "PAY_URL": (),
    }


def test_credentials_are_checked_never_shown_and_a_bare_host_needs_an_address_key() -> None:
    password = "pw-not-to-show"
    env = [
        {"name": "DATABASE_URL", "value": f"postgres://dbuser:{password}@api:5432/shop"},
        {"name": "API_HOST", "value": "api"},
        {"name": "UPSTREAM", "value": "api"},
        {"name": "API_PASSWORD", "value": "api"},
    ]
    reports = examine(ClusterState.from_objects([*CLUSTER, deployment("web", env=env)]), cluster_domain="c")
    assert checks([*CLUSTER, deployment("web", env=env)]) == {
        "DATABASE_URL": ("PortNotFound", "CredentialsInPlainText"),
        "API_HOST": (),
    }
    assert reports[0].findings[0].value == "postgres://***@api:5432/shop"
    text = format_text(reports) + format_json(reports)
    leaked = password in text or "dbuser" in text
    assert not leaked, "doctor shows the user or password"


def test_a_hand_written_value_with_credentials_is_advised_to_move_to_a_link_with_credentials() -> None:
    password = "pw-not-to-show"
    url = f"postgres://dbuser:{password}@api:8080/shop"
    objects = [
        *CLUSTER,
        configmap("web-config", {"DATABASE_URL": url}, "2026-01-01T00:00:00Z"),
        deployment("web", env=[{"name": "DIRECT_URL", "value": url}], env_from="web-config"),
    ]
    reports = examine(ClusterState.from_objects(objects), cluster_domain="c")
    assert checks(objects) == {"DATABASE_URL": ("CredentialsInPlainText",), "DIRECT_URL": ("CredentialsInPlainText",)}
    text = format_text(reports)
    assert (
        "    CredentialsInPlainText: DATABASE_URL carries credentials (user:password@) in plain text: whoever reads"
        " ConfigMap web-config reads them\n"
        "      fix: move it to a ServiceLink link with credentials: the user and password go to a Secret its owner"
        " shares, and servicelink writes the value to a Secret the pods read (secretKeyRef or envFrom secretRef);"
        " servicelink adopt -n shop configmap/web-config proposes the link\n"
    ) in text
    assert "whoever reads the pod template reads them" in text
    assert "(links[].credentials.secretName, spec.secretName)" in text
    shown = text + format_json(reports)
    leaked = password in shown or "dbuser" in shown
    assert not leaked, "doctor shows the user or password"


def test_the_text_names_each_problem_and_its_fix() -> None:
    env = [{"name": "AUTH_URL", "value": "http://auth:3001"}, {"name": "BAD", "value": "api:9999"}]
    text = format_text(examine(ClusterState.from_objects([*CLUSTER, deployment("web", env=env)]), cluster_domain="c"))
    assert text.splitlines()[:3] == [
        "Deployment shop/web",
        "  VARIABLE  VALUE             FROM  MANAGED BY    SERVICE    CHECK",
        "  AUTH_URL  http://auth:3001  env   hand-written  shop/auth  ShortNameAcrossNamespaces",
    ]
    assert "      fix: use the FQDN auth.identity.svc.c (a short name resolves only in the pod's own namespace)" in text
    assert "    PortNotFound: Service shop/api has no port 9999 (ports: 8080; connection refused)" in text
    assert text.endswith("2 service addresses in 1 workloads checked: 2 problems\n")


def test_stale_pods_and_who_manages_a_value() -> None:
    objects = [
        *CLUSTER,
        configmap("web-config", {"API_URL": "http://api:8080", "OTHER": "http://api:8080"}, "2026-01-02T00:00:00Z"),
        {
            "kind": "ServiceLink",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"configMapName": "web-config", "links": [{"key": "API_URL", "service": "api"}]},
        },
        deployment("web", env=[], env_from="web-config"),
        pod("web", "2026-01-01T12:00:00Z"),
    ]
    (report,) = examine(ClusterState.from_objects(objects), cluster_domain="cluster.local")
    assert [(f.variable, f.source, f.managed_by) for f in report.findings] == [
        ("API_URL", "configmap/web-config", "ServiceLink web"),
        ("OTHER", "configmap/web-config", "hand-written"),
    ]
    stale = report.findings[0].problems[0]
    assert stale.check == "StalePods"
    assert stale.message.startswith("1 of 1 pods' containers started before ConfigMap web-config's API_URL changed")
    assert stale.fix.startswith("kubectl rollout restart deployment/web")
    objects[-1] = pod("web", "2026-01-03T00:00:00Z")
    assert checks(objects) == {"API_URL": (), "OTHER": ()}
    objects[-1] = pod("web", None)  # waiting to start: it reads the value it starts with
    assert checks(objects) == {"API_URL": (), "OTHER": ()}


def test_a_missing_configmap_is_a_problem_of_the_workload() -> None:
    (report,) = examine(
        ClusterState.from_objects([deployment("web", env=[], env_from="gone")]), cluster_domain="cluster.local"
    )
    assert [p.check for p in report.problems] == ["ConfigMapNotFound"]
    assert report.problem_count == 1


def cronjob(name: str, *, env: list[dict[str, Any]]) -> dict[str, Any]:
    template = deployment(name, env=env)["spec"]["template"]
    return {
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}},
    }


def test_a_cronjob_is_checked_through_its_job_template() -> None:
    env = [{"name": "API_URL", "value": "http://api:8080"}, {"name": "MISSING_URL", "value": "http://nope:80"}]
    objects = [*CLUSTER, cronjob("report", env=env), pod("report", "2020-01-01T00:00:00Z")]
    (report,) = examine(ClusterState.from_objects(objects), cluster_domain="cluster.local")
    assert (report.kind, report.name) == ("CronJob", "report")
    # No selector, so no pods of its own to call stale: the next Job reads the ConfigMap afresh.
    assert {f.variable: tuple(p.check for p in f.problems) for f in report.findings} == {
        "API_URL": (),
        "MISSING_URL": ("ServiceNotFound",),
    }


def job(name: str, *, env_from: str, finished: bool = False) -> dict[str, Any]:
    spec = deployment(name, env=[], env_from=env_from)["spec"]
    conditions = [{"type": "Complete", "status": "True"}] if finished else []
    return {
        "kind": "Job",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
        "status": {"conditions": conditions},
    }


def test_a_running_jobs_pods_on_an_old_value_are_stale_with_a_fix_that_restarts_nothing() -> None:
    objects = [
        *CLUSTER,
        configmap("batch-config", {"API_URL": "http://api:8080"}, "2026-01-02T00:00:00Z"),
        job("backfill", env_from="batch-config"),
        pod("backfill", "2026-01-01T12:00:00Z"),
        job("done", env_from="batch-config", finished=True),
    ]
    (report,) = examine(ClusterState.from_objects(objects), cluster_domain="cluster.local")
    assert (report.kind, report.name) == ("Job", "backfill"), "a finished Job runs nothing: not checked"
    (stale,) = report.findings[0].problems
    assert stale.check == "StaleJobPods"
    assert stale.fix.startswith("a Job's pods keep the values they started on: let job/backfill finish")


# A kind whose pod template sits deeper than .spec.template: doctor finds it where the mapping says.
WORKER = WorkloadResource(
    "Worker.batch.example.com", "batch.example.com", "v1", "workers", ("spec", "run", "template"), rolls=True
)


def worker(name: str, *, env: list[dict[str, Any]], env_from: str | None = None) -> dict[str, Any]:
    spec = deployment(name, env=env, env_from=env_from)["spec"]
    return {
        "apiVersion": "batch.example.com/v1",
        "kind": "Worker",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"selector": spec["selector"], "run": {"template": spec["template"]}},
    }


def test_a_mapped_kind_is_checked_through_its_mapped_pod_template() -> None:
    env = [{"name": "API_URL", "value": "http://api:8080"}, {"name": "MISSING_URL", "value": "http://nope:80"}]
    objects = [*CLUSTER, worker("crunch", env=env)]
    (report,) = examine(ClusterState.from_objects(objects, mapped={WORKER.kind: WORKER}), cluster_domain="c")
    assert (report.kind, report.name) == ("Worker.batch.example.com", "crunch")
    assert {f.variable: tuple(p.check for p in f.problems) for f in report.findings} == {
        "API_URL": (),
        "MISSING_URL": ("ServiceNotFound",),
    }
    # As the cluster lists it: its kind already named Kind.group.
    listed = {**worker("crunch", env=env), "kind": WORKER.kind}
    assert examine(ClusterState.from_objects([*CLUSTER, listed], mapped={WORKER.kind: WORKER}), cluster_domain="c")
    # Unmapped, it is no workload.
    assert examine(ClusterState.from_objects(objects), cluster_domain="c") == []


def test_stale_pods_of_a_mapped_kind_are_not_sent_to_kubectl_rollout_restart() -> None:
    objects = [
        *CLUSTER,
        configmap("web-config", {"API_URL": "http://api:8080"}, "2026-01-02T00:00:00Z"),
        worker("crunch", env=[], env_from="web-config"),
        pod("crunch", "2026-01-01T12:00:00Z"),
    ]
    (report,) = examine(ClusterState.from_objects(objects, mapped={WORKER.kind: WORKER}), cluster_domain="c")
    (stale,) = report.findings[0].problems
    assert stale.check == "StalePods"
    assert stale.fix.startswith(
        "change an annotation in worker.batch.example.com/crunch's pod template (at .spec.run.template)"
    )


def test_stale_pods_of_an_argo_rollout_are_restarted_with_argos_kubectl_plugin() -> None:
    spec = deployment("canary", env=[], env_from="web-config")["spec"]
    rollout = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "canary", "namespace": "shop"},
        "spec": {**spec, "strategy": {"canary": {"steps": [{"setWeight": 20}]}}},
    }
    objects = [
        *CLUSTER,
        configmap("web-config", {"API_URL": "http://api:8080"}, "2026-01-02T00:00:00Z"),
        rollout,
        pod("canary", "2026-01-01T12:00:00Z"),
    ]
    (report,) = examine(ClusterState.from_objects(objects), cluster_domain="c")
    (stale,) = report.findings[0].problems
    assert stale.check == "StalePods"
    # kubectl rollout restart has no Rollout kind: Argo's plugin sets spec.restartAt instead.
    assert stale.fix.startswith("kubectl argo rollouts restart canary -n shop (Argo Rollouts' kubectl plugin: it sets")
    assert "kubectl rollout restart" not in stale.fix


def test_doctor_names_a_mapped_kind_as_kubectl_get_does() -> None:
    mapped = {WORKER.kind: WORKER}
    for text in ("Worker.batch.example.com", "worker.batch.example.com", "workers.batch.example.com"):
        assert mapped_kind_named(text, mapped) == WORKER.kind
    assert mapped_kind_named("workers.example.com", mapped) is None
    assert mapped_kind_named("Worker", mapped) is None


def test_the_servicelinks_that_do_not_roll_a_workload_are_listed_with_their_reason() -> None:
    why = "Deployment shop/web carries servicelink.dev/rollout: never; never rolled"
    objects = [
        *CLUSTER,
        configmap("web-config", {"API_URL": "http://api:8080"}, "2026-01-02T00:00:00Z"),
        {
            "kind": "ServiceLink",
            "metadata": {"name": "links", "namespace": "shop"},
            "spec": {"configMapName": "web-config", "links": [{"key": "API_URL", "service": "api"}]},
            "status": {
                "skipped": [{"kind": "Deployment", "name": "web", "reason": "WorkloadOptedOut", "message": why}]
            },
        },
        deployment("web", env=[], env_from="web-config"),
        deployment("other", env=[], env_from="web-config"),
    ]
    reports = examine(ClusterState.from_objects(objects), cluster_domain="cluster.local")
    assert [(r.name, [(n.servicelink, n.reason) for n in r.not_rolled]) for r in reports] == [
        ("other", []),
        ("web", [("links", "WorkloadOptedOut")]),
    ]
    assert all(r.problem_count == 0 for r in reports)  # the owner's word, not a problem
    text = format_text(reports)
    assert f"Deployment shop/web\n  not rolled by ServiceLink links (WorkloadOptedOut): {why}\n" in text
    assert text.endswith(
        "2 service addresses in 2 workloads checked: 0 problems; 1 workloads not rolled by a ServiceLink\n"
    )
    assert '"not_rolled": [' in format_json(reports)
