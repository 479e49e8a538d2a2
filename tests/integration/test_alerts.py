"""The alert sink against receivers in the test, on loopback: one that answers, one that is down, one that is slow.

The operator reads the receiver's URL from a Secret in its own namespace ($POD_NAMESPACE, here the test's).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from objects import data, deployment, generation, service, servicelink, set_port

from servicelink.testing.fixtures import Cluster, OperatorProcess, running_operator, wait_for

LINK = {"key": "AUTH_SERVICE_URL", "service": "auth-service"}
SECRET = "alert-hook"
SLOW_SECONDS = 5.0


class Receiver:
    """An HTTP receiver on 127.0.0.1 keeping each JSON body POSTed; ``delay`` makes it answer that late."""

    def __init__(self, delay: float = 0.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.posts = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.posts += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay)
                receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/SECRETTOKEN"

    @contextlib.contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()

    def value_changed(self) -> list[dict[str, Any]]:
        return [body for body in list(self.bodies) if body["reason"] == "ValueChanged"]


def closed_port_url() -> str:
    """A loopback URL where nothing listens: the port was free a moment ago, and is closed now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/T000/SECRETTOKEN"


def url_secret(namespace: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": namespace},
        "data": {"url": base64.b64encode(url.encode()).decode()},
    }


def sink_settings(namespace: str) -> dict[str, str]:
    return {"SERVICELINK_ALERT_SECRET": SECRET, "POD_NAMESPACE": namespace}


def gateway(cluster: Cluster, namespace: str) -> None:
    """auth-service on 3001, the ServiceLink writing its URL, and the Deployment web reading it."""
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            deployment("web", namespace, env_from="gateway-config"),
            servicelink("gateway", namespace, "gateway-config", LINK),
        ]
    )
    wait_for(lambda: data(cluster, namespace, "gateway-config") == {"AUTH_SERVICE_URL": "http://auth-service:3001"})


def test_a_port_change_and_a_lost_service_send_their_alerts_to_the_receiver(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, crd: Path, tmp_path: Path
) -> None:
    receiver = Receiver()
    cluster.apply(url_secret(namespace, receiver.url))
    with (
        receiver.running(),
        running_operator(kubeconfig_env, tmp_path / "operator.log", **sink_settings(namespace)) as process,
    ):
        gateway(cluster, namespace)
        set_port(cluster, namespace, "auth-service", 4001)
        up = "AUTH_SERVICE_URL: http://auth-service:3001 -> http://auth-service:4001"
        (alert,) = wait_for(
            lambda: [body for body in receiver.value_changed() if up in body["changes"]] or None,
            what="the ValueChanged alert of the port change",
        )
        assert alert == {
            "version": 1,
            "source": "servicelink",
            "reason": "ValueChanged",
            "severity": "info",
            "servicelink": {"namespace": namespace, "name": "gateway"},
            "message": f"{up}; rolled Deployment {namespace}/web",
            "changes": [up],
            "rolled": [f"Deployment {namespace}/web"],
            "time": alert["time"],
        }
        # The Service gone: Ready turns False, and the receiver hears why.
        cluster.kubectl("delete", "service", "auth-service", "-n", namespace)
        (lost,) = wait_for(
            lambda: [body for body in list(receiver.bodies) if body["reason"] == "NotReady"] or None,
            what="the NotReady alert of the Service deleted",
        )
        assert lost["severity"] == "warning"
        assert lost["ready"]["reason"] == "ServiceNotFound"
        assert lost["ready"]["message"].startswith(f"Service {namespace}/auth-service not found")
        assert "SECRETTOKEN" not in process.log()
        # What Prometheus scrapes: the ServiceLink by its Ready, and the alerts sent.
        wait_for(
            lambda: 'servicelink_servicelinks{ready="False",reason="ServiceNotFound"} 1.0' in scrape(process),
            what="the gauge of ServiceLinks not Ready",
        )
        sent = re.search(r'^servicelink_alerts_total\{result="sent"\} ([0-9.]+)$', scrape(process), re.M)
        assert sent is not None
        assert float(sent[1]) >= 3  # the first value, the port change, NotReady


def scrape(process: OperatorProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{process.metrics_port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text


def rollout_seconds(cluster: Cluster, namespace: str, ports: tuple[int, ...]) -> list[float]:
    """For each port in turn: seconds from the Service's change to web's generation rising."""
    taken = []
    for port in ports:
        before = generation(cluster, namespace, "web")
        started = time.monotonic()
        set_port(cluster, namespace, "auth-service", port)
        wait_for(
            lambda b=before: generation(cluster, namespace, "web") > b, interval=0.05, what=f"web rolled for {port}"
        )
        taken.append(time.monotonic() - started)
    return taken


def test_a_receiver_down_or_slow_delays_no_rollout(
    cluster: Cluster, namespace: str, kubeconfig_env: Path, crd: Path, tmp_path: Path
) -> None:
    gateway_made = False
    timings: dict[str, list[float]] = {}
    slow = Receiver(delay=SLOW_SECONDS)
    for phase, url in (("no sink", None), ("down", closed_port_url()), ("slow", slow.url)):
        settings = {} if url is None else sink_settings(namespace)
        if url is not None:
            cluster.apply(url_secret(namespace, url))
        with (
            slow.running() if phase == "slow" else contextlib.nullcontext(),
            running_operator(kubeconfig_env, tmp_path / f"operator-{phase}.log", **settings) as process,
        ):
            if not gateway_made:
                gateway(cluster, namespace)
                gateway_made = True
            timings[phase] = rollout_seconds(cluster, namespace, (4001, 3001, 4001, 3001))
            if phase == "down":
                wait_for(lambda p=process: "alert ValueChanged of" in p.log(), what="the failed send logged")
                assert "not sent (try 1 of 5): ConnectionRefusedError" in process.log()
                assert "SECRETTOKEN" not in process.log()
            if phase == "slow":
                assert slow.posts >= 1, "the slow receiver was reached while web rolled"
    print(f"\nseconds from a port change to the rollout: {timings}")
    baseline = max(timings["no sink"])
    for phase in ("down", "slow"):
        # Were sends on the reconcile's path, the slow receiver alone would hold each change 5 s, and the
        # down one would hold it through its retries.
        assert max(timings[phase]) < min(baseline + 1.5, SLOW_SECONDS - 1), timings
