"""``servicelink demo``: the image gallery on a local control plane (or a given cluster), end to end (does I/O).

Starts what it needs, runs the operator as users run it, applies
``examples/gallery``, changes auth-service's port, shows what followed, and
stops everything it started.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from servicelink.model import CRD_NAMES
from servicelink.testing.assets import ensure_assets
from servicelink.testing.controlplane import start_control_plane

# The CRD and examples/gallery, shipped inside the package (symlinks in the source tree), so
# the demo runs from any install, the image included.
RESOURCES = importlib.resources.files("servicelink") / "resources"
GALLERY = RESOURCES / "gallery"
CRD = RESOURCES / "servicelink-crd.yaml"


class Kubectl:
    """The real kubectl, bound to one kubeconfig and context."""

    def __init__(self, binary: str, kubeconfig: str | None, context: str | None) -> None:
        self.base = [binary]
        if kubeconfig:
            self.base += ["--kubeconfig", kubeconfig]
        if context:
            self.base += ["--context", context]

    def run(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """Run kubectl and return its output; exit with its error on failure."""
        done = subprocess.run([*self.base, *args], input=input, capture_output=True, text=True)
        if check and done.returncode != 0:
            sys.exit(f"kubectl {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def json(self, *args: str) -> Any:
        """Run ``kubectl get ... -o json`` and parse it."""
        return json.loads(self.run("get", *args, "-o", "json"))


def _show(title: str, text: str) -> None:
    print(f"\n$ {title}\n{text.rstrip()}", flush=True)


def _wait(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    sys.exit(f"demo: timed out waiting for {what}")


def _gallery(namespace: str) -> str:
    """The gallery's objects with their namespace set to ``namespace``, as one YAML stream."""
    order = yaml.safe_load((GALLERY / "kustomization.yaml").read_text())["resources"]
    documents = []
    for name in order:
        for document in yaml.safe_load_all((GALLERY / name).read_text()):
            if not document or document.get("kind") == "Namespace":
                continue
            document.setdefault("metadata", {})["namespace"] = namespace
            documents.append(document)
    return yaml.safe_dump_all(documents)


def _ready(kubectl: Kubectl, namespace: str) -> bool:
    items = kubectl.json("servicelinks", "-n", namespace)["items"]
    return bool(items) and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in (i.get("status") or {}).get("conditions", ()))
        for i in items
    )


