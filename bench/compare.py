"""servicelink side by side with Reloader, one run, one API server (does I/O): ``python -m bench --compare reloader``.

Each operator (servicelink at its default window, servicelink at a small
window, Reloader) gets its own namespaces of equal size and its own
ServiceAccount. The API server writes an audit log of those accounts' requests
only, so every request is counted per client from the API server's own record.
Changes are interleaved, rotating which side goes first. A servicelink change
is a Service port (Service -> ConfigMap -> pod template); a Reloader change is
the ConfigMap edit a user would make by hand (ConfigMap -> pod template).
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import traceback
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import kubernetes

from bench.run import (
    Operator,
    Recorder,
    _deployment,
    api_client,
    measured_at,
    percentiles,
    ready_count,
    servicelink,
    watch,
)
from servicelink.testing.controlplane import ControlPlane, free_port, start_control_plane

T = TypeVar("T")
ACCOUNTS = "operators-bench"  # the namespace of the operators' ServiceAccounts
RELOADER_PORT = 9090  # fixed in Reloader: /metrics and /live
RELOADER_ARGS = ("--auto-reload-all",)  # and --namespaces; every other flag at its default (env-vars strategy)
SMALL_WINDOW = "0"
_AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts:{ACCOUNTS}"]
  - level: None
"""


@dataclass(frozen=True)
class Size:
    """Objects per side (each operator gets this much), and how much to change."""

    services: int
    links: int
    deployments: int
    namespaces: int
    changes: int
    idle_seconds: float
    restart_settle_seconds: float
    storm_changes: int  # a storm: this many changes, spread evenly over storm_seconds
    storm_seconds: float


DEFAULT = Size(
    services=1000,
    links=5,
    deployments=200,
    namespaces=5,
    changes=40,
    idle_seconds=60,
    restart_settle_seconds=20,
    storm_changes=1000,
    storm_seconds=10,
)
QUICK = replace(
    DEFAULT, services=250, deployments=50, changes=20, idle_seconds=10, restart_settle_seconds=10, storm_changes=250
)


@dataclass
class Side:
    """One operator, its namespaces and objects: groups of ``links`` Services, one ConfigMap and consumer each."""

    name: str
    kind: str  # "servicelink" or "reloader"
    namespaces: list[str]
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None  # how to run servicelink; None: ``servicelink run`` (bench/profile.py wraps it)
    kubeconfig: Path | None = None
    operator: Operator | None = None
    # (ns, group) -> [(key, service, port)]; the ConfigMap is f"{group}-config", the consumer Deployment is group
    groups: dict[tuple[str, str], list[tuple[str, str, int]]] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{ACCOUNTS}:{self.name.replace('.', '-')}"


def _template(obj: dict[str, Any]) -> str:
    return json.dumps(((obj.get("spec") or {}).get("template") or {}), sort_keys=True)


