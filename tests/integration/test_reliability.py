"""Reliability: crashes, an API server outage, drift, bad input, a confused deputy and limits (real control plane).

Reduced counts by default; ``SERVICELINK_FULL=1`` runs the full ones.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from convergence import Consumer, Recorder
from objects import (
    condition,
    data,
    deployment,
    events,
    service,
    servicelink,
    servicelinks_only,
    set_port,
    sl,
    template_hash,
    wait_condition,
    wait_until_acted,
)
from widgets import MAPPING, mapping, wait_ready, widget, widget_meta

from servicelink import conditions as c
from servicelink.render import render_hash
from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for

FULL = os.environ.get("SERVICELINK_FULL") == "1"
SEED = int(os.environ.get("SERVICELINK_SEED", "38"))  # fixed, so a failure repeats; printed by each test


def report(line: str) -> None:
    """Print a figure for the run's summary (shown with ``-s`` and on failure)."""
    print(f"[reliability] {line}", file=sys.stderr)


@contextlib.contextmanager
def operator_running(cluster: Cluster, log_path: Path, **settings: str) -> Iterator[OperatorProcess]:
    """``servicelink run`` for one block; its log tail is printed (captured) when it ends."""
    process = start_operator_process(cluster.kubeconfig, log_path, **settings)
    try:
        yield process
    finally:
        process.stop()
        print(f"\n[servicelink] operator log {log_path}:\n{process.log()[-20000:]}", file=sys.stderr)


# --- 1. crash in the middle ------------------------------------------------------------------------

ELECTION_LEASE = "servicelink"


@dataclass
class Backend:
    """A Service as the stream left it: its port, and whether it is now ExternalName (``<name>.example.com``)."""

    port: int
    external: bool = False

    def url(self, name: str) -> str:
        return f"http://{name}.example.com:{self.port}" if self.external else f"http://{name}:{self.port}"


class Stream:
    """A random stream of changes to the Services a ServiceLink links, and the values they must end in.

    Keys ALPHA_URL, BETA_URL and GAMMA_URL each link one of two Services (``alpha`` or ``alpha-b``,
    ...); STEADY_URL links ``steady``, which nothing changes: the Service ``wait_until_acted`` pokes.
    A change is a port change, a rename (the key's link switched to its other Service), a delete
    and recreate under the same name (with a new port or the same one: the latter changes no value),
    or an ExternalName flip (the Service made ExternalName, or back). Every Service exists between
    changes, so the values at the end follow from the Services alone.

    A change may also edit the WorkloadMapping of Widgets (``widgets.MAPPING``), whose Widget reads
    ALPHA_URL and BETA_URL: deleted (the kind no longer followed), applied again (followed, listed
    anew), or its ``rolls`` flipped (followed throughout, its watches started again). A change of
    what the Widget reads while the kind is not followed is one it may skip (``skips_possible``):
    followed again, it is rolled onto the current values if its pod template is as servicelink's
    last rollout left it, and at the next change of what it reads if it was never rolled (as a
    consumer new to the operator is), so ``settle`` ends the stream with such a change.
    """

    KEYS = ("ALPHA", "BETA", "GAMMA")

    def __init__(self, cluster: Cluster, namespace: str, rng: random.Random) -> None:
        self.cluster, self.namespace, self.rng = cluster, namespace, rng
        self.backends = {
            f"{key.lower()}{suffix}": Backend(3000 + 10 * i + j)
            for i, key in enumerate(self.KEYS)
            for j, suffix in enumerate(("", "-b"))
        }
        self.linked = {key: key.lower() for key in self.KEYS}
        self.made: Counter[str] = Counter()
        self.mapped, self.rolls = True, True
        self.skips_possible = 0  # changes made while the Widgets are not followed, and one per unmapping

    def remap(self) -> None:
        """Follow Widgets again, if the stream left them unfollowed; return once the operator lists them."""
        if not self.mapped:
            self.cluster.apply(mapping(rolls=self.rolls))
            wait_ready(self.cluster, c.WATCHING, timeout=60)  # the leader's informers settled: the Widget held
            self.mapped = True
            self.made["mapped again"] += 1

    def settle(self) -> None:
        """End the stream: Widgets followed, then a port change of what ALPHA_URL links, which rolls the Widget."""
        self.remap()
        name = self.linked["ALPHA"]
        self.backends[name].port = self._new_port(name)
        set_port(self.cluster, self.namespace, name, self.backends[name].port)
        self.made["port"] += 1

    def objects(self) -> list[dict[str, Any]]:
        links = [{"key": f"{key}_URL", "service": service} for key, service in self.linked.items()]
        return [
            *(service(name, self.namespace, backend.port) for name, backend in self.backends.items()),
            service("steady", self.namespace, 3100),
            servicelink("crash", self.namespace, "crash-config", *links, {"key": "STEADY_URL", "service": "steady"}),
        ]

    def expected(self) -> dict[str, str]:
        values = {f"{key}_URL": self.backends[name].url(name) for key, name in self.linked.items()}
        return {**values, "STEADY_URL": "http://steady:3100"}

    def _new_port(self, name: str) -> int:
        return self.rng.choice([p for p in range(3000, 3060) if p != self.backends[name].port])

    def change(self) -> str:
        """Make one random change; return its kind."""
        kind = self.rng.choices(("port", "rename", "recreate", "flip", "mapping"), weights=(5, 2, 2, 2, 2))[0]
        name = self.rng.choice(sorted(self.backends))
        backend = self.backends[name]
        namespace = self.namespace
        if not self.mapped:
            self.skips_possible += 1
        if kind == "mapping":
            if not self.mapped:
                self.remap()
                return "mapped again"
            if self.rng.random() < 0.5:
                self.cluster.kubectl("delete", "workloadmapping", MAPPING)
                self.mapped = False
                self.skips_possible += 1  # a change just before may be written only now: not followed then
                kind = "unmapped"
            else:
                self.rolls = not self.rolls
                self.cluster.apply(mapping(rolls=self.rolls))
                kind = "rolls flipped"
        elif kind == "port":
            backend.port = self._new_port(name)
            set_port(self.cluster, namespace, name, backend.port)
        elif kind == "rename":
            index = self.rng.randrange(len(self.KEYS))
            key = self.KEYS[index]
            self.linked[key] = key.lower() if self.linked[key] != key.lower() else f"{key.lower()}-b"
            patch = [{"op": "replace", "path": f"/spec/links/{index}/service", "value": self.linked[key]}]
            self.cluster.kubectl(
                "patch", "servicelink", "crash", "-n", namespace, "--type=json", "-p", json.dumps(patch)
            )
        elif kind == "recreate":
            self.cluster.kubectl("delete", "service", name, "-n", namespace)
            if self.rng.random() < 0.5:
                backend.port = self._new_port(name)
            backend.external = False
            self.cluster.apply(service(name, namespace, backend.port))
        else:
            backend.external = not backend.external
            spec = (
                {"type": "ExternalName", "externalName": f"{name}.example.com"}
                if backend.external
                else {"type": "ClusterIP", "externalName": None}
            )
            self.cluster.kubectl(
                "patch", "service", name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec})
            )
        self.made[kind] += 1
        return kind