def run_demo(kubectl: Kubectl, kubeconfig: str, namespace: str, *, own_namespace: bool) -> None:
    """Apply the gallery, show the ServiceLinks and ConfigMaps, change a port, show the rollout."""
    kubectl.run("apply", "-f", "-", input=CRD.read_text())
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{name}" for name in CRD_NAMES))
    kubectl.run("create", "namespace", namespace, check=False)
    log = Path(tempfile.mkdtemp(prefix="servicelink-demo-")) / "operator.log"
    env = dict(os.environ, KUBECONFIG=kubeconfig, SERVICELINK_METRICS_PORT="0", SERVICELINK_HEALTH_PORT="0")
    args = [str(Path(sys.executable).with_name("servicelink")), "run", "--namespace", namespace]
    print(f"starting the operator: servicelink run --namespace {namespace}   (log: {log})", flush=True)
    with log.open("ab") as out:
        operator = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        kubectl.run("apply", "-f", "-", input=_gallery(namespace))
        _wait("every ServiceLink Ready", lambda: _ready(kubectl, namespace))
        _show(f"kubectl get servicelinks -n {namespace}", kubectl.run("get", "servicelinks", "-n", namespace))
        for name in ("gateway-service-config", "app-service-config", "worker-service-config"):
            data = kubectl.json("configmap", name, "-n", namespace).get("data", {})
            _show(
                f"kubectl get configmap {name} -n {namespace}  (data)",
                "\n".join(f"  {k}={v}" for k, v in sorted(data.items())),
            )
        before = kubectl.run("get", "replicasets", "-n", namespace, "-l", "app=gateway-service", "-o", "name")
        patch = '[{"op": "replace", "path": "/spec/ports/0/port", "value": 4001}]'
        _show(
            f"kubectl patch service auth-service -n {namespace} --type=json -p '{patch}'",
            kubectl.run("patch", "service", "auth-service", "-n", namespace, "--type=json", "-p", patch),
        )
        started = time.monotonic()

        def changed() -> bool:
            data = kubectl.json("configmap", "gateway-service-config", "-n", namespace).get("data", {})
            return str(data.get("AUTH_SERVICE_URL", "")).endswith(":4001")

        _wait("the new AUTH_SERVICE_URL", changed)
        print(f"\n(ConfigMap updated {time.monotonic() - started:.2f}s after the Service changed)")
        value = kubectl.json("configmap", "gateway-service-config", "-n", namespace)["data"]["AUTH_SERVICE_URL"]
        _show(f"kubectl get configmap gateway-service-config -n {namespace}  (AUTH_SERVICE_URL)", f"  {value}")
        _wait(
            "a new ReplicaSet of gateway-service",
            lambda: (
                kubectl.run("get", "replicasets", "-n", namespace, "-l", "app=gateway-service", "-o", "name") != before
            ),
        )
        _show(
            f"kubectl get replicasets -n {namespace} -l app=gateway-service",
            kubectl.run(
                "get",
                "replicasets",
                "-n",
                namespace,
                "-l",
                "app=gateway-service",
                "-o",
                "custom-columns=NAME:.metadata.name,REVISION:.metadata.annotations.deployment\\.kubernetes"
                "\\.io/revision,CONFIG-HASH:.spec.template.metadata.annotations.servicelink\\.dev/config-hash,"
                "CREATED:.metadata.creationTimestamp",
            ),
        )
        _show(
            f"kubectl get events -n {namespace} --field-selector involvedObject.kind=ServiceLink",
            kubectl.run(
                "get",
                "events",
                "-n",
                namespace,
                "--field-selector",
                "involvedObject.kind=ServiceLink",
                "--sort-by=.lastTimestamp",
                "-o",
                "custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message",
            ),
        )
    finally:
        operator.terminate()
        operator.wait(30)
        if own_namespace:
            kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the demo on a fresh local control plane, or on a cluster named explicitly."""
    parser = argparse.ArgumentParser(prog="servicelink demo", description=__doc__)
    parser.add_argument("--kubeconfig", help="use this existing cluster instead of a local control plane")
    parser.add_argument("--context", help="the kubeconfig context to use (with --kubeconfig or $KUBECONFIG)")
    args = parser.parse_args(argv)
    if args.kubeconfig or args.context:
        kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        kubectl = Kubectl(ensure_assets().path("kubectl"), kubeconfig, args.context)
        if args.context:
            kubeconfig = _flatten(kubectl, args.context)
        namespace = f"servicelink-demo-{uuid.uuid4().hex[:6]}"
        print(f"demo on the existing cluster, in namespace {namespace} (deleted at the end)")
        run_demo(kubectl, kubeconfig, namespace, own_namespace=True)
        return
    print("starting a local control plane (etcd, kube-apiserver, kube-controller-manager) ...", flush=True)
    plane = start_control_plane()
    print(f"control plane ready in {plane.startup_seconds:.1f}s (logs: {plane.log_dir})")
    try:
        run_demo(
            Kubectl(plane.assets.path("kubectl"), str(plane.kubeconfig), None),
            str(plane.kubeconfig),
            "gallery",
            own_namespace=False,
        )
    finally:
        plane.stop()
        print("\nstopped the operator and the control plane")


def _flatten(kubectl: Kubectl, context: str) -> str:
    """Write a kubeconfig holding only ``context``, for the operator subprocess."""
    text = kubectl.run("config", "view", "--minify", "--flatten", "--context", context)
    path = Path(tempfile.mkdtemp(prefix="servicelink-demo-")) / "kubeconfig"
    path.write_text(text)
    return str(path)