class Compare:
    """One run: the control plane, the sides, the watches."""

    def __init__(self, plane: ControlPlane, size: Size, reloader: Path, audit_log: Path, workdir: Path) -> None:
        self.api = api_client(plane.kubeconfig)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.apps = kubernetes.client.AppsV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.rbac = kubernetes.client.RbacAuthorizationV1Api(self.api)
        self.plane = plane
        self.size = size
        self.reloader = reloader
        self.audit_log = audit_log
        self.workdir = workdir
        groups = size.services // size.links

        def namespaces(tag: str) -> list[str]:
            return [f"bench-{tag}-{i:02d}" for i in range(size.namespaces)]

        self.sides = [
            Side("servicelink", "servicelink", namespaces("sl")),
            Side(
                f"servicelink-{SMALL_WINDOW}s",
                "servicelink",
                namespaces("sls"),
                {"SERVICELINK_COALESCE_SECONDS": SMALL_WINDOW},
            ),
            Side("reloader", "reloader", namespaces("rl")),
        ]
        for side in self.sides:
            for i in range(groups):
                ns = side.namespaces[i % len(side.namespaces)]
                side.groups[(ns, f"link-{i:04d}")] = [
                    (f"SVC_{j}_URL", f"svc-{i:04d}-{j}", 3000 + j) for j in range(size.links)
                ]
        self.watches: dict[str, Recorder] = {}

    # ---- setup ----

    def install_crd(self) -> None:
        kubectl = [self.plane.assets.path("kubectl"), "--kubeconfig", str(self.plane.kubeconfig)]
        crd = Path(__file__).resolve().parents[1] / "crds" / "servicelink.yaml"
        subprocess.run([*kubectl, "apply", "-f", str(crd)], check=True)
        established = ["wait", "--for=condition=Established", "crd/servicelinks.servicelink.dev"]
        subprocess.run([*kubectl, *established], check=True, capture_output=True)

    def watch_all(self) -> None:
        """Record every event of the ConfigMaps, Deployments, Events and ServiceLinks the operators write."""
        for kind, call in (
            ("configmaps", self.core.list_config_map_for_all_namespaces),
            ("deployments", self.apps.list_deployment_for_all_namespaces),
            ("events", self.core.list_event_for_all_namespaces),
        ):
            self.watches[kind] = watch(call, kind)
        self.watches["servicelinks"] = watch(
            lambda **kw: self.custom.list_cluster_custom_object("servicelink.dev", "v1alpha1", "servicelinks", **kw),
            "servicelinks",
        )

    def pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(16)

    def create(self) -> None:
        """Namespaces, Services, consumers; ConfigMaps for Reloader's side, ServiceLinks come later."""
        self.core.create_namespace({"metadata": {"name": ACCOUNTS}})
        jobs: list[Callable[[], Any]] = []
        for side in self.sides:
            for ns in side.namespaces:
                self.core.create_namespace({"metadata": {"name": ns}})
            self._identity(side)
            for n, ((ns, group), links) in enumerate(side.groups.items()):
                for _, name, port in links:
                    body = {
                        "metadata": {"name": name},
                        "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]},
                    }
                    jobs.append(lambda ns=ns, body=body: self.core.create_namespaced_service(ns, body))
                if side.kind == "reloader":
                    data = {key: f"http://{name}:{port}" for key, name, port in links}
                    body = {"metadata": {"name": f"{group}-config"}, "data": data}
                    jobs.append(lambda ns=ns, body=body: self.core.create_namespaced_config_map(ns, body))
                if n < self.size.deployments:
                    jobs.append(
                        lambda ns=ns, group=group: self.apps.create_namespaced_deployment(ns, _deployment(group))
                    )
        with self.pool() as pool:
            list(pool.map(lambda job: job(), jobs))

    def _identity(self, side: Side) -> None:
        """A ServiceAccount bound to cluster-admin (the same for every side) and a kubeconfig with its token."""
        name = side.user.rsplit(":", 1)[1]
        self.core.create_namespaced_service_account(ACCOUNTS, {"metadata": {"name": name}})
        self.rbac.create_cluster_role_binding(
            {
                "metadata": {"name": f"bench-{name}"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ACCOUNTS}],
            }
        )
        token = self.core.create_namespaced_service_account_token(
            name, ACCOUNTS, {"spec": {"expirationSeconds": 86400}}
        ).status.token
        config = json.loads(self.plane.kubeconfig.read_text())
        config["users"] = [{"name": "admin", "user": {"token": token}}]
        side.kubeconfig = self.workdir / f"{name}.kubeconfig"
        side.kubeconfig.write_text(json.dumps(config))

    def apply_servicelinks(self, side: Side) -> None:
        def create(ns: str, group: str, links: list[tuple[str, str, int]]) -> None:
            body = servicelink(group, [(key, svc) for key, svc, _ in links])
            self.custom.create_namespaced_custom_object("servicelink.dev", "v1alpha1", ns, "servicelinks", body)

        with self.pool() as pool:
            list(pool.map(lambda item: create(item[0][0], item[0][1], item[1]), side.groups.items()))

    # ---- operators ----

    def start(self, side: Side) -> Operator:
        assert side.kubeconfig is not None
        log = self.workdir / f"{side.name}.log"
        env = dict(os.environ, KUBECONFIG=str(side.kubeconfig))
        if side.kind == "servicelink":
            env |= {
                "SERVICELINK_METRICS_PORT": str(free_port()),
                "SERVICELINK_HEALTH_PORT": "0",
                "SERVICELINK_NAMESPACES": ",".join(side.namespaces),
                **side.env,
            }
            command = side.command or [str(Path(sys.executable).with_name("servicelink")), "run"]
        else:
            command = [str(self.reloader), *RELOADER_ARGS, f"--namespaces={','.join(side.namespaces)}"]
        with log.open("ab") as out:
            popen = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        side.operator = Operator(popen=popen, metrics_port=0, log=log)
        return side.operator

    def stop(self, side: Side) -> None:
        if side.operator is not None and side.operator.popen.poll() is None:
            side.operator.popen.terminate()
            side.operator.popen.wait(30)

    def wait_started(self, side: Side, timeout: float = 600) -> float:
        """Start ``side`` from nothing; return seconds until it is ready.

        servicelink: every ServiceLink Ready (it wrote every ConfigMap). Reloader
        has nothing to write at start: until its /metrics answers.
        """
        started = time.monotonic()
        operator = self.start(side)
        deadline = started + timeout
        while not self._ready(side):
            if time.monotonic() > deadline or operator.popen.poll() is not None:
                raise TimeoutError(f"{side.name} not ready in time; log: {operator.log}")
            time.sleep(0.2)
        return round(time.monotonic() - started, 2)

    def _ready(self, side: Side) -> bool:
        if side.kind == "servicelink":
            recorder = self.watches["servicelinks"]
            with recorder.changed:
                mine = [e for e in recorder.events if e[2]["metadata"]["namespace"] in side.namespaces]
            sub = Recorder("servicelinks", events=mine)
            return ready_count(sub) >= len(side.groups)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{RELOADER_PORT}/metrics", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    # ---- changes ----

    def change(self, side: Side, ns: str, group: str, index: int, port: int) -> tuple[str, str]:
        """Make one change of link ``index`` of ``group``; return (key, the URL the ConfigMap should then hold)."""
        links = side.groups[(ns, group)]
        key, name, _ = links[index]
        links[index] = (key, name, port)
        url = f"http://{name}:{port}"
        if side.kind == "servicelink":
            patch = [{"op": "replace", "path": "/spec/ports/0/port", "value": port}]
            self.core.patch_namespaced_service(name, ns, patch, _content_type="application/json-patch+json")
        else:
            self.core.patch_namespaced_config_map(f"{group}-config", ns, {"data": {key: url}})
        return key, url

    def template_now(self, ns: str, name: str) -> str | None:
        with self.watches["deployments"].changed:
            for _, _, obj in reversed(self.watches["deployments"].events):
                if obj["metadata"]["namespace"] == ns and obj["metadata"]["name"] == name:
                    return _template(obj)
        return None

    def rollouts(self, since: float, until: float, consumers: set[tuple[str, str]]) -> Counter[tuple[str, str]]:
        """Pod-template changes of ``consumers`` whose watch events arrived in [since, until)."""
        return Counter({c: len(times) for c, times in self.template_changes(since, until, consumers).items()})

    def template_changes(
        self, since: float, until: float, consumers: set[tuple[str, str]]
    ) -> dict[tuple[str, str], list[float]]:
        """Arrival times of the pod-template changes of each of ``consumers`` in [since, until); none: absent."""
        last: dict[tuple[str, str], str] = {}
        times: dict[tuple[str, str], list[float]] = defaultdict(list)
        with self.watches["deployments"].changed:
            events = list(self.watches["deployments"].events)
        for t, _, obj in events:
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            if key not in consumers:
                continue
            template = _template(obj)
            if t >= since and t < until and key in last and last[key] != template:
                times[key].append(t)
            last[key] = template
        return times

    def consumers(self, side: Side) -> list[tuple[str, str]]:
        return list(side.groups)[: self.size.deployments]

    def single_change(self, side: Side, i: int) -> tuple[float | None, float | None]:
        """One change on a consumer of ``side``; seconds from the request's return to ConfigMap and pod template."""
        consumers = self.consumers(side)
        ns, group = consumers[(i * 7919) % len(consumers)]
        index = i % self.size.links
        old = self.template_now(ns, group)
        port = 10000 + i * 10 + index
        t0 = time.monotonic()
        key, url = self.change(side, ns, group, index, port)
        t_sent = time.monotonic()
        t_cm = self.watches["configmaps"].first(
            t0,
            lambda o: (
                o["metadata"]["namespace"] == ns
                and o["metadata"]["name"] == f"{group}-config"
                and (o.get("data") or {}).get(key) == url
            ),
            timeout=30,
        )
        t_wl = self.watches["deployments"].first(
            t0,
            lambda o: o["metadata"]["namespace"] == ns and o["metadata"]["name"] == group and _template(o) != old,
            timeout=30,
        )
        return (None if t_cm is None else t_cm - t_sent), (None if t_wl is None else t_wl - t_sent)

    def burst(self, side: Side, changes: int, base_port: int) -> dict[str, Any]:
        """``changes`` changes at once, ``links`` per consumer (one ConfigMap's keys); rollouts per consumer."""
        per = self.size.links
        chosen = self.consumers(side)[: max(1, changes // per)]
        jobs = [(ns, group, j) for ns, group in chosen for j in range(min(per, changes))]
        t0 = time.monotonic()
        with self.pool() as pool:
            list(pool.map(lambda job: self.change(side, job[0], job[1], job[2], base_port + job[2]), jobs))
        sent = time.monotonic() - t0
        time.sleep(1 + float(side.env.get("SERVICELINK_COALESCE_SECONDS", "0.3")))
        self.wait_quiet()  # a second rollout shows up before this
        counts = self.rollouts(t0, time.monotonic(), set(chosen))
        return {
            "changes": len(jobs),
            "consumers": len(chosen),
            "send_seconds": round(sent, 3),
            "rolled": len(counts),
            "rollouts_per_consumer_max": max(counts.values(), default=0),
            "rollouts_total": sum(counts.values()),
        }

    def storm(self, side: Side, base_port: int) -> dict[str, Any]:
        """``storm_changes`` changes spread evenly over ``storm_seconds``, across the consumers' Services.

        The Services are changed in a shuffled order (the same in every run and
        on every side), each once before any twice, so a consumer's changes come
        at scattered times, as they would from many people at once. Returns the
        seconds from the return of the last change until every consumer's pod
        template is on the final values (see ``settled_at``), and the rollouts
        per consumer.
        """
        consumers = self.consumers(side)
        changes, seconds = self.size.storm_changes, self.size.storm_seconds
        services = [(ns, group, j) for ns, group in consumers for j in range(self.size.links)]
        random.Random(0).shuffle(services)

        def send(i: int) -> tuple[tuple[str, str], float]:
            time.sleep(max(0.0, t0 + i * seconds / changes - time.monotonic()))
            ns, group, j = services[i % len(services)]
            sent = time.monotonic()
            self.change(side, ns, group, j, base_port + i)
            return (ns, group), sent

        t0 = time.monotonic()
        with self.pool() as pool:
            last_sent = dict(pool.map(send, range(changes)))  # in order: each consumer's last change wins
        last = time.monotonic()
        time.sleep(1 + float(side.env.get("SERVICELINK_COALESCE_SECONDS", "0.3")))
        self.wait_quiet()
        until = time.monotonic()
        changed = self.template_changes(t0, until, set(consumers))
        settled = [settled_at(changed.get(c, []), last_sent.get(c)) for c in consumers]
        reached = [t for t in settled if t is not None]
        per_consumer = [len(changed.get(c, [])) for c in consumers]
        return {
            "changes": changes,
            "consumers": len(consumers),
            "send_seconds": round(last - t0, 2),
            "reached": len(reached),
            "last_change_to_final_seconds": round(max(reached) - last, 2) if reached else None,
            "rollouts_per_consumer_max": max(per_consumer),
            "rollouts_per_consumer_median": statistics.median(per_consumer),
        }

    # ---- the API server's own record ----

    def wait_quiet(self, quiet: float = 3.0, timeout: float = 180.0) -> None:
        """Wait until no operator has made a request for ``quiet`` seconds (the audit log stops growing)."""
        deadline = time.monotonic() + timeout
        size, since = self.audit_offset(), time.monotonic()
        while time.monotonic() - since < quiet and time.monotonic() < deadline:
            time.sleep(0.2)
            if self.audit_offset() != size:
                size, since = self.audit_offset(), time.monotonic()

    def audit_offset(self) -> int:
        return self.audit_log.stat().st_size if self.audit_log.exists() else 0

    def audit_counts(self, since: int) -> dict[str, Counter[str]]:
        """Requests per user as "VERB resource[/subresource]" from the audit log past byte ``since`` (no WATCH)."""
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        with self.audit_log.open("rb") as log:
            log.seek(since)
            for line in log:
                event = json.loads(line)
                verb = event.get("verb", "")
                if verb == "watch":
                    continue
                ref = event.get("objectRef") or {}
                resource = "/".join(filter(None, (ref.get("resource", ""), ref.get("subresource", ""))))
                counts[event.get("user", {}).get("username", "")][f"{verb.upper()} {resource}"] += 1
        return counts

    def bytes_read(self) -> float:
        """Bytes of every GET and LIST response so far, from the API server's ``apiserver_response_sizes_sum``."""
        configuration = self.api.configuration
        token = configuration.api_key.get("BearerToken") or configuration.api_key.get("authorization")
        response = self.api.rest_client.pool_manager.request(
            "GET", f"{configuration.host}/metrics", headers={"Authorization": token} if token else {}
        )
        pattern = re.compile(r'^apiserver_response_sizes_sum\{.*verb="(?:GET|LIST)".*\} ([0-9.e+]+)$')
        return sum(float(m.group(1)) for line in response.data.decode().splitlines() if (m := pattern.match(line)))

    def apiserver_cpu(self) -> float:
        popen = self.plane.processes["kube-apiserver"].popen
        assert popen is not None
        fields = Path(f"/proc/{popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(compare: Compare, save: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    """Create everything, start the three operators one after another, then measure each figure side by side.

    ``save`` gets the figures after each phase. A phase that fails ends the
    run, and the figures it returns then carry ``error`` (see ``run_phases``).
    """
    out: dict[str, Any] = {"size": compare.size.__dict__, "sides": {s.name: {} for s in compare.sides}}
    phases: list[tuple[str, Callable[[Compare, dict[str, Any]], None]]] = [
        ("create", create_all),
        ("cold start", measure_cold_starts),
        ("single changes", measure_single_changes),
        ("API server CPU per change", measure_apiserver_cpu),
        ("bursts", measure_bursts),
        ("idle", measure_idle),
        ("storm", measure_storms),
        ("restart", measure_restarts),
    ]
    try:
        return run_phases(out, [(name, partial(phase, compare, out)) for name, phase in phases], save)
    finally:
        for side in compare.sides:
            compare.stop(side)


def run_phases(
    out: dict[str, Any], phases: Iterable[tuple[str, Callable[[], object]]], save: Callable[[dict[str, Any]], object]
) -> dict[str, Any]:
    """Run ``phases`` in order, each adding its figures to ``out``; ``save(out)`` after each; return ``out``.

    The first phase that raises ends the run: ``out["error"]`` then names it
    (``{"phase": ..., "message": ...}``) and ``out`` keeps what the phases
    before it measured, and whatever the failed one had added.
    """
    for name, phase in phases:
        print(f"{name} ...", file=sys.stderr, flush=True)
        try:
            phase()
        except Exception as error:  # any failure ends the run; the figures so far are saved, the traceback shown
            traceback.print_exc()
            out["error"] = {"phase": name, "message": f"{type(error).__name__}: {error}"}
            save(out)
            return out
        save(out)
    return out


def create_all(compare: Compare, out: dict[str, Any]) -> None:
    """The CRD, the watches, then every side's objects; ServiceLinks come with each side's cold start."""
    size = compare.size
    compare.install_crd()
    compare.watch_all()
    print(f"{size.services} Services, {size.deployments} Deployments per side", file=sys.stderr, flush=True)
    t = time.monotonic()
    compare.create()
    out["create_seconds"] = round(time.monotonic() - t, 1)


def measure_cold_starts(compare: Compare, out: dict[str, Any]) -> None:
    """Each side from nothing, one after another: its ServiceLinks, then its operator until ready."""
    for side in compare.sides:
        if side.kind == "servicelink":
            compare.apply_servicelinks(side)
        print(f"cold start: {side.name} ...", file=sys.stderr, flush=True)
        out["sides"][side.name]["cold_start_seconds"] = compare.wait_started(side)
    time.sleep(3)


def measure_single_changes(compare: Compare, out: dict[str, Any]) -> None:
    """``changes`` single changes per side, interleaved, rotating which side goes first; latency and requests."""
    size, sides = compare.size, compare.sides
    latency: dict[str, tuple[list[float], list[float]]] = {s.name: ([], []) for s in sides}
    offset = compare.audit_offset()
    cpu = compare.apiserver_cpu()
    started = time.monotonic()
    for i in range(size.changes):
        order = sides[i % len(sides) :] + sides[: i % len(sides)]
        for side in order:
            to_cm, to_wl = compare.single_change(side, i)
            if to_cm is not None:
                latency[side.name][0].append(to_cm)
            if to_wl is not None:
                latency[side.name][1].append(to_wl)
            time.sleep(0.3)
    time.sleep(2)  # status writes and Events of the last change
    requests = compare.audit_counts(offset)
    out["apiserver_cpu_ms_per_change_interleaved"] = round(
        (compare.apiserver_cpu() - cpu) * 1000 / (size.changes * len(sides)), 1
    )
    out["phase_seconds"] = round(time.monotonic() - started, 1)
    for side in sides:
        to_cm, to_wl = latency[side.name]
        mine = requests.get(side.user, Counter())
        out["sides"][side.name] |= {
            "latency_ms": {"configmap": percentiles(to_cm), "pod_template": percentiles(to_wl)},
            "missed": {"configmap": size.changes - len(to_cm), "pod_template": size.changes - len(to_wl)},
            "requests_per_change": {k: round(v / size.changes, 2) for k, v in sorted(mine.items())},
            "requests_per_change_total": round(sum(mine.values()) / size.changes, 2),
        }


def measure_apiserver_cpu(compare: Compare, out: dict[str, Any]) -> None:
    """API server CPU and KB read per change, one side at a time."""
    baseline = compare.apiserver_cpu()
    time.sleep(5)
    idle_rate = (compare.apiserver_cpu() - baseline) / 5
    n = max(5, compare.size.changes // 2)
    for side in compare.sides:
        cpu, read, t = compare.apiserver_cpu(), compare.bytes_read(), time.monotonic()
        for i in range(n):
            compare.single_change(side, 1000 + i)
            time.sleep(0.2)
        time.sleep(1)
        used = compare.apiserver_cpu() - cpu - idle_rate * (time.monotonic() - t)
        out["sides"][side.name]["apiserver_cpu_ms_per_change"] = round(max(0.0, used) * 1000 / n, 1)
        # Only this side's operator reads in this phase (the benchmark itself only watches and patches).
        out["sides"][side.name]["kb_read_per_change"] = round((compare.bytes_read() - read) / 1024 / n, 1)


def measure_bursts(compare: Compare, out: dict[str, Any]) -> None:
    """Bursts of 5 and of 100 changes."""
    for side in compare.sides:
        out["sides"][side.name]["burst_5"] = compare.burst(side, 5, 20000)
        out["sides"][side.name]["burst_100"] = compare.burst(side, 100, 21000)


def measure_idle(compare: Compare, out: dict[str, Any]) -> None:
    """Writes while nothing changes for ``idle_seconds``; then each operator's peak RSS and CPU so far."""
    compare.wait_quiet()
    offset, t = compare.audit_offset(), time.monotonic()
    time.sleep(compare.size.idle_seconds)
    requests = compare.audit_counts(offset)
    until = time.monotonic()
    for side in compare.sides:
        writes = {
            kind: sum(
                1
                for ts, typ, obj in compare.watches[kind].events
                if t <= ts < until and typ in ("ADDED", "MODIFIED") and obj["metadata"]["namespace"] in side.namespaces
            )
            for kind in ("configmaps", "deployments", "servicelinks", "events")
        }
        mine = requests.get(side.user, Counter())
        idle_requests = {k: v for k, v in sorted(mine.items()) if not k.startswith(("GET ", "LIST "))}
        assert side.operator is not None
        out["sides"][side.name] |= {
            "idle_writes": writes,
            "idle_write_requests": idle_requests,
            "rss_peak_mb": round(side.operator.rss_peak_mb(), 1),
            "cpu_seconds": round(side.operator.cpu_seconds(), 1),
        }


def measure_storms(compare: Compare, out: dict[str, Any]) -> None:
    """A storm of changes on each side in turn: see ``Compare.storm``."""
    for side in compare.sides:
        out["sides"][side.name]["storm"] = compare.storm(side, 40000)


def settled_at(template_changes: list[float], last_sent: float | None) -> float | None:
    """When a consumer's pod template reached the final values, or None if it has not.

    It has when its last template change (the one after which the template
    changed no more) came after the benchmark sent that consumer's last
    change: a rollout made before the operator could see the final values
    does not count. Times are the benchmark's own, so no order between two
    watches is assumed.
    """
    if not template_changes or last_sent is None or template_changes[-1] < last_sent:
        return None
    return template_changes[-1]


def measure_restarts(compare: Compare, out: dict[str, Any]) -> None:
    """Each side restarted: see ``restart``."""
    for side in compare.sides:
        print(f"restart: {side.name}, nothing changed, then changes made as it starts ...", file=sys.stderr, flush=True)
        out["sides"][side.name]["restart"] = restart(compare, side)


def restart(compare: Compare, side: Side) -> dict[str, Any]:
    """Rollouts a restart causes with nothing changed; changes made 0.1 s after a start, and whether they arrive."""
    consumers = set(compare.consumers(side))
    compare.stop(side)
    t0 = time.monotonic()
    compare.start(side)
    time.sleep(compare.size.restart_settle_seconds)
    spurious = compare.rollouts(t0, time.monotonic(), consumers)
    compare.stop(side)
    # One change per namespace, on its first consumer, made as the operator starts.
    chosen = [next(c for c in compare.consumers(side) if c[0] == ns) for ns in side.namespaces]
    old = {c: compare.template_now(*c) for c in chosen}
    t0 = time.monotonic()
    compare.start(side)
    time.sleep(0.1)
    for n, (ns, group) in enumerate(chosen):
        compare.change(side, ns, group, 0, 30000 + n)
    reached: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + 30 + compare.size.restart_settle_seconds
    while len(reached) < len(chosen) and time.monotonic() < deadline:
        for c in chosen:
            if c not in reached and compare.template_now(*c) != old[c]:
                reached[c] = time.monotonic() - t0
        time.sleep(0.1)
    return {
        "settle_seconds": compare.size.restart_settle_seconds,
        "rollouts_with_nothing_changed": sum(spurious.values()),
        "changes_at_start": len(chosen),
        "changes_at_start_reached": len(reached),
        "start_to_last_reached_seconds": round(max(reached.values()), 2) if reached else None,
    }


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b:
        return "-"
    return f"{a / b:.2f}x" if a / b < 10 else f"{a / b:.0f}x"


def table(results: dict[str, Any]) -> str:
    """The figures side by side, one column per operator, with servicelink / Reloader ratios.

    A figure the run did not reach (it failed in an earlier phase) shows as "-".
    """
    names = list(results["sides"])
    sides = [results["sides"][n] for n in names]
    rl = results["sides"]["reloader"]

    def lat(stage: str) -> Callable[[dict[str, Any]], str]:
        def figure(s: dict[str, Any]) -> str:
            f = s["latency_ms"][stage]
            return "/".join(f"{f[k]:.0f}" for k in ("p50", "p90", "p99", "max")) if f else "-"

        return figure

    def burst(key: str) -> Callable[[dict[str, Any]], str]:
        return lambda s: f"{s[key]['rollouts_per_consumer_max']} ({s[key]['rolled']}/{s[key]['consumers']} rolled)"

    def storm(s: dict[str, Any]) -> str:
        st = s["storm"]
        return f"{st['last_change_to_final_seconds']} s ({st['reached']}/{st['consumers']} reached)"

    def restart(s: dict[str, Any]) -> str:
        r = s["restart"]
        return f"{r['changes_at_start_reached']}/{r['changes_at_start']} in {r['start_to_last_reached_seconds']} s"

    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("to pod template p50/p90/p99/max ms", lat("pod_template")),
        ("to ConfigMap p50/p90/p99/max ms", lambda s: lat("configmap")(s) if s is not rl else "(the edit)"),
        ("missed (ConfigMap, template)", lambda s: f"{s['missed']['configmap']}, {s['missed']['pod_template']}"),
        ("burst of 5: rollouts per consumer", burst("burst_5")),
        ("burst of 100: rollouts per consumer", burst("burst_100")),
        ("storm: last change to final values", storm),
        (
            "storm: rollouts per consumer max/median",
            lambda s: f"{s['storm']['rollouts_per_consumer_max']}/{s['storm']['rollouts_per_consumer_median']}",
        ),
        ("API requests per change", lambda s: str(s["requests_per_change_total"])),
        ("API server CPU ms per change", lambda s: str(s["apiserver_cpu_ms_per_change"])),
        ("KB read per change (GET, LIST)", lambda s: str(s["kb_read_per_change"])),
        ("peak RSS MB", lambda s: str(s["rss_peak_mb"])),
        ("CPU seconds (whole run)", lambda s: str(s["cpu_seconds"])),
        ("cold start s (from nothing)", lambda s: str(s["cold_start_seconds"])),
        (
            f"write requests in {results['size']['idle_seconds']:.0f} s idle",
            lambda s: str(sum(s["idle_write_requests"].values())),
        ),
        ("rollouts from a restart, nothing changed", lambda s: str(s["restart"]["rollouts_with_nothing_changed"])),
        ("changes made at start that arrive", restart),
    ]
    # The figure each ratio compares, keyed by the start of its row's label.
    ratios: dict[str, Callable[[dict[str, Any]], float | None]] = {
        "to pod template p50": lambda s: s["latency_ms"]["pod_template"].get("p50"),
        "API requests per change": lambda s: s["requests_per_change_total"],
        "API server CPU ms per change": lambda s: s["apiserver_cpu_ms_per_change"],
        "peak RSS MB": lambda s: s["rss_peak_mb"],
        "KB read per change (GET, LIST)": lambda s: s["kb_read_per_change"],
    }
    cells = [["", *names, *(f"{n} / reloader" for n in names[:-1])]]
    for label, figure in rows:
        prefix = label.split(" p50/")[0] + (" p50" if "p50/" in label else "")
        values = [_measured(figure, s) or "-" for s in sides]
        if prefix in ratios:
            of = ratios[prefix]
            values += [_measured(lambda s, of=of: _ratio(of(s), of(rl)), s) or "-" for s in sides[:-1]]
        cells.append([label, *values])
    widths = [max(len(row[i]) if i < len(row) else 0 for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip() for row in cells]
    lines.append("")
    for name, s in zip(names, sides, strict=True):
        lines.append(f"{name} requests per change: {s.get('requests_per_change', '-')}")
    if "error" in results:
        error = results["error"]
        lines.append(f"the run failed in its {error['phase']} phase ({error['message']}); '-': not measured")
    return "\n".join(lines)


def _measured(figure: Callable[[dict[str, Any]], T], side: dict[str, Any]) -> T | None:
    """``figure`` of ``side``, or None when the run failed before the phase that measures it."""
    try:
        return figure(side)
    except KeyError:
        return None


def measure(size: Size, reloader: Path, output: Path) -> dict[str, Any]:
    """One side-by-side run on a fresh local control plane (without kube-controller-manager).

    The figures go to ``output`` as JSON after each phase, so a run that fails
    keeps what it measured; they then carry ``error``, naming the phase.
    """
    if _port_taken(RELOADER_PORT):
        raise SystemExit(f"port {RELOADER_PORT} is taken; Reloader needs it (the port is fixed in Reloader)")
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="servicelink-compare-"))
    policy = workdir / "audit-policy.yaml"
    policy.write_text(_AUDIT_POLICY)
    audit_log = workdir / "audit.log"
    about = {
        "measured_at": measured_at(),
        "workdir": str(workdir),
        "machine": f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB",
        "settings": {
            "servicelink": "defaults (coalesce 0.3 s, 16 workers, resync 300 s), --namespace for its own namespaces",
            f"servicelink-{SMALL_WINDOW}s": f"the same with SERVICELINK_COALESCE_SECONDS={SMALL_WINDOW}",
            "reloader": " ".join((*RELOADER_ARGS, "--namespaces=<its own>"))
            + " (reload strategy env-vars, the default)",
            "identities": "one ServiceAccount each, bound to cluster-admin",
        },
        "reloader_binary": str(reloader),
    }
    plane = start_control_plane(
        controller_manager=False,
        extra_apiserver_args=(f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}"),
    )
    try:
        compare = Compare(plane, size, reloader, audit_log, workdir)
        results = run(compare, save=lambda out: output.write_text(json.dumps(out | about, indent=2)))
    finally:
        plane.stop()
    return results | about


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


RELOADER_SHA256 = "eacd9557674346045126e90d6e2bc6923a08af5f6e72f9eebdabbd2616b14584"


def find_reloader(repo: Path) -> Path | None:
    """The Reloader binary: the cache, else unpacked there from ``../shared/anchors/`` beside the repository.

    Returns None when neither exists. Raises SystemExit when the unpacked
    binary's sha256 is not the one the anchors' README names.
    """
    import gzip
    import hashlib

    cached = Path(os.environ.get("SERVICELINK_CACHE", Path.home() / ".cache" / "servicelink")) / "anchors" / "reloader"
    if not cached.exists():
        packed = repo.parent / "shared" / "anchors" / "reloader-v1.4.21-linux-amd64.gz"
        if not packed.exists():
            return None
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}")
        partial.write_bytes(gzip.decompress(packed.read_bytes()))
        partial.chmod(0o755)
        partial.replace(cached)
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    if digest != RELOADER_SHA256:
        raise SystemExit(f"{cached}: sha256 {digest}, expected {RELOADER_SHA256}")
    return cached


