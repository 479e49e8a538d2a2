"""The reliability scenarios' pass criterion: every consumer ends on the values it reads, rolled once per change.

A ``Recorder`` watches a ServiceLink's ConfigMap and its consumers from before the scenario's faults;
``Recorder.check`` then waits for a positive sign that the operator acted after the last change and
judges the end state and the whole revision history of every consumer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from objects import data, wait_until_acted

from servicelink.render import render_hash
from servicelink.rollout import consumed
from servicelink.testing.fixtures import Cluster, wait_for

HASH = "servicelink.dev/config-hash"


class Watch:
    """Every distinct state of one object, in order, from ``kubectl get -w``: ``pick`` takes a state from its body.

    A watch delivers every write, so no state in between is missed. ``stop`` and ``start`` again (around an
    API server outage) append to the same states; ``connections`` counts the watches that delivered their
    first state. Keep the writers still from the stop until the new watch's first state, or a write is missed.
    """

    def __init__(
        self, cluster: Cluster, kind: str, namespace: str, name: str, pick: Callable[[dict[str, Any]], Any]
    ) -> None:
        self.states: list[Any] = []
        self.connections = 0
        self._pick = pick
        self._command = [
            *(cluster.kubectl_path, "--kubeconfig", str(cluster.kubeconfig), "get", kind, name),
            *("-n", namespace, "-w", "-o", "json"),
        ]
        self._popen: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        self._popen = subprocess.Popen(self._command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, args=(self._popen,), daemon=True)
        self._thread.start()

    def _read(self, popen: subprocess.Popen[str]) -> None:
        assert popen.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        first = True
        for line in popen.stdout:
            buffer += line
            with contextlib.suppress(json.JSONDecodeError):
                body, end = decoder.raw_decode(buffer.lstrip())
                buffer = buffer.lstrip()[end:]
                state = self._pick(body)
                if not self.states or self.states[-1] != state:
                    self.states.append(state)
                if first:
                    self.connections += 1
                    first = False

    def stop(self) -> None:
        if self._popen is not None:
            self._popen.terminate()
            self._popen.wait(10)
        if self._thread is not None:
            self._thread.join(10)


def configmap_data(body: dict[str, Any]) -> dict[str, str]:
    return dict(body.get("data") or {})


def revision(body: dict[str, Any]) -> tuple[int, str | None]:
    """A workload's (generation, config hash): one state per revision of its spec."""
    annotations = body["spec"]["template"]["metadata"].get("annotations") or {}
    return body["metadata"]["generation"], annotations.get(HASH)


def judge_revisions(
    values: list[dict[str, str]], revisions: list[tuple[int, str | None]], reads: frozenset[str] | None
) -> tuple[list[str], int]:
    """Return (the extra revisions of a workload, the changes of what it reads that it never rolled to).

    ``values`` are the ConfigMap's states in order; ``revisions`` the workload's (generation,
    hash), in order, from the same moment on. Each revision must be one real change: its
    generation the previous one plus one (none missed), its hash a new one, and that hash the
    one of a later state of what the workload reads. A workload may skip a state (one a crash
    cut short before the workload was patched), never roll twice for one.
    """
    read = [render_hash(consumed(state, reads)) for state in values]
    changes = [h for i, h in enumerate(read) if i == 0 or h != read[i - 1]]
    extra: list[str] = []
    at = 0  # the change the workload was last rolled to; at the start it holds the first state, unrolled
    for (before_gen, before_hash), (gen, new_hash) in itertools.pairwise(revisions):
        if gen != before_gen + 1:
            extra.append(f"generation {before_gen} -> {gen}: a revision unseen")
        if new_hash == before_hash:
            extra.append(f"generation {gen}: rolled again to {new_hash}")
            continue
        later = [i for i in range(at + 1, len(changes)) if changes[i] == new_hash]
        if not later:
            extra.append(f"generation {gen}: hash {new_hash} of no later value the ConfigMap held")
            continue
        at = later[0]
    return extra, (len(changes) - 1) - (len(revisions) - 1 - len(extra))


@dataclass(frozen=True)
class Consumer:
    """A workload reading a ServiceLink's ConfigMap: ``reads`` the keys it reads, None for the whole of it."""

    kind: str  # as kubectl names it: "deployment", "statefulset", ...
    name: str
    reads: frozenset[str] | None = None


