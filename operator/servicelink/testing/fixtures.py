"""pytest fixtures: one real control plane per session, a namespace per test, the operator two ways (does I/O).

Loaded by ``tests/conftest.py`` as a plugin. ``SERVICELINK_TEST_KUBECONFIG``
points the same tests at an existing cluster instead; they then create and
delete only their own namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from servicelink.model import CRD_NAMES
from servicelink.testing.assets import ensure_assets
from servicelink.testing.controlplane import ControlPlane, free_port, run_kubectl, start_control_plane

REPO = Path(__file__).resolve().parents[3]
CRD_FILE = REPO / "crds" / "servicelink.yaml"
# The seed's ConfigMaps, value for value: what the ServiceLinks of examples/gallery and
# examples/gallery-helm write.
SEED_CONFIG: dict[str, dict[str, str]] = {
    "gateway-service-config": {
        "AUTH_SERVICE_URL": "http://auth-service:3001",
        "APP_SERVICE_URL": "http://app-service:3002",
    },
    "app-service-config": {"MONGODB_HOST": "mongodb", "REDIS_URL": "redis://redis:6379"},
    "worker-service-config": {"APP_SERVICE_URL": "http://app-service:3002"},
}


@dataclass
class Cluster:
    """A cluster the tests drive with the real ``kubectl``: the local control plane or a given one."""

    kubeconfig: Path
    kubectl_path: str
    plane: ControlPlane | None

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl`` and return its result; on failure, raise with its stderr."""
        done = run_kubectl(self.kubectl_path, self.kubeconfig, args, input=input)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def get(self, *args: str) -> Any:
        """Return ``kubectl get <args> -o json`` parsed; None when the object does not exist."""
        done = self.kubectl("get", *args, "-o", "json", check=False)
        if done.returncode != 0:
            if "NotFound" in done.stderr:
                return None
            raise AssertionError(f"kubectl get {' '.join(args)} failed:\n{done.stderr}")
        return json.loads(done.stdout)

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]], *extra: str) -> None:
        """``kubectl apply`` a YAML/JSON document or objects."""
        text = (
            manifest
            if isinstance(manifest, str)
            else json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": manifest} if isinstance(manifest, list) else manifest
            )
        )
        self.kubectl("apply", "-f", "-", *extra, input=text)


def wait_for(condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; return it, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or condition}; last: {last!r}")


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The session's cluster: a local control plane, or ``SERVICELINK_TEST_KUBECONFIG``."""
    given = os.environ.get("SERVICELINK_TEST_KUBECONFIG")
    if given:
        yield Cluster(kubeconfig=Path(given), kubectl_path=ensure_assets().path("kubectl"), plane=None)
        return
    plane = start_control_plane()
    print(
        f"\n[servicelink] control plane ready in {plane.startup_seconds:.1f}s; {plane.describe_logs()}", file=sys.stderr
    )
    try:
        yield Cluster(kubeconfig=plane.kubeconfig, kubectl_path=plane.assets.path("kubectl"), plane=plane)
    finally:
        plane.stop()
        if request.session.testsfailed:
            print(f"\n[servicelink] {plane.describe_logs()}", file=sys.stderr)


@pytest.fixture(scope="session")
def kubeconfig_env(cluster: Cluster) -> Iterator[Path]:
    """Point ``KUBECONFIG`` at the session's cluster, for kopf and the operator's client in-process."""
    before = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    yield cluster.kubeconfig
    if before is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = before


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> Path:
    """Install the ServiceLink and WorkloadMapping CRDs (the file's two documents) once; wait until both are served."""
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{name}" for name in CRD_NAMES))
    return CRD_FILE


@contextlib.contextmanager
def fresh_namespace(cluster: Cluster) -> Iterator[str]:
    """Create a namespace with a unique name; delete it (without waiting) on leaving."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    with fresh_namespace(cluster) as name:
        yield name


def operator_env(kubeconfig: Path, **settings: str) -> dict[str, str]:
    """The environment a test operator runs with: the cluster, quick resyncs, no fixed ports."""
    env = dict(os.environ)
    env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "SERVICELINK_RESYNC_SECONDS": "3",
            "SERVICELINK_METRICS_PORT": "0",
            "SERVICELINK_HEALTH_PORT": "0",
        }
    )
    env.update(settings)
    return env


@dataclass
class OperatorProcess:
    """``servicelink run`` as a subprocess, started exactly as users start it."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    health_port: int
    metrics_port: int

    def log(self) -> str:
        """Everything the operator printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = 15) -> None:
        """Send ``sig`` (SIGTERM by default) and wait for the exit."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_operator_process(
    kubeconfig: Path, log_path: Path, *, verbose: bool = False, **settings: str
) -> OperatorProcess:
    """Start ``servicelink run`` (``--verbose``: logging at debug level) and wait until its health endpoint answers."""
    health, metrics = free_port(), free_port()
    env = operator_env(
        kubeconfig, SERVICELINK_HEALTH_PORT=str(health), SERVICELINK_METRICS_PORT=str(metrics), **settings
    )
    command = [str(Path(sys.executable).with_name("servicelink")), "run", *(["--verbose"] if verbose else [])]
    with log_path.open("ab") as out:
        popen = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    process = OperatorProcess(popen=popen, log_path=log_path, health_port=health, metrics_port=metrics)

    def healthy() -> bool:
        if popen.poll() is not None:
            raise AssertionError(f"servicelink run exited with {popen.returncode}:\n{process.log()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=1) as response,
        ):
            return bool(response.status == 200)
        return False

    wait_for(healthy, timeout=60, what="the operator's health endpoint")
    return process


@contextlib.contextmanager
def running_operator(
    kubeconfig: Path, log_path: Path, *, verbose: bool = False, **settings: str
) -> Iterator[OperatorProcess]:
    """``start_operator_process`` for the length of a ``with``; then it stops, and its log's end is printed."""
    process = start_operator_process(kubeconfig, log_path, verbose=verbose, **settings)
    try:
        yield process
    finally:
        process.stop()
        # Captured, so pytest shows it only when the test failed.
        print(f"\n[servicelink] operator log {process.log_path}:\n{process.log()[-20000:]}", file=sys.stderr)


@pytest.fixture
def operator_process(kubeconfig_env: Path, crd: Path, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator as a subprocess for one test; its log is printed if the test fails."""
    with running_operator(kubeconfig_env, tmp_path / "operator.log") as process:
        yield process


@pytest.fixture
def operator(kubeconfig_env: Path, crd: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The operator in-process under kopf's ``KopfRunner``, for one test."""
    from kopf.testing import KopfRunner

    for key, value in operator_env(kubeconfig_env).items():
        if key.startswith("SERVICELINK_"):
            monkeypatch.setenv(key, value)
    with KopfRunner(["run", "--all-namespaces", "--standalone", "-m", "servicelink.handlers"]) as runner:
        yield runner
    assert runner.exception is None, runner.output