def sweep_size(services: int, base: Size) -> Size:
    """A sweep point: ``services`` per side, one consumer per 5 Services, the namespaces of ``base`` (so they grow)."""
    return Size(**(base.__dict__ | {"services": services, "deployments": services // base.links}))


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """p50 to the pod template, peak RSS, API requests and KB read per change against Services per side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(results, key=lambda r: r["size"]["services"])
    panels = (
        ("p50 to pod template (ms)", lambda s: s["latency_ms"]["pod_template"]["p50"]),
        ("peak RSS (MB)", lambda s: s["rss_peak_mb"]),
        ("API requests per change", lambda s: s["requests_per_change_total"]),
        ("KB read per change (GET, LIST)", lambda s: s["kb_read_per_change"]),
    )
    figure, axes = plt.subplots(1, len(panels), figsize=(18, 4.2))
    for axis, (title, value) in zip(axes, panels, strict=True):
        for name in results[0]["sides"]:
            # A size whose run failed before the phase of this figure has no point here.
            points = [(r["size"]["services"], _measured(value, r["sides"][name])) for r in results]
            axis.plot(*zip(*[(x, y) for x, y in points if y is not None], strict=True), marker="o", label=name)
        axis.set_title(title)
        axis.set_xlabel("Services per side (consumers = Services / 5, 5 namespaces)")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle("servicelink and Reloader side by side, one run per size, one API server (2 cores)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: list[str]) -> None:
    """``python -m bench --compare reloader``: one run (or ``--sweep``), a table, JSON and a plot."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench --compare reloader", description=__doc__)
    parser.add_argument("--compare", choices=["reloader"], required=True)
    parser.add_argument(
        "--reloader", type=Path, help="the Reloader binary (default: found as the anchors' README says)"
    )
    parser.add_argument("--quick", action="store_true", help="a small size, about three minutes")
    parser.add_argument("--output", type=Path, default=Path("compare-result.json"), help="JSON of a single run")
    parser.add_argument(
        "--sweep", help="Services per side, comma-separated: one run each, JSON and a plot in --results"
    )
    parser.add_argument("--results", type=Path, default=Path("bench/results"), help="where --sweep writes")
    parser.add_argument(
        "--plot-only", action="store_true", help="print the tables and redraw the plot from the JSON in --results"
    )
    for name, default in DEFAULT.__dict__.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), help=f"default {default}")
    args = parser.parse_args(argv)
    if args.plot_only:
        runs = [json.loads(p.read_text()) for p in sorted(args.results.glob("compare-*.json"))]
        for results in runs:
            print(f"\n== {results['size']['services']} Services per side ==\n{table(results)}")
        plot(runs, args.results / "compare-sweep.png")
        return
    reloader = args.reloader or find_reloader(Path(__file__).resolve().parents[1])
    if reloader is None:
        raise SystemExit("no Reloader binary: pass --reloader PATH (see ../shared/anchors/README.md)")
    base = QUICK if args.quick else DEFAULT
    size = Size(**{k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.__dict__.items()})
    if not args.sweep:
        results = measure(size, reloader, args.output)
        print(table(results))
        print(f"(figures also in {args.output})")
        if "error" in results:
            raise SystemExit(f"the run failed in its {results['error']['phase']} phase")
        return
    args.results.mkdir(parents=True, exist_ok=True)
    runs = []
    for services in (int(n) for n in args.sweep.split(",")):
        results = measure(sweep_size(services, size), reloader, args.results / f"compare-{services:05d}.json")
        print(f"\n== {services} Services, {services // size.links} consumers per side ==\n{table(results)}", flush=True)
        runs.append(results)
    plot(runs, args.results / "compare-sweep.png")
    print(f"(JSON and compare-sweep.png in {args.results})")
    failed = [f"{r['size']['services']} ({r['error']['phase']})" for r in runs if "error" in r]
    if failed:
        raise SystemExit(f"runs that failed, their figures kept up to the phase named: {', '.join(failed)}")
