"""servicelink graph: nodes, edges and their states, in Mermaid, dot and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from console import GALLERY, GOLDEN, REPO, Ran, assert_golden, run


@pytest.mark.parametrize(("output", "golden"), [("mermaid", "graph-gallery.mmd"), ("dot", "graph-gallery.dot")])
def test_gallery_golden(capsys: pytest.CaptureFixture[str], output: str, golden: str) -> None:
    ran = run(capsys, "graph", "-f", str(GALLERY), "-o", output)
    assert ran.code == 0
    assert_golden(golden, ran.out)


def test_gallery_json_names_each_consumer_and_key(capsys: pytest.CaptureFixture[str]) -> None:
    graph = json.loads(run(capsys, "graph", "-f", str(GALLERY), "-o", "json").out)
    edges = {(e["source"], e["key"], e["target"], e["state"]) for e in graph["edges"]}
    assert edges == {
        ("Deployment_gallery_gateway_service", "AUTH_SERVICE_URL", "Service_gallery_auth_service", "resolved"),
        ("Deployment_gallery_gateway_service", "APP_SERVICE_URL", "Service_gallery_app_service", "resolved"),
        ("Deployment_gallery_worker_service", "APP_SERVICE_URL", "Service_gallery_app_service", "resolved"),
        ("Deployment_gallery_app_service", "MONGODB_HOST", "Service_gallery_mongodb", "resolved"),
        ("Deployment_gallery_app_service", "REDIS_URL", "Service_gallery_redis", "resolved"),
    }


PROBLEMS = """
apiVersion: v1
kind: Service
metadata: {name: payments}
spec: {type: ExternalName, externalName: pay.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: multi}
spec: {ports: [{name: a, port: 1}, {name: b, port: 2}]}
---
apiVersion: servicelink.dev/v1alpha1
kind: ServiceLink
metadata: {name: shop}
spec:
  configMapName: shop-config
  links:
    - {key: PAY_URL, service: payments, port: 443, scheme: https}
    - {key: GONE_URL, service: gone}
    - {key: MULTI_URL, service: multi}
    - {key: OTHER_URL, service: closed, namespace: elsewhere}
"""


def graph_of(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str) -> Ran:
    """``servicelink graph -n shop`` of ``text`` in a file; it exits 0."""
    (tmp_path / "input.yaml").write_text(text)
    ran = run(capsys, "graph", "-f", str(tmp_path), "-n", "shop")
    assert ran.code == 0
    return ran


def test_states_and_external_names_without_consumers(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lines = graph_of(capsys, tmp_path, PROBLEMS).out.splitlines()
    # Nobody reads the ConfigMap: it stands in for its consumers.
    assert '    ConfigMap_shop_shop_config[/"ConfigMap shop-config"/]' in lines
    assert '  External__pay_example_com{{"pay.example.com"}}' in lines
    assert '  Service_shop_payments -->|"externalName"| External__pay_example_com' in lines
    assert '  ConfigMap_shop_shop_config -->|"PAY_URL"| Service_shop_payments' in lines
    assert '  ConfigMap_shop_shop_config -.->|"GONE_URL: not found"| Service_shop_gone' in lines
    assert '  ConfigMap_shop_shop_config -.->|"MULTI_URL: port not found"| Service_shop_multi' in lines
    assert '  ConfigMap_shop_shop_config -.->|"OTHER_URL: forbidden"| Service_elsewhere_closed' in lines


@pytest.mark.parametrize("page", ["reference/cli.md", "getting-started/demo.md"])
def test_the_docs_show_the_graph_the_command_draws(page: str) -> None:
    text = (REPO / "docs" / page).read_text()
    block = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block == (GOLDEN / "graph-gallery.mmd").read_text()


HAND_WRITTEN = """
apiVersion: v1
kind: Service
metadata: {name: auth-service}
spec: {ports: [{port: 3001}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: gateway-service-config}
data: {AUTH_SERVICE_URL: "http://auth-service:3001", APP_SERVICE_URL: "http://app-service:3002", LOG_LEVEL: info}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: gateway-service}
spec:
  selector: {matchLabels: {app: gateway-service}}
  template:
    spec:
      containers:
        - name: gateway
          envFrom: [{configMapRef: {name: gateway-service-config}}]
