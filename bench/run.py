"""The benchmark itself (does I/O): builds a cluster's worth of objects, runs ``servicelink run``, measures.

Every timing is read from watch events recorded by this process, never from
polling the objects, except cold start (operator start -> all Ready), which
counts Ready conditions as the ServiceLink watch delivers them.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from urllib3.util.retry import Retry

from servicelink.settings import Settings
from servicelink.testing.controlplane import ControlPlane, free_port, start_control_plane

HASH = "servicelink.dev/config-hash"
PREFIX = "bench-"
# Every method the benchmark sends but POST: GET, LIST, PUT and DELETE are idempotent, and its PATCHes set absolute
# values (a port, a ConfigMap key), so sending one again after a dropped connection changes nothing it did not mean.
RESENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH"})


def retries() -> Retry:
    """How the benchmark's API client sends a request again when the API server drops its connection.

    A request in ``RESENT_METHODS`` is sent again after the connection broke,
    up to 5 times with a short backoff. A POST is sent again only when its
    connection failed to open, so nothing was sent: one that may have created
    something fails. Of the error statuses, only a 429 or 503 with Retry-After
    (the API server's own "try later") is retried, in the same methods.
    """
    return Retry(total=5, allowed_methods=RESENT_METHODS, backoff_factor=0.1)


def api_client(kubeconfig: Path) -> kubernetes.client.ApiClient:
    """An API client for ``kubeconfig`` with a connection per worker thread and ``retries()``."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    configuration.retries = retries()
    return kubernetes.client.ApiClient(configuration)


@dataclass(frozen=True)
class Size:
    """How much to create and change."""

    services: int
    servicelinks: int
    links: int
    deployments: int
    namespaces: int
    changes: int
    burst: int
    idle_seconds: float


FULL = Size(
    services=5000, servicelinks=1000, links=5, deployments=1000, namespaces=20, changes=200, burst=100, idle_seconds=60
)
QUICK = Size(
    services=250, servicelinks=50, links=5, deployments=50, namespaces=5, changes=30, burst=25, idle_seconds=10
)


@dataclass
class Recorder:
    """Watch events of one kind in the benchmark's namespaces, with the time each arrived."""

    kind: str
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, kind: str, obj: dict[str, Any]) -> None:
        with self.changed:
            self.events.append((time.monotonic(), kind, obj))
            self.changed.notify_all()

    def count(self, since: float, until: float, types: tuple[str, ...] = ("ADDED", "MODIFIED")) -> int:
        with self.changed:
            return sum(1 for t, kind, _ in self.events if since <= t < until and kind in types)

    def first(self, since: float, match: Callable[[dict[str, Any]], bool], timeout: float) -> float | None:
        """Wait for the first event after ``since`` whose object matches; return its arrival time."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.changed:
            while True:
                for t, _, obj in self.events[seen:]:
                    if t >= since and match(obj):
                        return t
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)


def _stream(list_call: Callable[..., Any], recorder: Recorder, resource_version: str) -> None:
    try:
        _read_events(list_call, recorder, resource_version)
    except Exception:  # the stream ends when the run stops the API server
        return


def _read_events(list_call: Callable[..., Any], recorder: Recorder, resource_version: str) -> None:
    response = list_call(watch=True, resource_version=resource_version, timeout_seconds=3600, _preload_content=False)
    buffer = b""
    for chunk in response.stream(1 << 16):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            event = json.loads(line)
            obj = event.get("object") or {}
            if str(obj.get("metadata", {}).get("namespace", "")).startswith(PREFIX):
                recorder.record(event["type"], obj)


def watch(list_call: Callable[..., Any], kind: str) -> Recorder:
    """Start a watch of ``list_call`` from now in a daemon thread."""
    recorder = Recorder(kind)
    version = json.loads(list_call(limit=1, _preload_content=False).data)["metadata"]["resourceVersion"]
    threading.Thread(target=_stream, args=(list_call, recorder, version), daemon=True).start()
    return recorder


def ready_count(servicelinks: Recorder) -> int:
    """How many ServiceLinks the watch last saw with condition Ready True."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    with servicelinks.changed:
        for _, _, obj in servicelinks.events:
            latest[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
    return sum(
        1
        for obj in latest.values()
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (obj.get("status") or {}).get("conditions", ())
        )
    )


