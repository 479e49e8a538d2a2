"""Who links what: workloads, Services and external names, with edges labelled by key and state (pure)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from servicelink import conditions as c
from servicelink.cache import Cache
from servicelink.resolve import LinkResult
from servicelink.rollout import select_consumers
from servicelink.tools import doctor
from servicelink.tools.offline import LinkedServiceLink

RESOLVED = "resolved"
NO_ENDPOINTS = "no endpoints"
STATES = {
    c.SERVICE_NOT_FOUND: "not found",
    c.PORT_NOT_FOUND: "port not found",
    c.CROSS_NAMESPACE_FORBIDDEN: "forbidden",
}
# doctor's checks of a hand-written value, as edge states; the first that applies wins.
HAND_WRITTEN_STATES = {
    doctor.SERVICE_NOT_FOUND: "not found",
    doctor.SHORT_NAME_ACROSS_NAMESPACES: "short name across namespaces",
    doctor.PORT_NOT_FOUND: "port not found",
    doctor.NO_READY_ENDPOINTS: NO_ENDPOINTS,
}


@dataclass(frozen=True, order=True)
class Node:
    """A workload, a ConfigMap nobody reads (so its links still show), a Service, or an external name."""

    # Deployment, StatefulSet, DaemonSet, CronJob, Rollout, Job, a mapped kind as Kind.group (CloneSet.apps.kruise.io),
    # ConfigMap, Service, External
    kind: str
    namespace: str  # "" for an external name
    name: str

    @property
    def id(self) -> str:
        """An identifier Mermaid and dot accept."""
        return re.sub(r"[^A-Za-z0-9_]", "_", f"{self.kind}_{self.namespace}_{self.name}")


@dataclass(frozen=True, order=True)
class Edge:
    """One link: its source reads ``key``, whose value points at the target; ``state`` says how that went."""

    source: Node
    target: Node
    key: str
    state: str


@dataclass(frozen=True)
class Graph:
    """Nodes and edges, sorted, so the same input always gives the same output."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


def _state(result: LinkResult, *, live: bool) -> str:
    if not result.resolved:
        return STATES.get(result.reason, result.reason)
    if live and (result.endpoints is None or result.endpoints.ready == 0):
        return NO_ENDPOINTS
    return RESOLVED


def _hand_written_edges(
    reports: Sequence[doctor.WorkloadReport], nodes: set[Node], edges: set[Edge], *, live: bool
) -> None:
    for report in reports:
        source = Node(report.kind, report.namespace, report.name)
        for finding in report.findings:
            if finding.managed_by != doctor.HAND_WRITTEN:
                continue
            service, _, external = finding.service.partition(" -> ")
            namespace, name = service.split("/", 1)
            target = Node("Service", namespace, name)
            # Read from files, endpoints are unknown rather than absent.
            checks = {p.check for p in finding.problems} - (set() if live else {doctor.NO_READY_ENDPOINTS})
            state = next((st for check, st in HAND_WRITTEN_STATES.items() if check in checks), RESOLVED)
            nodes.update((source, target))
            edges.add(Edge(source, target, f"{finding.variable} (hand-written)", state))
            if external:
                nodes.add(Node("External", "", external))
                edges.add(Edge(target, Node("External", "", external), "externalName", RESOLVED))