def leader(cluster: Cluster, namespace: str, replicas: list[OperatorProcess]) -> int | None:
    """The index of the replica that holds the Lease, if one alive does."""
    lease = cluster.get("lease", ELECTION_LEASE, "-n", namespace)
    holder = ((lease or {}).get("spec") or {}).get("holderIdentity") or ""
    for index, replica in enumerate(replicas):
        if replica.popen.poll() is None and holder.endswith(f"-{replica.popen.pid}"):
            return index
    return None


@pytest.mark.controller_manager
@pytest.mark.timeout(2700 if FULL else 300)  # full: 50 hand-overs of 10-20 s each
def test_sigkill_of_the_leader_during_a_stream_of_changes_leaves_no_consumer_stale_and_rolls_none_twice(
    cluster: Cluster, crd: Path, namespace: str, widgets: None, tmp_path: Path
) -> None:
    """Two replicas with leader election; whichever leads is SIGKILLed at random moments of a stream of mixed
    changes and started again, so leadership hands over. The end: every consumer on what it reads, rolled once
    per change (``Recorder.check``), the Widget of a mapped kind among them."""
    changes, kills = (1000, 50) if FULL else (30, 1)
    report(f"crash: seed {SEED} (SERVICELINK_SEED={SEED} repeats this run)")
    rng = random.Random(SEED)
    stream = Stream(cluster, namespace, rng)
    consumers = [
        Consumer("deployment", "reads-all"),
        Consumer("deployment", "reads-alpha", frozenset({"ALPHA_URL"})),
        Consumer("statefulset", "reads-beta", frozenset({"BETA_URL"})),
        Consumer("daemonset", "reads-gamma", frozenset({"GAMMA_URL", "STEADY_URL"})),
        Consumer("widget", "reads-alpha-beta", frozenset({"ALPHA_URL", "BETA_URL"})),
    ]
    cluster.apply(
        [
            *stream.objects(),
            mapping(),
            widget(
                "reads-alpha-beta", namespace, {"A": ("crash-config", "ALPHA_URL"), "B": ("crash-config", "BETA_URL")}
            ),
            deployment("reads-all", namespace, env_from="crash-config"),
            deployment("reads-alpha", namespace, key_refs={"A": ("crash-config", "ALPHA_URL")}),
            deployment("reads-beta", namespace, key_refs={"B": ("crash-config", "BETA_URL")}, kind="StatefulSet"),
            deployment(
                "reads-gamma",
                namespace,
                key_refs={"G": ("crash-config", "GAMMA_URL"), "S": ("crash-config", "STEADY_URL")},
                kind="DaemonSet",
            ),
        ]
    )
    election = {"SERVICELINK_LEADER_ELECT": "1", "SERVICELINK_LEASE_NAMESPACE": namespace}
    logs = [tmp_path / "replica-0.log", tmp_path / "replica-1.log"]
    replicas = [start_operator_process(cluster.kubeconfig, log, **election) for log in logs]
    recorder: Recorder | None = None
    try:
        wait_condition(cluster, namespace, "crash", "Ready", "True")
        wait_for(lambda: leader(cluster, namespace, replicas) is not None, timeout=60, what="a leader")
        first = leader(cluster, namespace, replicas)
        assert first is not None
        assert "values changed:" in replicas[first].log()
        assert "values changed:" not in replicas[1 - first].log()  # exactly one acts
        wait_ready(cluster, c.WATCHING)
        recorder = Recorder(cluster, namespace, "crash-config", consumers)
        # Kills spread over the stream; one whose moment finds no live leader (the Lease not yet
        # taken over after the last kill) waits for the next change that finds one.
        pause = max(0.1, kills * 20 / changes - 0.3)  # a hand-over takes 10-20 s: leave room for each
        kill_at = sorted(rng.sample(range(1, changes), kills))
        started = time.monotonic()
        restarts: list[float] = []
        while stream.made.total() < changes or len(restarts) < kills:
            stream.change()
            due = len(restarts) < kills and stream.made.total() >= kill_at[len(restarts)]
            if due and (leading := leader(cluster, namespace, replicas)) is not None:
                time.sleep(rng.uniform(0, 0.8))  # anywhere in the coalescing window, the reconcile or its writes
                replicas[leading].stop(signal.SIGKILL)
                assert replicas[leading].popen.returncode == -signal.SIGKILL
                begun = time.monotonic()
                replicas[leading] = start_operator_process(cluster.kubeconfig, logs[leading], **election)
                restarts.append(time.monotonic() - begun)
            else:
                time.sleep(rng.uniform(0, 2 * pause))
        stream.settle()
        stream_seconds = time.monotonic() - started

        verdict = recorder.check(
            servicelink="crash",
            poke="steady",
            expected=stream.expected(),
            # A kill between the ConfigMap's write and the patch lets one roll cover two changes; so does the
            # Widget's kind not followed for a while.
            skips_allowed=kills * len(consumers) + stream.skips_possible,
        )
        wait_condition(cluster, namespace, "crash", "Ready", "True")
        lease = cluster.get("lease", ELECTION_LEASE, "-n", namespace)["spec"]
        handovers = int(lease.get("leaseTransitions") or 0)
        report(
            f"crash: seed {SEED}, {stream.made.total()} changes ({dict(stream.made)}) in {stream_seconds:.0f}s, "
            f"{len(restarts)} SIGKILLs of the leader, {handovers} hand-overs; {verdict.summary()}"
        )
        assert handovers >= kills  # each kill's successor took the Lease over
    finally:
        if recorder is not None:
            recorder.stop()
        for replica, log in zip(replicas, logs, strict=True):
            replica.stop()
            print(f"\n[servicelink] {log.name}:\n{replica.log()[-10000:]}", file=sys.stderr)