def measured_at() -> dict[str, str]:
    """The code a run measures: servicelink's version and the repository's commit (``-dirty`` if changed)."""
    repo = Path(__file__).resolve().parents[1]
    described = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True, text=True
    )
    return {"version": importlib.metadata.version("servicelink"), "commit": described.stdout.strip() or "unknown"}


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": statistics.median(ordered) * 1000, "p90": at(0.9), "p99": at(0.99), "max": ordered[-1] * 1000}


class Bench:
    """The objects of one run and the API clients that made them."""

    def __init__(self, kubeconfig: Path, size: Size) -> None:
        self.api = api_client(kubeconfig)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.apps = kubernetes.client.AppsV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.kubeconfig = kubeconfig
        self.size = size
        self.namespaces = [f"{PREFIX}{i:02d}" for i in range(size.namespaces)]
        # service name -> (namespace, servicelink, key, port)
        self.services: dict[tuple[str, str], tuple[str, str, int]] = {}
        self.links: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # sl -> [(key, service)]

    def pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(16)

    def create(self) -> None:
        """Namespaces, Services, ServiceLinks (links each) and one consumer Deployment per ServiceLink."""
        for ns in self.namespaces:
            self.core.create_namespace({"metadata": {"name": ns}})
        jobs: list[Callable[[], Any]] = []
        for i in range(self.size.servicelinks):
            ns = self.namespaces[i % len(self.namespaces)]
            sl = f"link-{i:04d}"
            for j in range(self.size.links):
                name = f"svc-{i:04d}-{j}"
                port = 3000 + j
                key = f"SVC_{j}_URL"
                self.services[(ns, name)] = (sl, key, port)
                self.links[(ns, sl)].append((key, name))
                body = {
                    "metadata": {"name": name},
                    "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]},
                }
                jobs.append(lambda ns=ns, body=body: self.core.create_namespaced_service(ns, body))
        with self.pool() as pool:
            list(pool.map(lambda job: job(), jobs))
        jobs = []
        for ns, sl in self.links:
            if len(jobs) < self.size.deployments:
                jobs.append(lambda ns=ns, sl=sl: self.apps.create_namespaced_deployment(ns, _deployment(sl)))
        with self.pool() as pool:
            list(pool.map(lambda job: job(), jobs))

    def apply_servicelinks(self) -> None:
        def create(ns: str, sl: str, links: list[tuple[str, str]]) -> None:
            body = servicelink(sl, links)
            self.custom.create_namespaced_custom_object("servicelink.dev", "v1alpha1", ns, "servicelinks", body)

        with self.pool() as pool:
            list(pool.map(lambda item: create(item[0][0], item[0][1], item[1]), self.links.items()))

    def set_port(self, ns: str, name: str, port: int) -> None:
        patch = [{"op": "replace", "path": "/spec/ports/0/port", "value": port}]
        self.core.patch_namespaced_service(name, ns, patch, _content_type="application/json-patch+json")

    def apiserver_requests(self) -> Counter[tuple[str, str]]:
        """apiserver_request_total summed by (verb, resource), from the API server's /metrics."""
        configuration = self.api.configuration
        token = configuration.api_key.get("BearerToken") or configuration.api_key.get("authorization")
        response = self.api.rest_client.pool_manager.request(
            "GET", f"{configuration.host}/metrics", headers={"Authorization": token} if token else {}
        )
        counts: Counter[tuple[str, str]] = Counter()
        pattern = re.compile(r"^apiserver_request_total\{(.*)\} ([0-9.e+]+)$")
        for line in response.data.decode().splitlines():
            match = pattern.match(line)
            if match:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
                resource = "/".join(filter(None, (labels.get("resource", ""), labels.get("subresource", ""))))
                counts[(labels.get("verb", ""), resource)] += int(float(match.group(2)))
        return counts