def build_graph(
    linked: Sequence[LinkedServiceLink],
    world: Cache,
    *,
    live: bool,
    hand_written: Sequence[doctor.WorkloadReport] = (),
) -> Graph:
    """Return the graph of ``linked`` ServiceLinks, and of the hand-written addresses doctor found.

    Each consumer of a ServiceLink's ConfigMap (as the operator finds them) has
    an edge per link to its Service; a ConfigMap nobody reads stands in for its
    consumers. A running Job that reads it is drawn too, with an edge for each
    key it reads: servicelink reports it when a value changes, and never rolls
    it. ``live``: endpoints were read, so a resolved link without a ready
    endpoint shows as ``no endpoints``. A value written by hand is an edge
    labelled ``(hand-written)``, so a cluster without the CRD has a graph too.
    """
    nodes: set[Node] = set()
    edges: set[Edge] = set()
    _hand_written_edges(hand_written, nodes, edges, live=live)
    for sl in linked:
        if sl.spec is None:
            continue
        consumers = select_consumers(
            world.workloads(sl.namespace, reading=None), spec=sl.spec.workloads, configmap=sl.configmap
        )
        sources = [Node(w.kind, w.namespace, w.name) for w, _ in consumers] or [
            Node("ConfigMap", sl.namespace, sl.configmap)
        ]
        nodes.update(sources)
        jobs = [
            (Node("Job", j.namespace, j.name), j.reads[sl.configmap])
            for j in world.jobs(sl.namespace, reading=sl.configmap)
        ]
        nodes.update(job for job, _ in jobs)
        for result in sl.results:
            namespace, name = result.service.split("/", 1)
            target = Node("Service", namespace, name)
            nodes.add(target)
            state = _state(result, live=live)
            edges.update(Edge(source, target, result.key, state) for source in sources)
            edges.update(
                Edge(job, target, result.key, state) for job, keys in jobs if keys is None or result.key in keys
            )
            view = world.service((namespace, name))
            if result.resolved and view is not None and view.type == "ExternalName" and view.external_name:
                external = Node("External", "", view.external_name)
                nodes.add(external)
                edges.add(Edge(target, external, "externalName", RESOLVED))
    return Graph(nodes=tuple(sorted(nodes)), edges=tuple(sorted(edges)))


_MERMAID_SHAPES = {"Service": ('(["', '"])'), "External": ('{{"', '"}}'), "ConfigMap": ('[/"', '"/]')}
_DOT_SHAPES = {"Service": "ellipse", "External": "hexagon", "ConfigMap": "note"}


def _label(node: Node) -> str:
    return node.name if node.kind in ("Service", "External") else f"{node.kind} {node.name}"


def _by_namespace(graph: Graph) -> dict[str, list[Node]]:
    groups: dict[str, list[Node]] = {}
    for node in graph.nodes:
        groups.setdefault(node.namespace, []).append(node)
    return groups


def format_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart: one subgraph per namespace; links that do not resolve are dotted."""
    lines = ["flowchart LR"]
    for namespace, members in sorted(_by_namespace(graph).items()):
        indent = "    " if namespace else "  "
        if namespace:
            lines.append(f'  subgraph ns_{re.sub(r"[^A-Za-z0-9_]", "_", namespace)}["namespace {namespace}"]')
        for node in members:
            left, right = _MERMAID_SHAPES.get(node.kind, ('["', '"]'))
            lines.append(f"{indent}{node.id}{left}{_label(node)}{right}")
        if namespace:
            lines.append("  end")
    for edge in graph.edges:
        arrow = "-->" if edge.state in (RESOLVED, NO_ENDPOINTS) else "-.->"
        label = edge.key if edge.state == RESOLVED else f"{edge.key}: {edge.state}"
        lines.append(f'  {edge.source.id} {arrow}|"{label}"| {edge.target.id}')
    return "\n".join(lines) + "\n"


def format_dot(graph: Graph) -> str:
    """A Graphviz digraph: one cluster per namespace; links that do not resolve are dashed and red."""
    lines = ["digraph servicelink {", "  rankdir=LR;", "  node [shape=box];"]
    for namespace, members in sorted(_by_namespace(graph).items()):
        indent = "    " if namespace else "  "
        if namespace:
            lines.append(f'  subgraph "cluster_{namespace}" {{')
            lines.append(f'    label="namespace {namespace}";')
        for node in members:
            shape = _DOT_SHAPES.get(node.kind, "box")
            lines.append(f'{indent}{node.id} [label="{_label(node)}", shape={shape}];')
        if namespace:
            lines.append("  }")
    for edge in graph.edges:
        style = "" if edge.state in (RESOLVED, NO_ENDPOINTS) else ", style=dashed, color=red"
        label = edge.key if edge.state == RESOLVED else f"{edge.key}: {edge.state}"
        lines.append(f'  {edge.source.id} -> {edge.target.id} [label="{label}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def format_json(graph: Graph) -> str:
    """The graph as JSON: ``nodes`` (id, kind, namespace, name) and ``edges`` (source, target, key, state)."""
    document = {
        "nodes": [{"id": n.id, "kind": n.kind, "namespace": n.namespace, "name": n.name} for n in graph.nodes],
        "edges": [{"source": e.source.id, "target": e.target.id, "key": e.key, "state": e.state} for e in graph.edges],
    }
    return json.dumps(document, indent=2) + "\n"


FORMATS = {"mermaid": format_mermaid, "dot": format_dot, "json": format_json}