# --- 2. API server outage --------------------------------------------------------------------------


def probe(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return str(response.status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except (OSError, TimeoutError) as error:
        return type(error).__name__


def test_the_same_process_converges_after_an_api_server_outage_in_the_middle_of_a_burst(
    cluster: Cluster, crd: Path, namespace: str, tmp_path: Path
) -> None:
    """A burst of port changes; the API server stops in its middle, one change queued in the operator's socket,
    and comes back; the burst goes on. The same process ends with every consumer on what it reads, rolled once per
    change (``Recorder.check``)."""
    if cluster.plane is None:
        pytest.skip("stopping the API server needs the local control plane")
    outage, burst = (60.0, 30) if FULL else (5.0, 6)  # burst: changes before the outage, and as many after
    rng = random.Random(SEED)
    ports = {"before": 3001, "after": 4001}
    cluster.apply(
        [
            service("before", namespace, 3001),
            service("after", namespace, 4001),
            servicelink(
                "outage",
                namespace,
                "outage-config",
                {"key": "BEFORE_URL", "service": "before"},
                {"key": "AFTER_URL", "service": "after"},
            ),
            deployment("reads-all", namespace, env_from="outage-config"),
            deployment("reads-before", namespace, key_refs={"B": ("outage-config", "BEFORE_URL")}),
        ]
    )
    consumers = [Consumer("deployment", "reads-all"), Consumer("deployment", "reads-before", frozenset({"BEFORE_URL"}))]

    def change() -> None:
        name = rng.choice(sorted(ports))
        ports[name] = rng.choice(
            [p for p in range(ports[name] // 1000 * 1000, ports[name] // 1000 * 1000 + 50) if p != ports[name]]
        )
        set_port(cluster, namespace, name, ports[name])

    recorder: Recorder | None = None
    with operator_running(cluster, tmp_path / "operator.log") as process:
        pid = process.popen.pid
        try:
            wait_condition(cluster, namespace, "outage", "Ready", "True")
            recorder = Recorder(cluster, namespace, "outage-config", consumers)
            probes: Counter[str] = Counter()
            probing = threading.Event()

            def watch_health() -> None:
                while not probing.wait(0.5):
                    probes[probe(process.health_port)] += 1

            prober = threading.Thread(target=watch_health, daemon=True)
            for _ in range(burst):  # gaps of up to 1.2 s: some changes coalesce, some are written alone
                change()
                time.sleep(rng.uniform(0, 1.2))
            # Frozen, the operator cannot act on the last change before the API server is gone: the
            # watch event waits in its socket, and the reconcile it queues meets the outage.
            os.kill(pid, signal.SIGSTOP)
            try:
                change()
                wait_for(recorder.caught_up, timeout=30, what="the watches caught up before the outage")
                begun = time.monotonic()
                cluster.plane.stop_process("kube-apiserver")
                stopped = time.monotonic()
            finally:
                os.kill(pid, signal.SIGCONT)
            prober.start()
            try:
                time.sleep(outage)
                assert process.popen.poll() is None, "the operator exited during the outage"
            finally:
                # Frozen again while the API server comes back, so the test's watches, back first, miss no write.
                os.kill(pid, signal.SIGSTOP)
                try:
                    cluster.plane.start_process("kube-apiserver")
                    back = time.monotonic()
                    recorder.restart()
                finally:
                    os.kill(pid, signal.SIGCONT)
                probing.set()
                prober.join(10)
            down = back - stopped
            for _ in range(burst):  # the rest of the burst, from right after the restart
                change()
                time.sleep(rng.uniform(0, 0.3))
            expected = {"BEFORE_URL": f"http://before:{ports['before']}", "AFTER_URL": f"http://after:{ports['after']}"}
            # A freeze between the ConfigMap's write and the patch lets one roll cover two changes.
            verdict = recorder.check(
                servicelink="outage", poke="before", expected=expected, skips_allowed=len(consumers)
            )
        finally:
            if recorder is not None:
                recorder.stop()
        wait_condition(cluster, namespace, "outage", "Ready", "True")
        assert process.popen.poll() is None
        assert process.popen.pid == pid
        after = probe(process.health_port)
        retries = sum(1 for line in process.log().splitlines() if f"{namespace}/outage" in line and "retrying" in line)
        report(
            f"outage: seed {SEED}, {2 * burst + 1} changes, the API server stopped after {burst + 1} of them in "
            f"{stopped - begun:.1f}s, down {down:.1f}s (planned {outage:.0f}s); /healthz during it {dict(probes)}, "
            f"after it {after}; {retries} reconciles retried during the outage; same process: {verdict.summary()}"
        )
        assert probes.get("500", 0) > 0, f"/healthz never reported the outage: {dict(probes)}"
        assert after == "200"


def serve_one_link(cluster: Cluster, namespace: str) -> None:
    """auth-service:3001 and a ServiceLink writing it to gateway-config as A; wait for the value."""
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            servicelink("gateway", namespace, "gateway-config", {"key": "A", "service": "auth-service"}),
        ]
    )
    wait_for(
        lambda: data(cluster, namespace, "gateway-config") == {"A": "http://auth-service:3001"},
        timeout=60,
        what="the first value",
    )


# --- 2a. watches that go silent ----------------------------------------------------------------------


class FreezableProxy:
    """A TCP proxy to the API server whose open connections can be made to go silent, not closed.

    That is kopf's known failure mode: a watch that stays open and delivers nothing. Connections
    opened after ``freeze()`` pass normally.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.generation = 0
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.server.accept()
                upstream = socket.create_connection(self.target)
                self.open += [client, upstream]
                born = self.generation
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, sink, born), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, born: int) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if born == self.generation:  # frozen connections swallow what they read
                    sink.sendall(chunk)

    def freeze(self) -> None:
        """Make every connection open now go silent in both directions, without closing it."""
        self.generation += 1

    def close(self) -> None:
        self.server.close()
        for sock in self.open:
            with contextlib.suppress(OSError):
                sock.close()


def test_silent_watches_are_reopened(cluster: Cluster, crd: Path, namespace: str, tmp_path: Path) -> None:
    if cluster.plane is None:
        pytest.skip("needs the local control plane's address to put a proxy in front of it")
    host, port = cluster.plane.server.removeprefix("https://").rsplit(":", 1)
    proxy = FreezableProxy((host, int(port)))
    kubeconfig = tmp_path / "via-proxy.kubeconfig"
    kubeconfig.write_text(cluster.kubeconfig.read_text().replace(cluster.plane.server, f"https://{host}:{proxy.port}"))
    process = start_operator_process(
        kubeconfig,
        tmp_path / "operator.log",
        SERVICELINK_WATCH_INACTIVITY_SECONDS="5",
        SERVICELINK_RESYNC_SECONDS="600",
    )
    recorder: Recorder | None = None
    try:
        cluster.apply(deployment("reads-gateway", namespace, env_from="gateway-config"))
        serve_one_link(cluster, namespace)
        wait_until_acted(cluster, namespace, "gateway", "auth-service")  # the first write's roll, if any, is done
        recorder = Recorder(cluster, namespace, "gateway-config", [Consumer("deployment", "reads-gateway")])
        proxy.freeze()
        frozen = time.monotonic()
        set_port(cluster, namespace, "auth-service", 4001)
        wait_for(
            lambda: data(cluster, namespace, "gateway-config") == {"A": "http://auth-service:4001"},
            timeout=60,
            interval=0.5,
            what="the change seen through a reopened watch",
        )
        arrived = time.monotonic() - frozen
        verdict = recorder.check(servicelink="gateway", poke="auth-service", expected={"A": "http://auth-service:4001"})
        report(
            f"silent watches: every connection frozen, the change arrived {arrived:.1f}s later through reopened "
            f"watches (inactivity timeout 5 s; resync out of reach at 600 s); {verdict.summary()}"
        )
        assert verdict.rollouts == {"reads-gateway": 1}
        assert process.popen.poll() is None
    finally:
        if recorder is not None:
            recorder.stop()
        process.stop()
        proxy.close()


# --- 3. conflicts and drift ------------------------------------------------------------------------


def test_a_foreign_edit_of_our_key_is_repaired_and_a_foreign_key_is_never_touched(
    cluster: Cluster, crd: Path, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("create", "configmap", "gateway-config", "-n", namespace, "--from-literal=LOG_LEVEL=debug")
    cluster.kubectl("annotate", "configmap", "gateway-config", "-n", namespace, "servicelink.dev/writable-by=gateway")
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            servicelink("gateway", namespace, "gateway-config", {"key": "AUTH_SERVICE_URL", "service": "auth-service"}),
        ]
    )
    right = {"LOG_LEVEL": "debug", "AUTH_SERVICE_URL": "http://auth-service:3001"}
    with operator_running(cluster, tmp_path / "operator.log", SERVICELINK_RESYNC_SECONDS="2"):
        wait_for(lambda: data(cluster, namespace, "gateway-config") == right, timeout=60, what="first write")
        rounds = 3 if FULL else 2
        for attempt in range(rounds):
            cluster.kubectl(
                "patch", "configmap", "gateway-config", "-n", namespace, "--type", "merge",
                "-p", json.dumps({"data": {"AUTH_SERVICE_URL": f"http://wrong-{attempt}"}}),
            )  # fmt: skip
            edited = time.monotonic()
            seen: list[dict[str, str] | None] = []

            def repaired(seen: list[dict[str, str] | None] = seen) -> bool:
                seen.append(data(cluster, namespace, "gateway-config"))
                return seen[-1] == right

            wait_for(repaired, timeout=60, interval=0.2, what="the key restored")
            restored_in = time.monotonic() - edited
            assert all(state is not None and state.get("LOG_LEVEL") == "debug" for state in seen)
            drift = wait_for(
                lambda done=attempt: [e for e in events(cluster, namespace, "DriftRepaired") if e["count"] > done],
                timeout=60,
                what="a DriftRepaired Event",
            )
            assert drift[0]["involvedObject"]["name"] == "gateway"
            assert "AUTH_SERVICE_URL" in drift[0]["message"]
            assert "http://auth-service:3001" in drift[0]["message"]
            report(f"drift: round {attempt + 1} restored {restored_in:.1f}s after the edit: {drift[0]['message']}")
        # The same repair each round: one Event, its count raised each time (as client-go's recorder does).
        assert [e["count"] for e in events(cluster, namespace, "DriftRepaired")] == [rounds]
        configmap = cluster.get("configmap", "gateway-config", "-n", namespace, "--show-managed-fields")
        owners = {
            entry["manager"]: set((entry.get("fieldsV1") or {}).get("f:data") or {})
            for entry in configmap["metadata"]["managedFields"]
        }
        assert "f:LOG_LEVEL" not in owners.get("servicelink", set())
        assert "f:AUTH_SERVICE_URL" in owners["servicelink"]
        assert configmap["data"] == right


# --- 4. bad input at scale -------------------------------------------------------------------------

VALID_LINK = {"key": "AUTH_SERVICE_URL", "service": "auth-service", "port": 3001}


def invalid_spec(rng: random.Random) -> tuple[str, dict[str, Any], str]:
    """A random invalid spec: (what is wrong, the spec, the field the refusal must name)."""
    links = [{**VALID_LINK, "key": f"KEY_{i}"} for i in range(rng.randint(1, 4))]
    i = rng.randrange(len(links))
    spec: dict[str, Any] = {"configMapName": "cfg", "links": links}
    at = f"spec.links[{i}]"
    word = "".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 8)))
    cases: list[tuple[str, str, Any]] = [
        ("key with a dash", "key", f"{word}-{word}".upper()),
        ("key starting with a digit", "key", f"{rng.randint(0, 9)}{word}".upper()),
        ("key with a space or dot", "key", f"{word} {word}" if rng.random() < 0.5 else f"{word}.{word}"),
        ("port too small", "port", rng.randint(-70000, 0)),
        ("port too large", "port", rng.randint(65536, 10**9)),
        ("port name with capitals", "port", word.upper()),
        ("port name too long", "port", (word * 16)[: 16 + rng.randint(0, 10)]),
        ("path without a slash", "path", word),
        ("unknown placeholder", "template", f"{{scheme}}://{{{word}x}}"),
        ("stray brace", "template", rng.choice(["{host", "host}", "{{host}}", "{}", "{port:d}"])),
        ("template too long", "template", "x" * rng.randint(513, 4000)),
        ("service not a DNS-1035 label", "service", rng.choice([word.upper(), f"{rng.randint(0, 9)}{word}", "a_b"])),
        ("service too long", "service", "s" * rng.randint(64, 300)),
        ("namespace not a DNS label", "namespace", rng.choice([word.upper(), "a_b", "-a", "n" * 64])),
        ("scheme with a space", "scheme", f"{word} {word}"),
        ("scheme starting with a digit", "scheme", f"{rng.randint(0, 9)}{word}"),
    ]
    spec_cases: list[tuple[str, dict[str, Any], str]] = [
        ("configMapName invalid", {"configMapName": rng.choice(["Bad_Name", "-x", "a" * 254])}, "spec.configMapName"),
        ("configMapName missing", {"configMapName": None}, "spec.configMapName"),
        ("configMapName Kubernetes writes", {"configMapName": "kube-root-ca.crt"}, "spec.configMapName"),
        ("no links", {"links": []}, "spec.links"),
        ("257 links", {"links": [{**VALID_LINK, "key": f"K{n}"} for n in range(257)]}, "spec.links"),
        ("unknown rollout", {"rollout": word}, "spec.rollout"),
        ("unknown workload kind", {"workloads": {"names": [{"kind": "Pod", "name": word}]}}, "spec.workloads"),
        ("duplicate key", {"links": [VALID_LINK, {**VALID_LINK, "port": 80}]}, "spec.links[1]"),
        ("link without a service", {"links": [{"key": "A"}]}, "spec.links[0].service"),
    ]
    if rng.random() < len(spec_cases) / (len(spec_cases) + len(cases)):
        what, changes, field = rng.choice(spec_cases)
        spec.update(changes)
        return what, {k: v for k, v in spec.items() if v is not None}, field
    what, name, value = rng.choice(cases)
    links[i][name] = value
    return what, spec, f"{at}.{name}"


@dataclass(frozen=True)
class HostileMapping:
    """A generated WorkloadMapping and what must come of it: refused naming ``field``, or stored with ``reason``."""

    what: str
    name: str
    spec: dict[str, Any]
    field: str | None = None  # refused by the API server, its message naming this
    reason: str | None = None  # stored, and its Ready condition False with this reason

    def body(self) -> dict[str, Any]:
        return {
            "apiVersion": "servicelink.dev/v1alpha1",
            "kind": "WorkloadMapping",
            "metadata": {"name": self.name},
            "spec": self.spec,
        }


# Names a mapping may take that the API server serves: built into servicelink, served under another kind, or
# served as the kind named but with no pod template in its objects. Each name is stored once.
BUILT_IN_NAMES = ("deployments.apps", "statefulsets.apps", "daemonsets.apps", "jobs.batch", "cronjobs.batch")
SERVED_AS_ANOTHER_KIND = ("replicasets.apps", "controllerrevisions.apps", "endpointslices.discovery.k8s.io")
SERVED_WITHOUT_TEMPLATE = {
    "leases.coordination.k8s.io": "Lease",
    "clusterroles.rbac.authorization.k8s.io": "ClusterRole",
    "priorityclasses.scheduling.k8s.io": "PriorityClass",
}


def hostile_mapping(rng: random.Random, index: int, taken: set[str]) -> HostileMapping:
    """A random hostile WorkloadMapping: a spec or name the CRD refuses, or one stored that cannot be followed.

    ``taken``: the names stored so far (a name is one object); the one returned is added when it is stored.
    """
    word = "".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 8)))
    name = f"{word}s{index}.{word}.example.com"  # unique, served by nothing
    spec: dict[str, Any] = {"kind": "Gadget", "version": "v1", "template": ".spec.template"}
    spec_cases: list[tuple[str, str, Any]] = [
        ("kind lowercase", "kind", word),
        ("kind starting with a digit", "kind", f"{rng.randint(0, 9)}{word.capitalize()}"),
        ("kind with a dot", "kind", f"{word.capitalize()}.apps"),
        ("kind too long", "kind", "K" + "k" * rng.randint(63, 400)),
        ("kind empty", "kind", ""),
        ("version not an API version", "version", rng.choice(["1", "v1.0", "V1", "latest", "v1gamma1", "v", ""])),
        ("template without a dot first", "template", rng.choice(["spec.template", "template", "$.spec.template"])),
        ("template with brackets or wildcards", "template", rng.choice([".spec[0]", ".spec.*", ".spec['t']"])),
        ("template with an empty field", "template", rng.choice(["..spec", ".spec.", ".", ".spec..template"])),
        ("template with a space", "template", f".spec.{word} {word}"),
        ("template too long", "template", "".join(f".{word}" for _ in range(600 // (len(word) + 1) + 1))),
        ("rolls not a boolean", "rolls", rng.choice(["yes", 1, "true", [True]])),
        ("field unknown", word, True),
    ]
    name_cases: list[tuple[str, str]] = [
        ("name without a group (a core kind)", rng.choice(["pods", "configmaps", "services", "secrets", word])),
        ("name with capitals", f"{word.capitalize()}s.example.com"),
        ("name with an underscore", f"{word}_s.example.com"),
        ("name with a label ending in a dash", f"{word}-.example.com"),
        ("name too long", ".".join(["n" * 63] * 4) + f".{word}"),
    ]
    limit = f"{word}{index}".ljust(63, "p") + "." + ".".join(["g" * 63, "h" * 63, "i" * 61])  # 253 characters
    stored_cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("a kind served by nothing", name, spec, c.KIND_NOT_SERVED),
        ("a 253-character name", limit, spec, c.KIND_NOT_SERVED),
        ("a 512-character template", name, {**spec, "template": ("." + "t" * 127) * 4}, c.KIND_NOT_SERVED),
        ("a core group spelled out", f"{rng.choice(['pods', 'configmaps'])}{index}.core", spec, c.KIND_NOT_SERVED),
    ]
    stored_cases += [
        ("a built-in kind", n, {**spec, "kind": "Deployment"}, c.BUILT_IN_KIND)
        for n in BUILT_IN_NAMES
        if n not in taken
    ]
    stored_cases += [
        ("served under another kind", n, spec, c.KIND_NOT_SERVED) for n in SERVED_AS_ANOTHER_KIND if n not in taken
    ]
    stored_cases += [
        ("served, no pod template", n, {**spec, "kind": k}, c.TEMPLATE_NOT_FOUND)
        for n, k in SERVED_WITHOUT_TEMPLATE.items()
        if n not in taken
    ]
    pick = rng.random()
    if pick < 0.45:
        what, field, value = rng.choice(spec_cases)
        return HostileMapping(what, name, {**spec, field: value}, field=f"spec.{field}")
    if pick < 0.6:
        what, bad = rng.choice(name_cases)
        return HostileMapping(what, bad, spec, field="metadata.name")
    what, stored_name, stored_spec, reason = rng.choice(stored_cases)
    return HostileMapping(what, stored_name, stored_spec, reason=reason)


def mapping_reasons(cluster: Cluster) -> dict[str, tuple[str | None, int | None]]:
    """Every stored WorkloadMapping's Ready reason and the generation it observed, by name."""
    found: dict[str, tuple[str | None, int | None]] = {}
    for item in cluster.get("workloadmappings")["items"]:
        ready = condition(item, "Ready")
        found[item["metadata"]["name"]] = (ready.get("reason"), ready.get("observedGeneration"))
    return found


@pytest.mark.timeout(2400 if FULL else 300)
def test_invalid_servicelinks_and_workloadmappings_are_refused_while_valid_ones_are_served(
    cluster: Cluster, crd: Path, namespace: str, widgets: None, tmp_path: Path
) -> None:
    """Generated hostile ServiceLinks and WorkloadMappings, in batches; after each batch a port change, which the
    valid ServiceLink writes and rolls into a Widget, a kind the valid WorkloadMapping maps. Each ServiceLink is
    refused naming its field; each mapping refused naming its field, or stored and reported in its status."""
    count = 1000 if FULL else 40
    rng = random.Random(SEED)
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            servicelink("good", namespace, "good-config", {"key": "AUTH_SERVICE_URL", "service": "auth-service"}),
            mapping(),
            widget("reader", namespace, {"AUTH_URL": ("good-config", "AUTH_SERVICE_URL")}),
        ]
    )
    cases = [invalid_spec(rng) for _ in range(count)]
    taken: set[str] = set()
    hostile: list[HostileMapping] = []
    for index in range(count):
        generated = hostile_mapping(rng, index, taken)
        if generated.reason is not None:
            taken.add(generated.name)
        hostile.append(generated)

    def apply(index: int) -> tuple[int, subprocess.CompletedProcess[str]]:
        _, spec, _ = cases[index]
        body = {
            "apiVersion": "servicelink.dev/v1alpha1",
            "kind": "ServiceLink",
            "metadata": {"name": f"bad-{index}", "namespace": namespace},
            "spec": spec,
        }
        return index, cluster.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)

    def apply_mapping(index: int) -> tuple[int, subprocess.CompletedProcess[str]]:
        return index, cluster.kubectl("apply", "-f", "-", input=json.dumps(hostile[index].body()), check=False)

    # A resync checks every mapping again at once: at the tests' 3 s, a thousand that cannot be followed would be
    # checked back to back throughout; 30 s keeps the mappings' own rechecks (2 s, doubling to 60 s) in charge.
    with operator_running(cluster, tmp_path / "operator.log", SERVICELINK_RESYNC_SECONDS="30") as process:
        wait_for(lambda: data(cluster, namespace, "good-config"), timeout=60, what="the valid ServiceLink served")
        wait_ready(cluster, c.WATCHING)
        started = time.monotonic()
        port = 3001
        failures: list[str] = []
        kinds: Counter[str] = Counter()
        mapping_kinds: Counter[str] = Counter()
        with ThreadPoolExecutor(4) as pool:
            for batch in range(0, count, 10):
                indexes = range(batch, min(count, batch + 10))
                for index, refused in pool.map(apply, indexes):
                    what, _, field = cases[index]
                    kinds[what] += 1
                    if refused.returncode == 0 or field not in refused.stderr or "spec." not in refused.stderr:
                        failures.append(
                            f"bad-{index} ({what}, expected {field}): rc {refused.returncode} {refused.stderr}"
                        )
                for index, applied in pool.map(apply_mapping, indexes):
                    case = hostile[index]
                    mapping_kinds[case.what] += 1
                    if case.field is not None and (applied.returncode == 0 or case.field not in applied.stderr):
                        failures.append(f"{case.name} ({case.what}, expected {case.field} refused): {applied.stderr}")
                    if case.reason is not None and applied.returncode != 0:
                        failures.append(f"{case.name} ({case.what}, expected stored): {applied.stderr}")
                port += 1
                set_port(cluster, namespace, "auth-service", port)
                url = f"http://auth-service:{port}"
                wait_for(
                    lambda url=url: (data(cluster, namespace, "good-config") or {}).get("AUTH_SERVICE_URL") == url,
                    timeout=60,
                    what=f"the valid ServiceLink following port {port}",
                )
                wait_for(
                    lambda url=url: (
                        widget_meta(cluster, namespace, "reader")[2] == render_hash({"AUTH_SERVICE_URL": url})
                    ),
                    timeout=60,
                    what=f"the mapped Widget rolled to port {port}",
                )
        applied_seconds = time.monotonic() - started
        expected = {case.name: case.reason for case in hostile if case.reason is not None}
        expected[MAPPING] = c.WATCHING

        def reported() -> dict[str, str | None]:
            return {name: reason for name, (reason, generation) in mapping_reasons(cluster).items() if generation == 1}

        with contextlib.suppress(AssertionError):
            wait_for(lambda: reported() == expected, timeout=60 + count * 0.3, what="every stored mapping reported")
        reported_seconds = time.monotonic() - started
        found = mapping_reasons(cluster)
        wrong = {
            name: (found.get(name), reason) for name, reason in expected.items() if found.get(name, (0,))[0] != reason
        }
        stored = [item["metadata"]["name"] for item in cluster.get("servicelinks", "-n", namespace)["items"]]
        reasons = Counter(case.reason for case in hostile if case.reason is not None)
        report(
            f"bad input: seed {SEED}, {count} invalid ServiceLinks ({len(kinds)} kinds) and {count} hostile "
            f"WorkloadMappings ({len(mapping_kinds)} kinds) applied in {applied_seconds:.0f}s; "
            f"{count - reasons.total()} mappings refused, {reasons.total()} stored, each reported by "
            f"{reported_seconds:.0f}s ({dict(reasons)}); {len(failures)} not as expected, {len(wrong)} reported "
            f"wrong; ServiceLinks stored: {stored}; the valid ones followed {port - 3001} port changes"
        )
        assert not failures, "\n".join(failures)
        assert not wrong, wrong
        assert stored == ["good"]
        assert set(found) == set(expected)
        assert process.popen.poll() is None
        assert process.log().count("servicelink started") == 1  # the same process throughout
        wait_condition(cluster, namespace, "good", "Ready", "True")
        assert "Traceback" not in process.log()