@dataclass
class Verdict:
    """What ``Recorder.check`` found, per consumer and in all."""

    rollouts: dict[str, int] = field(default_factory=dict)  # consumer -> revisions seen
    stale: list[str] = field(default_factory=list)  # consumers whose hash is not that of what they read now
    extra: list[str] = field(default_factory=list)  # revisions that were no real change
    skipped: int = 0  # changes of what a consumer reads that it never rolled to (a later one covered them)
    writes: int = 0  # ConfigMap states seen after the first
    converged: float = 0.0  # seconds from the call until every consumer was on its values

    def summary(self) -> str:
        rolled = ", ".join(f"{name} {count}" for name, count in self.rollouts.items())
        return (
            f"{len(self.rollouts)} consumers, rollouts {rolled} for {self.writes} ConfigMap writes; "
            f"{len(self.stale)} stale, {len(self.extra)} extra, {self.skipped} changes covered by a later roll; "
            f"converged {self.converged:.1f}s after the last change"
        )


class Recorder:
    """Watches of one ConfigMap and its consumers, kept from before a scenario's first change to its check."""

    def __init__(self, cluster: Cluster, namespace: str, configmap: str, consumers: list[Consumer]) -> None:
        self.cluster, self.namespace, self.configmap, self.consumers = cluster, namespace, configmap, consumers
        self.values = Watch(cluster, "configmap", namespace, configmap, configmap_data)
        self.revisions = {c.name: Watch(cluster, c.kind, namespace, c.name, revision) for c in consumers}
        self.watches = [self.values, *self.revisions.values()]
        wait_for(lambda: all(w.states for w in self.watches), timeout=60, what="every watch's first state")

    def stop(self) -> None:
        for watch in self.watches:
            watch.stop()

    def restart(self) -> None:
        """Start every watch again (after an outage ended them); return once each delivered its first state.

        Keep the operator from writing from the outage until this returns (SIGSTOP), or a write is missed.
        """
        connections = [w.connections for w in self.watches]
        for watch in self.watches:
            watch.stop()
            watch.start()
        wait_for(
            lambda: all(w.connections > n for w, n in zip(self.watches, connections, strict=True)),
            timeout=60,
            what="every watch's first state again",
        )

    def caught_up(self) -> bool:
        """Whether every watch's last state is its object as the API server holds it now."""
        current = [data(self.cluster, self.namespace, self.configmap) or {}]
        current += [revision(self.cluster.get(c.kind, c.name, "-n", self.namespace)) for c in self.consumers]
        return all(w.states and w.states[-1] == now for w, now in zip(self.watches, current, strict=True))

    def check(
        self, *, servicelink: str, poke: str, expected: dict[str, str], skips_allowed: int = 0, timeout: float = 120
    ) -> Verdict:
        """Wait for the end state, then judge it: the pass criterion of every reliability scenario.

        ``expected`` is what the ConfigMap must hold, from the Services as the scenario left them; it
        holds servicelink's keys only (the operator hashes only those, so a foreign key would not count).
        Every consumer's config hash must become the hash of what it reads of that (the operator's
        ``render_hash(consumed(...))``) within ``timeout``; one that does not is stale. Then a
        reconcile after the last change (``wait_until_acted``, poking Service ``poke``), so a roll
        left behind would show; then every revision the watches saw is judged (``judge_revisions``).
        It passes with no stale consumer, no extra revision, and at most ``skips_allowed`` changes a
        consumer never rolled to (each one a fault between a ConfigMap write and its rollout, after
        which one roll covered two changes).
        """
        verdict = Verdict()
        begun = time.monotonic()
        wait_for(
            lambda: data(self.cluster, self.namespace, self.configmap) == expected,
            timeout=timeout,
            what=f"{self.configmap} holding {expected}",
        )
        want = {c.name: render_hash(consumed(expected, c.reads)) for c in self.consumers}

        def hashes() -> dict[str, str | None]:
            return {c.name: revision(self.cluster.get(c.kind, c.name, "-n", self.namespace))[1] for c in self.consumers}

        with contextlib.suppress(AssertionError):
            wait_for(lambda: hashes() == want, timeout=timeout, what="every consumer on its values")
        verdict.converged = time.monotonic() - begun
        wait_until_acted(self.cluster, self.namespace, servicelink, poke)
        wait_for(self.caught_up, timeout=30, what="the watches caught up")
        found = hashes()
        verdict.stale = [f"{name}: carries {found[name]}, reads {h}" for name, h in want.items() if found[name] != h]
        verdict.writes = len(self.values.states) - 1
        for consumer in self.consumers:
            states = self.revisions[consumer.name].states
            extra, skipped = judge_revisions(self.values.states, states, consumer.reads)
            verdict.extra += [f"{consumer.name}: {line}" for line in extra]
            verdict.skipped += skipped
            verdict.rollouts[consumer.name] = len(states) - 1
        assert verdict.stale == [], f"consumers left on old values: {verdict.stale}; {verdict.summary()}"
        assert verdict.extra == [], f"extra rollouts: {verdict.extra}; {verdict.summary()}"
        assert verdict.skipped <= skips_allowed, verdict.summary()
        return verdict