"""


def test_hand_written_addresses_are_drawn_without_any_servicelink(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "seed.yaml").write_text(HAND_WRITTEN)
    ran = run(capsys, "graph", "-f", str(tmp_path), "-n", "gallery", "-o", "json")
    edges = {(e["source"], e["key"], e["target"], e["state"]) for e in json.loads(ran.out)["edges"]}
    assert edges == {
        (
            "Deployment_gallery_gateway_service",
            "AUTH_SERVICE_URL (hand-written)",
            "Service_gallery_auth_service",
            "resolved",
        ),
        (
            "Deployment_gallery_gateway_service",
            "APP_SERVICE_URL (hand-written)",
            "Service_gallery_app_service",
            "not found",
        ),
    }


CRONJOB = """
apiVersion: v1
kind: Service
metadata: {name: app-service}
spec: {ports: [{port: 3002}]}
---
apiVersion: servicelink.dev/v1alpha1
kind: ServiceLink
metadata: {name: worker-service}
spec:
  configMapName: worker-service-config
  links: [{key: APP_SERVICE_URL, service: app-service, port: 3002}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: worker-service}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: worker
              env:
                - name: APP_SERVICE_URL
                  valueFrom: {configMapKeyRef: {name: worker-service-config, key: APP_SERVICE_URL}}
"""


def test_a_cronjob_is_drawn_as_the_consumer_its_job_template_reads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "worker.yaml").write_text(CRONJOB)
    ran = run(capsys, "graph", "-f", str(tmp_path), "-n", "gallery", "-o", "json")
    graph = json.loads(ran.out)
    assert {
        "id": "CronJob_gallery_worker_service",
        "kind": "CronJob",
        "namespace": "gallery",
        "name": "worker-service",
    } in graph["nodes"]
    edges = {(e["source"], e["key"], e["target"], e["state"]) for e in graph["edges"]}
    assert edges == {("CronJob_gallery_worker_service", "APP_SERVICE_URL", "Service_gallery_app_service", "resolved")}


JOBS = """
apiVersion: v1
kind: Service
metadata: {name: app-service}
spec: {ports: [{port: 3002}]}
---
apiVersion: v1
kind: Service
metadata: {name: auth-service}
spec: {ports: [{port: 3001}]}
---
apiVersion: servicelink.dev/v1alpha1
kind: ServiceLink
metadata: {name: worker-service}
spec:
  configMapName: worker-service-config
  links:
    - {key: APP_SERVICE_URL, service: app-service, port: 3002}
    - {key: AUTH_SERVICE_URL, service: auth-service, port: 3001}
---
apiVersion: batch/v1
kind: Job
metadata: {name: backfill}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: backfill
          env:
            - name: APP_SERVICE_URL
              valueFrom: {configMapKeyRef: {name: worker-service-config, key: APP_SERVICE_URL}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: done}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: done
          envFrom: [{configMapRef: {name: worker-service-config}}]
status:
  conditions: [{type: Complete, status: "True"}]