# --- 5. confused deputy ----------------------------------------------------------------------------


def limited_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig for ServiceAccount ``account`` with the cluster's server and CA."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = dict(next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"])
    if "certificate-authority" in server:
        ca = Path(server.pop("certificate-authority")).read_bytes()
        server["certificate-authority-data"] = base64.b64encode(ca).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": server}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "limited", "context": {"cluster": "c", "user": account, "namespace": namespace}}],
        "current-context": "limited",
    }
    path.write_text(json.dumps(config))
    return path


def test_a_limited_user_cannot_use_the_operator_to_reach_another_namespace(
    cluster: Cluster, crd: Path, namespace: str, tmp_path: Path
) -> None:
    other = f"{namespace}-b"
    secret_port = 54321
    cluster.kubectl("create", "namespace", other)
    try:
        cluster.apply(
            [
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "limited", "namespace": namespace}},
                *servicelinks_only(
                    namespace,
                    {"kind": "ServiceAccount", "name": "limited", "namespace": namespace},
                    verbs=("create", "get", "list"),
                ),
                service("local", namespace, 3001),
                service("secret-db", other, secret_port),
                deployment("victim", namespace, env_from="victim-config"),
                deployment("victim", other, env_from="victim-config"),
            ]
        )
        user = limited_kubeconfig(cluster, namespace, "limited", tmp_path / "limited.kubeconfig")

        def as_user(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [cluster.kubectl_path, "--kubeconfig", str(user), *args], input=input, capture_output=True, text=True
            )

        for verb in ("get", "list", "create", "patch"):
            can = as_user("auth", "can-i", verb, "configmaps", "-n", other)
            assert can.stdout.strip() == "no", f"{verb} configmaps in {other}: {can.stdout} {can.stderr}"
        assert as_user("get", "configmaps", "-n", other).returncode != 0
        assert (
            as_user("auth", "can-i", "create", "servicelinks.servicelink.dev", "-n", namespace).stdout.strip() == "yes"
        )

        with operator_running(cluster, tmp_path / "operator.log") as process:
            deputy = servicelink(
                "deputy",
                namespace,
                "victim-config",
                {"key": "LOCAL_URL", "service": "local"},
                {"key": "SECRET_URL", "service": "secret-db", "namespace": other},
                workloads={"names": [{"kind": "Deployment", "name": "victim"}]},
            )
            created = as_user("create", "-f", "-", input=json.dumps(deputy))
            assert created.returncode == 0, created.stderr
            wait_for(
                lambda: data(cluster, namespace, "victim-config") == {"LOCAL_URL": "http://local:3001"},
                timeout=60,
                what="the user's own ConfigMap, without the closed Service",
            )
            closed = wait_condition(cluster, namespace, "deputy", "Resolved", "False", "CrossNamespaceForbidden")
            set_port(cluster, namespace, "local", 3002)
            wait_for(lambda: template_hash(cluster, namespace, "victim"), timeout=60, what="the local consumer rolled")

            cluster.kubectl("delete", "service", "secret-db", "-n", other)
            set_port(cluster, namespace, "local", 3003)  # a reconcile that surely comes after the deletion
            wait_for(
                lambda: data(cluster, namespace, "victim-config") == {"LOCAL_URL": "http://local:3003"},
                timeout=60,
                what="a reconcile after the deletion",
            )
            absent = wait_condition(cluster, namespace, "deputy", "Resolved", "False", "CrossNamespaceForbidden")
            body = sl(cluster, namespace, "deputy")
            own_events = json.dumps(events(cluster, namespace))
            log = process.log()

        in_other = {item["metadata"]["name"] for item in cluster.get("configmaps", "-n", other)["items"]}
        assert in_other <= {"kube-root-ca.crt"}, in_other
        assert template_hash(cluster, other, "victim") is None
        assert cluster.get("deployment", "victim", "-n", other)["metadata"]["generation"] == 1
        leaks = {
            "status": str(secret_port) in json.dumps(body["status"]),
            "events": str(secret_port) in own_events,
            "log": str(secret_port) in log,
        }
        assert (closed["reason"], closed["message"]) == (absent["reason"], absent["message"])
        report(
            f"deputy: ConfigMaps in {other}: {sorted(in_other)}; victim there rolled: no; "
            f"port {secret_port} leaked: {leaks}; closed == absent message: {closed['message']!r}"
        )
        assert not any(leaks.values())
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