def servicelink(name: str, links: list[tuple[str, str]]) -> dict[str, Any]:
    """A ServiceLink ``name`` writing ConfigMap ``<name>-config`` from (key, Service) pairs."""
    return {
        "apiVersion": "servicelink.dev/v1alpha1",
        "kind": "ServiceLink",
        "metadata": {"name": name},
        "spec": {"configMapName": f"{name}-config", "links": [{"key": key, "service": svc} for key, svc in links]},
    }


def _deployment(sl: str) -> dict[str, Any]:
    return {
        "metadata": {"name": sl, "labels": {"app": sl}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": sl}},
            "template": {
                "metadata": {"labels": {"app": sl}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "busybox:1.36",
                            "envFrom": [{"configMapRef": {"name": f"{sl}-config"}}],
                        }
                    ]
                },
            },
        },
    }


def _template_hash(obj: dict[str, Any]) -> str | None:
    annotations = ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
    value: str | None = annotations.get(HASH)
    return value


@dataclass
class Operator:
    """``servicelink run`` as a subprocess, and its resource use from /proc."""

    popen: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    def rss_peak_mb(self) -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_operator(kubeconfig: Path, workdir: Path) -> Operator:
    metrics = free_port()
    env = dict(
        os.environ, KUBECONFIG=str(kubeconfig), SERVICELINK_METRICS_PORT=str(metrics), SERVICELINK_HEALTH_PORT="0"
    )
    log = workdir / "operator.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [str(Path(sys.executable).with_name("servicelink")), "run"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Operator(popen=popen, metrics_port=metrics, log=log)


