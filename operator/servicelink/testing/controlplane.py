"""Start and stop a local etcd, kube-apiserver and kube-controller-manager (does I/O).

Used by the pytest fixtures, the demo and the benchmark. Every process is
started in its own process group with a parent-death signal, and stopped on
``stop()``, at interpreter exit and on SIGTERM, so no etcd or apiserver outlives
the session that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from servicelink.testing.assets import Assets, ensure_assets

_PR_SET_PDEATHSIG = 1
_CONTROLLERS = (
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "endpointslice-controller",
    # Gives the built-in edit, admin and view roles the rules of manifests/aggregated-roles.yaml.
    "clusterrole-aggregation-controller",
)
_live: list[ControlPlane] = []


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_kubectl(
    kubectl: str, kubeconfig: Path, args: Sequence[str], *, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``kubectl`` with ``kubeconfig`` and return its result, whatever its exit code."""
    command = [kubectl, "--kubeconfig", str(kubeconfig), *args]
    return subprocess.run(command, input=input, capture_output=True, text=True)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: a SIGKILLed test runner takes its
    # control plane with it instead of leaving etcd and the apiserver behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgrp()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


_SERVING_NAMES = (
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


def _write_certificates(pki: Path, extra_names: Sequence[str] = ()) -> None:
    """Write a CA, a serving certificate for 127.0.0.1 (plus ``extra_names``) and a service-account key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=servicelink-test-ca",
        "-days",
        "2",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    _openssl("genrsa", "-out", "apiserver.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", "apiserver.key", "-subj", "/CN=kube-apiserver", "-out", "apiserver.csr", cwd=pki)
    (pki / "san.ext").write_text(
        f"subjectAltName={','.join((*_SERVING_NAMES, *extra_names))}\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "apiserver.crt",
        cwd=pki,
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


@dataclass
class _Process:
    name: str
    args: list[str]
    log_path: Path
    detached: bool = False  # outlives its parent; its PID is written to <log folder>/<name>.pid
    popen: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    def start(self) -> None:
        self.log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.args,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=os.setpgrp if self.detached else _die_with_parent,
        )
        if self.detached:
            self.log_path.with_suffix(".pid").write_text(f"{self.popen.pid}\n")

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if self.log is not None:
            self.log.close()
            self.log = None


@dataclass
class ControlPlane:
    """A running local control plane; ``kubeconfig`` holds an admin identity."""

    assets: Assets
    workdir: Path
    server: str
    token: str
    kubeconfig: Path
    log_dir: Path
    startup_seconds: float = 0.0
    processes: dict[str, _Process] = field(default_factory=dict)
    _owns_workdir: bool = True

    @property
    def ca_file(self) -> Path:
        """The CA that signed the apiserver's serving certificate."""
        return self.workdir / "pki" / "ca.crt"

    def stop_process(self, name: str) -> None:
        """Stop one component (for outage tests); ``start_process`` brings it back."""
        self.processes[name].stop()

    def start_process(self, name: str, *, timeout: float = 60.0) -> None:
        """Start one stopped component again and wait until the apiserver is ready."""
        self.processes[name].start()
        if name == "kube-apiserver":
            self._wait_ready(timeout)

    def stop(self) -> None:
        """Stop every component, newest first, and remove the data folder (logs are kept)."""
        for process in reversed(list(self.processes.values())):
            process.stop()
        if self in _live:
            _live.remove(self)
        if self._owns_workdir:
            shutil.rmtree(self.workdir / "etcd-data", ignore_errors=True)

    def describe_logs(self) -> str:
        """Say where each component's log is, for failure reports."""
        return "control-plane logs: " + ", ".join(str(p.log_path) for p in self.processes.values())

    def _readyz(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes.values():
                if process.popen is not None and process.popen.poll() is not None:
                    raise RuntimeError(
                        f"{process.name} exited with {process.popen.returncode}; " + self.describe_logs()
                    )
            if self._readyz():
                return
            time.sleep(0.2)
        raise TimeoutError(f"kube-apiserver not ready after {timeout:.0f}s; " + self.describe_logs())


def _kubeconfig(server: str, ca_file: Path, token: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "servicelink-local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
            ],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "servicelink-local", "context": {"cluster": "servicelink-local", "user": "admin"}}],
            "current-context": "servicelink-local",
        },
        indent=2,
    )