# --- 6. limits -------------------------------------------------------------------------------------


# The longest name Kubernetes takes: a DNS-1123 subdomain of 253 characters, labels of at most 63.
NAME_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])


def test_limits_256_links_253_character_names_and_a_configmap_too_large(
    cluster: Cluster, crd: Path, namespace: str, tmp_path: Path
) -> None:
    prefix = "x" * 490  # with "{host}:{port}", 503 of the 512 characters a template may have
    links = [{"key": f"K{i:03d}", "service": "auth-service", "template": prefix + "{host}:{port}"} for i in range(256)]
    wide = {f"K{i:03d}": f"{prefix}auth-service:3001" for i in range(256)}
    name = NAME_253
    assert len(name) == 253
    big = tmp_path / "FOREIGN_BLOB"
    big.write_text("y" * 1_000_000)
    cluster.kubectl("create", "configmap", "full-config", "-n", namespace, f"--from-file={big}")
    cluster.kubectl("annotate", "configmap", "full-config", "-n", namespace, "servicelink.dev/writable-by=too-large")
    cluster.apply(
        [
            service("auth-service", namespace, 3001),
            servicelink("wide", namespace, "wide-config", *links),
            servicelink(name, namespace, name, {"key": "AUTH_SERVICE_URL", "service": "auth-service"}),
        ]
    )
    with operator_running(cluster, tmp_path / "operator.log") as process:
        started = time.monotonic()
        wait_for(lambda: data(cluster, namespace, "wide-config") == wide, timeout=60, what="256 keys written")
        wait_condition(cluster, namespace, "wide", "Ready", "True")
        wide_seconds = time.monotonic() - started
        table = cluster.kubectl("get", "servicelink", "wide", "-n", namespace).stdout
        assert "256/256" in table
        wait_for(
            lambda: data(cluster, namespace, name) == {"AUTH_SERVICE_URL": "http://auth-service:3001"},
            timeout=60,
            what="the 253-character ServiceLink's ConfigMap",
        )
        wait_condition(cluster, namespace, name, "Ready", "True")

        cluster.apply(servicelink("too-large", namespace, "full-config", *links))
        synced = wait_condition(cluster, namespace, "too-large", "Synced", "False", "ConfigMapTooLarge")
        full = cluster.get("configmap", "full-config", "-n", namespace)
        assert set(full["data"]) == {"FOREIGN_BLOB"}
        assert not sl(cluster, namespace, "too-large")["status"].get("values")
        wait_for(lambda: events(cluster, namespace, "ConfigMapTooLarge"), timeout=60, what="a ConfigMapTooLarge Event")

        set_port(cluster, namespace, "auth-service", 3002)  # the others are still served
        wait_for(
            lambda: (data(cluster, namespace, "wide-config") or {}).get("K255") == f"{prefix}auth-service:3002",
            timeout=60,
            what="the 256 links following a port change",
        )
        wait_for(
            lambda: (data(cluster, namespace, name) or {}).get("AUTH_SERVICE_URL") == "http://auth-service:3002",
            timeout=60,
            what="the 253-character ServiceLink following a port change",
        )
        assert set(cluster.get("configmap", "full-config", "-n", namespace)["data"]) == {"FOREIGN_BLOB"}
        assert process.popen.poll() is None
        assert "Traceback" not in process.log()
        size = sum(len(k) + len(v) for k, v in wide.items())
        report(
            f"limits: 256 links ({size} bytes) written in {wide_seconds:.1f}s; "
            f"253-character names served; too large: {synced['message']}"
        )