def run(bench: Bench, workdir: Path) -> dict[str, Any]:
    """Create everything, start the operator, and measure each figure of the issue."""
    size = bench.size
    results: dict[str, Any] = {"size": size.__dict__}
    print(
        f"creating {size.services} Services, {size.deployments} Deployments in {size.namespaces} namespaces ...",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    bench.create()
    bench.apply_servicelinks()
    results["create_seconds"] = round(time.monotonic() - started, 1)

    configmaps = watch(bench.core.list_config_map_for_all_namespaces, "configmaps")
    deployments = watch(bench.apps.list_deployment_for_all_namespaces, "deployments")
    servicelinks = watch(
        lambda **kw: bench.custom.list_cluster_custom_object("servicelink.dev", "v1alpha1", "servicelinks", **kw),
        "servicelinks",
    )
    events = watch(bench.core.list_event_for_all_namespaces, "events")

    print("cold start: operator start -> every ServiceLink Ready ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    operator = start_operator(bench.kubeconfig, workdir)
    try:
        deadline = started + 600
        while ready_count(servicelinks) < len(bench.links):
            if time.monotonic() > deadline or operator.popen.poll() is not None:
                raise SystemExit(f"operator not Ready in time; log: {operator.log}")
            time.sleep(0.5)
        results["cold_start_seconds"] = round(time.monotonic() - started, 2)
        time.sleep(2)  # let the last status writes land

        print(f"propagation: {size.changes} single port changes ...", file=sys.stderr, flush=True)
        to_configmap: list[float] = []
        to_template: list[float] = []
        writes: list[Counter[str]] = []
        before = bench.apiserver_requests()
        services = list(bench.services.items())
        for i in range(size.changes):
            (ns, name), (sl, key, port) = services[(i * 7919) % len(services)]
            new_port = port + 1000 + i
            bench.services[(ns, name)] = (sl, key, new_port)
            url = f"http://{name}:{new_port}"
            old_hash = next(
                (
                    _template_hash(o)
                    for _, _, o in reversed(deployments.events)
                    if o["metadata"]["name"] == sl and o["metadata"]["namespace"] == ns
                ),
                None,
            )
            t0 = time.monotonic()
            bench.set_port(ns, name, new_port)
            t_sent = time.monotonic()
            t_cm = configmaps.first(
                t0,
                lambda o, ns=ns, sl=sl, key=key, url=url: (
                    o["metadata"]["namespace"] == ns
                    and o["metadata"]["name"] == f"{sl}-config"
                    and (o.get("data") or {}).get(key) == url
                ),
                timeout=30,
            )
            t_wl = deployments.first(
                t0,
                lambda o, ns=ns, sl=sl, old=old_hash: (
                    o["metadata"]["namespace"] == ns
                    and o["metadata"]["name"] == sl
                    and _template_hash(o) not in (None, old)
                ),
                timeout=30,
            )
            if t_cm is not None:
                to_configmap.append(t_cm - t_sent)
            if t_wl is not None:
                to_template.append(t_wl - t_sent)
            time.sleep(1.0)  # spaced out: each change settles, status and Events included
            until = time.monotonic()
            writes.append(
                Counter(
                    {r.kind: r.count(t0, until) for r in (configmaps, deployments, servicelinks)}
                    | {"events": events.count(t0, until, ("ADDED",))}
                )
            )
        after = bench.apiserver_requests()
        delta = {
            f"{verb} {resource}": n - before.get((verb, resource), 0)
            for (verb, resource), n in after.items()
            if n - before.get((verb, resource), 0) > 0 and verb not in ("WATCH",)
        }
        delta["PATCH services"] = delta.get("PATCH services", 0) - size.changes  # the benchmark's own
        results["propagation_ms"] = {"configmap": percentiles(to_configmap), "pod_template": percentiles(to_template)}
        results["propagation_missed"] = {
            "configmap": size.changes - len(to_configmap),
            "pod_template": size.changes - len(to_template),
        }
        results["writes_per_change"] = {
            kind: statistics.median(w[kind] for w in writes) if writes else 0
            for kind in ("configmaps", "deployments", "servicelinks", "events")
        }
        results["api_requests_per_change"] = {
            k: round(v / max(1, size.changes), 2) for k, v in sorted(delta.items()) if v
        }

        print(f"burst: {size.burst} Services at once ...", file=sys.stderr, flush=True)
        chosen = services[: size.burst]  # whole ServiceLinks: size.links Services each
        consumers = {(ns, sl) for (ns, _), (sl, _, _) in chosen}
        t0 = time.monotonic()
        with bench.pool() as pool:
            list(pool.map(lambda item: bench.set_port(item[0][0], item[0][1], item[1][2] + 20000), chosen))
        done: dict[tuple[str, str], float] = {}
        hashes: dict[tuple[str, str], set[str | None]] = defaultdict(set)
        deadline = time.monotonic() + 60
        while len(done) < len(consumers) and time.monotonic() < deadline:
            for t, _, obj in list(deployments.events):
                key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                if t >= t0 and key in consumers:
                    hashes[key].add(_template_hash(obj))
                    done.setdefault(key, t)
            time.sleep(0.2)
        time.sleep(3)  # any second rollout would show up here
        rollouts = Counter()
        for t, _, obj in deployments.events:
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            if t >= t0 and key in consumers:
                rollouts[key] += 1
        results["burst"] = {
            "consumers": len(consumers),
            "updated": len(done),
            "seconds_to_all": round(max(done.values(), default=t0) - t0, 3),
            "rollouts_per_consumer_max": max(rollouts.values(), default=0),
            "rollouts_total": sum(rollouts.values()),
        }

        print(f"idle: {size.idle_seconds:.0f} s ...", file=sys.stderr, flush=True)
        time.sleep(2)
        t0 = time.monotonic()
        time.sleep(size.idle_seconds)
        until = time.monotonic()
        results["idle_writes"] = {r.kind: r.count(t0, until) for r in (configmaps, deployments, servicelinks)} | {
            "events": events.count(t0, until, ("ADDED",))
        }
        results["operator"] = {
            "rss_peak_mb": round(operator.rss_peak_mb(), 1),
            "cpu_seconds": round(operator.cpu_seconds(), 1),
        }
    finally:
        operator.popen.terminate()
        operator.popen.wait(30)
    return results


def table(results: dict[str, Any]) -> str:
    """The figures as a plain table."""
    rows = [
        ("operator settings (env)", str(results["operator_settings"] or "defaults")),
        ("cold start (operator start -> all Ready)", f"{results['cold_start_seconds']} s"),
    ]
    for stage, figures in results["propagation_ms"].items():
        rows.append(
            (f"propagation to {stage.replace('_', ' ')}", "  ".join(f"{k} {v:.0f} ms" for k, v in figures.items()))
        )
    rows.append(("propagation missed (of each)", str(results["propagation_missed"])))
    burst = results["burst"]
    rows.append(
        (
            f"burst: {results['size']['burst']} Services at once",
            f"{burst['updated']}/{burst['consumers']} consumers in {burst['seconds_to_all']} s, "
            f"max {burst['rollouts_per_consumer_max']} rollout(s) per consumer",
        )
    )
    rows.append(("writes per single change (median)", str(results["writes_per_change"])))
    rows.append(("API requests per change (operator)", str(results["api_requests_per_change"])))
    rows.append((f"writes in {results['size']['idle_seconds']:.0f} s idle", str(results["idle_writes"])))
    rows.append(
        ("operator peak RSS / CPU", f"{results['operator']['rss_peak_mb']} MB / {results['operator']['cpu_seconds']} s")
    )
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> None:
    """Parse flags, run on a local control plane (or ``--kubeconfig``), print and save the figures."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        epilog="The operator runs with this environment: set SERVICELINK_* variables "
        "(SERVICELINK_COALESCE_SECONDS=0.05, say) to measure other settings; the table names them.",
    )
    parser.add_argument("--quick", action="store_true", help="a small size that runs in about a minute")
    parser.add_argument("--kubeconfig", help="an existing cluster to run on (objects go in bench-* namespaces)")
    parser.add_argument("--output", default="bench-result.json", help="where to write the JSON figures")
    for name, default in FULL.__dict__.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), help=f"default {default}")
    args = parser.parse_args()
    base = QUICK if args.quick else FULL
    size = Size(**{k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.__dict__.items()})
    workdir = Path(tempfile.mkdtemp(prefix="servicelink-bench-"))
    plane: ControlPlane | None = None
    if args.kubeconfig:
        kubeconfig = Path(args.kubeconfig)
    else:
        plane = start_control_plane(controller_manager=False)
        kubeconfig = plane.kubeconfig
        print(f"local control plane ready in {plane.startup_seconds:.1f}s", file=sys.stderr)
    try:
        subprocess.run(
            [
                _kubectl(plane),
                "--kubeconfig",
                str(kubeconfig),
                "apply",
                "-f",
                str(Path(__file__).resolve().parents[1] / "crds" / "servicelink.yaml"),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                _kubectl(plane),
                "--kubeconfig",
                str(kubeconfig),
                "wait",
                "--for=condition=Established",
                "crd/servicelinks.servicelink.dev",
            ],
            check=True,
            capture_output=True,
        )
        results = run(Bench(kubeconfig, size), workdir)
    finally:
        if plane is not None:
            plane.stop()
    results["machine"] = f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB"
    # The operator inherits this environment: its SERVICELINK_* settings are the non-default ones.
    names = {f"SERVICELINK_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    results["operator_settings"] = {k: v for k, v in sorted(os.environ.items()) if k in names}
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"(figures also in {args.output})")


def _kubectl(plane: ControlPlane | None) -> str:
    if plane is not None:
        return plane.assets.path("kubectl")
    from servicelink.testing.assets import ensure_assets

    return ensure_assets().path("kubectl")