"""


def test_a_running_job_is_drawn_with_the_keys_it_reads_and_a_finished_one_is_not(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "jobs.yaml").write_text(JOBS)
    graph = json.loads(run(capsys, "graph", "-f", str(tmp_path), "-n", "gallery", "-o", "json").out)
    jobs = [n["name"] for n in graph["nodes"] if n["kind"] == "Job"]
    assert jobs == ["backfill"]
    edges = {(e["source"], e["key"], e["target"]) for e in graph["edges"] if e["source"].startswith("Job_")}
    assert edges == {("Job_gallery_backfill", "APP_SERVICE_URL", "Service_gallery_app_service")}


def test_an_argo_rollout_is_drawn_as_the_consumer_its_inline_template_reads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rollout = CRONJOB.split("---\napiVersion: batch/v1")[0] + (
        "---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: worker-service}\nspec:\n"
        "  strategy: {canary: {steps: [{setWeight: 20}]}}\n  template:\n    spec:\n      containers:\n"
        "        - name: worker\n          env:\n            - name: APP_SERVICE_URL\n"
        "              valueFrom: {configMapKeyRef: {name: worker-service-config, key: APP_SERVICE_URL}}\n"
    )
    (tmp_path / "worker.yaml").write_text(rollout)
    graph = json.loads(run(capsys, "graph", "-f", str(tmp_path), "-n", "gallery", "-o", "json").out)
    edges = {(e["source"], e["key"], e["target"], e["state"]) for e in graph["edges"]}
    assert edges == {("Rollout_gallery_worker_service", "APP_SERVICE_URL", "Service_gallery_app_service", "resolved")}


MAPPED = """
apiVersion: servicelink.dev/v1alpha1
kind: WorkloadMapping
metadata: {name: clonesets.apps.kruise.io}
spec: {kind: CloneSet, version: v1alpha1, template: .spec.template}
---
apiVersion: servicelink.dev/v1alpha1
kind: WorkloadMapping
metadata: {name: services.serving.knative.dev}
spec: {kind: Service, version: v1, template: .spec.template}
---
apiVersion: servicelink.dev/v1alpha1
kind: WorkloadMapping
metadata: {name: deployments.apps}
spec: {kind: Deployment, version: v1, template: .spec.template}
---
apiVersion: servicelink.dev/v1alpha1
kind: WorkloadMapping
metadata: {name: workers.example.com}
spec: {kind: Worker, version: v1, template: "spec.template"}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{port: 8080}]}
---
apiVersion: servicelink.dev/v1alpha1
kind: ServiceLink
metadata: {name: shop}
spec:
  configMapName: shop-config
  links: [{key: API_URL, service: api, port: 8080, scheme: http}]
---
apiVersion: apps.kruise.io/v1alpha1
kind: CloneSet
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    spec:
      containers: [{name: web, envFrom: [{configMapRef: {name: shop-config}}]}]
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hello}
spec:
  template:
    spec:
      containers: [{name: hello, env: [{name: OLD_API_URL, value: "http://api:9999"}]}]
---
apiVersion: apps.example.com/v1
kind: CloneSet
metadata: {name: other-group}
spec: {template: {spec: {containers: [{name: x, envFrom: [{configMapRef: {name: shop-config}}]}]}}}
"""


def test_kinds_a_workload_mapping_maps_are_drawn_by_kind_and_group(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ran = graph_of(capsys, tmp_path, MAPPED)
    lines = ran.out.splitlines()
    assert '    CloneSet_apps_kruise_io_shop_web["CloneSet.apps.kruise.io web"]' in lines
    assert '  CloneSet_apps_kruise_io_shop_web -->|"API_URL"| Service_shop_api' in lines
    # Knative's Service is a workload of its own kind, never taken for the Service it calls.
    assert '    Service_serving_knative_dev_shop_hello["Service.serving.knative.dev hello"]' in lines
    assert (
        '  Service_serving_knative_dev_shop_hello -.->|"OLD_API_URL (hand-written): port not found"| Service_shop_api'
        in lines
    )
    assert "Service_shop_hello" not in ran.out
    assert "other_group" not in ran.out
    assert "ConfigMap" not in ran.out  # read by the CloneSet, which is drawn instead
    notes = ran.err.splitlines()
    assert (
        "note: skipped WorkloadMapping deployments.apps: deployments.apps is the built-in kind Deployment:"
        " servicelink follows it already; delete this mapping"
    ) in notes
    assert (
        "note: skipped WorkloadMapping workers.example.com: spec.template: Value error, template 'spec.template'"
        " must be dotted field names such as .spec.template, no brackets or wildcards"
    ) in notes
    # A CloneSet of another group is no CloneSet.apps.kruise.io.
    assert notes[-1] == "note: skipped 1 objects of kinds graph does not read: CloneSet (1)"


def test_without_its_mapping_a_kind_is_skipped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ran = graph_of(capsys, tmp_path, MAPPED.split("---\n", 4)[4])  # all but the mappings
    assert "CloneSet" not in ran.out
    assert '  ConfigMap_shop_shop_config -->|"API_URL"| Service_shop_api' in ran.out.splitlines()
    assert ran.err == "note: skipped 2 objects of kinds graph does not read: CloneSet (2)\n"