def start_control_plane(
    *,
    workdir: Path | None = None,
    controller_manager: bool = True,
    extra_apiserver_args: Sequence[str] = (),
    extra_controllers: Sequence[str] = (),
    advertise_address: str | None = None,
    command_prefix: Sequence[str] = (),
    detached: bool = False,
    timeout: float = 60.0,
) -> ControlPlane:
    """Start etcd, kube-apiserver and (by default) kube-controller-manager; return when ready.

    With ``advertise_address`` the API server listens on every interface,
    advertises that address, so pods reach it through the ``kubernetes``
    Service, and the kubeconfig calls it there. ``command_prefix`` runs each
    component through a wrapper (``nsenter`` into a network namespace, say,
    from which this process reaches ``advertise_address``). ``detached``
    processes outlive this one (a cluster started by a command that then
    exits); each writes its PID next to its log.

    Raises ``TimeoutError`` or ``RuntimeError`` naming the log folder when a
    component does not come up; whatever was started is stopped first.
    """
    assets = ensure_assets()
    started = time.monotonic()
    owns = workdir is None
    root = Path(tempfile.mkdtemp(prefix="servicelink-cp-")) if workdir is None else workdir
    log_dir = root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    pki = root / "pki"
    # The first address of the service range is the `kubernetes` Service's ClusterIP.
    _write_certificates(pki, (f"IP:{advertise_address}", "IP:10.96.0.1") if advertise_address else ())
    token = secrets.token_hex(16)
    (pki / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n')
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    server = f"https://{advertise_address or '127.0.0.1'}:{api_port}"
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(server, pki / "ca.crt", token))
    plane = ControlPlane(
        assets=assets,
        workdir=root,
        server=server,
        token=token,
        kubeconfig=kubeconfig,
        log_dir=log_dir,
        _owns_workdir=owns,
    )
    plane.processes["etcd"] = _Process(
        "etcd",
        [
            assets.path("etcd"),
            f"--data-dir={root / 'etcd-data'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",
            "--quota-backend-bytes=8589934592",
            "--log-level=warn",
        ],
        log_dir / "etcd.log",
    )
    plane.processes["kube-apiserver"] = _Process(
        "kube-apiserver",
        [
            assets.path("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--bind-address={'0.0.0.0' if advertise_address else '127.0.0.1'}",
            f"--advertise-address={advertise_address or '127.0.0.1'}",
            f"--secure-port={api_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            *extra_apiserver_args,
        ],
        log_dir / "kube-apiserver.log",
    )
    if controller_manager:
        plane.processes["kube-controller-manager"] = _Process(
            "kube-controller-manager",
            [
                assets.path("kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                "--controllers=" + ",".join((*_CONTROLLERS, *extra_controllers)),
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                "--concurrent-deployment-syncs=10",
            ],
            log_dir / "kube-controller-manager.log",
        )
    for process in plane.processes.values():
        process.args[:0] = command_prefix
        process.detached = detached
    if not detached:
        _live.append(plane)
    try:
        plane.processes["etcd"].start()
        plane.processes["kube-apiserver"].start()
        plane._wait_ready(timeout)
        if controller_manager:
            plane.processes["kube-controller-manager"].start()
    except BaseException:
        plane.stop()
        raise
    plane.startup_seconds = time.monotonic() - started
    return plane


def _stop_all() -> None:
    for plane in list(_live):
        plane.stop()


def _on_sigterm(signum: int, frame: object) -> None:
    _stop_all()
    raise SystemExit(128 + signum)


atexit.register(_stop_all)
with contextlib.suppress(ValueError):  # not the main thread: atexit and PDEATHSIG still cover it
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)
