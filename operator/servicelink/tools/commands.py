"""The subcommands ``render``, ``graph`` and ``import``: flags, reading input, printing (does I/O).

Each decision is made by a pure module (``offline``, ``graph``, ``compose``);
here input is read, errors become one line on stderr, and results are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from servicelink.model import LISTED_KINDS
from servicelink.settings import Settings
from servicelink.tools import graph as graphs
from servicelink.tools.compose import ComposeError, import_compose
from servicelink.tools.manifests import InputError, load_documents, read_manifests, read_text
from servicelink.tools.offline import build_world, link_servicelinks, render_configmaps, render_report

EXIT_PROBLEM = 1  # a link does not resolve, a key conflicts, a spec is invalid
EXIT_BAD_INPUT = 2  # as argparse exits on bad flags

Runner = Callable[[argparse.Namespace], int]


def _fail(message: str) -> int:
    print(f"servicelink: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def dump_yaml(documents: list[dict[str, Any]]) -> str:
    """YAML documents separated by ``---``, keys in the order built, as ``kubectl apply -f`` reads them."""
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False)


def run_render(args: argparse.Namespace) -> int:
    """``servicelink render``: the ConfigMaps on stdout, the per-link report on stderr."""
    try:
        manifests = read_manifests(args.filename)
    except InputError as error:
        return _fail(str(error))
    note = manifests.skipped_note(("ServiceLink", "Service"), "render")
    if note:
        print(note, file=sys.stderr)
    world = build_world([m.body for m in manifests.of("ServiceLink", "Service")], namespace=args.namespace)
    linked = link_servicelinks(world, cluster_domain=args.cluster_domain)
    if not linked:
        return _fail("no ServiceLink in the input")
    configmaps = render_configmaps(linked)
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": configmaps}, indent=2))
    else:
        sys.stdout.write(dump_yaml(configmaps))
    sys.stderr.write(render_report(linked))
    return 0 if all(sl.ok for sl in linked) else EXIT_PROBLEM


def _read_cluster(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every object of the kinds the graph reads, from the cluster; raise ``InputError`` with one line on failure."""
    from servicelink import kube  # imported here: render and import need no client

    try:
        client = kube.load_client(kubeconfig=args.kubeconfig, context=args.context)
    except kube.ConfigError as error:
        where = args.kubeconfig or "$KUBECONFIG or ~/.kube/config"
        raise InputError(f"no usable kubeconfig ({where}): {error}") from None
    api = kube.Kube(client)
    if args.all_namespaces:
        namespace = None
    else:
        namespace = args.namespace or kube.context_namespace(kubeconfig=args.kubeconfig, context=args.context)
    bodies: list[dict[str, Any]] = []
    for kind in LISTED_KINDS:
        try:
            items = api.list_objects(kind=kind, namespace=namespace)
        except kube.ApiError as error:
            if kind == "ServiceLink" and error.status == 404:
                print("note: the ServiceLink CRD is not installed; no ServiceLinks read", file=sys.stderr)
                continue
            raise InputError(f"cannot list {kind}s: HTTP {error.status} {error.reason}") from None
        except kube.TransportError as error:
            raise InputError(f"cannot reach the API server: {error}") from None
        bodies.extend({**item, "kind": kind} for item in items)
    return bodies


def run_graph(args: argparse.Namespace) -> int:
    """``servicelink graph``: from files (``-f``) or the cluster (``-n`` / ``-A``)."""
    try:
        if args.filename:
            manifests = read_manifests(args.filename)
            note = manifests.skipped_note(LISTED_KINDS, "graph")
            if note:
                print(note, file=sys.stderr)
            bodies = [m.body for m in manifests.of(*LISTED_KINDS)]
        else:
            bodies = _read_cluster(args)
    except InputError as error:
        return _fail(str(error))
    world = build_world(bodies, namespace=args.namespace or "default")
    linked = link_servicelinks(world, cluster_domain=args.cluster_domain)
    sys.stdout.write(graphs.FORMATS[args.output](graphs.build_graph(linked, world, live=not args.filename)))
    return 0


def run_import_compose(args: argparse.Namespace) -> int:
    """``servicelink import compose``: Services and ServiceLinks on stdout, what was left out on stderr."""
    path = Path(args.file)
    try:
        documents = list(load_documents(read_text(path), str(path)))
        project = documents[0][0] if documents else None
        if not isinstance(project, dict):
            raise InputError(f"{path}: expected a Compose file (a mapping with services:)")

        def read_env_file(name: str) -> str | None:
            env_path = path.parent / name
            return read_text(env_path) if env_path.is_file() else None

        imported = import_compose(project, namespace=args.namespace, read_env_file=read_env_file)
    except InputError as error:
        return _fail(str(error))
    except ComposeError as error:
        return _fail(f"{path}: {error}")
    sys.stdout.write(dump_yaml(imported.objects))
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


def add_parsers(commands: Any, defaults: Settings) -> None:
    """Add the subcommands to ``servicelink``'s subparsers; each sets ``tool`` to the function that runs it."""
    render = commands.add_parser(
        "render",
        help="the ConfigMaps the operator would write, offline",
        description=(
            "Resolve ServiceLinks against Services read from YAML (files, folders, or - for stdin, such as "
            "kustomize build or helm template output) as the operator would, without a cluster. Prints the "
            "ConfigMaps on stdout and a report per link on stderr. Exit code 1 when a link does not resolve."
        ),
    )
    render.add_argument(
        "-f", "--filename", action="append", required=True, metavar="FILE|DIR|-", help="input (repeatable)"
    )
    render.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="format (default: yaml)")
    render.add_argument(
        "-n", "--namespace", default="default", help="namespace of objects that name none (default: %(default)s)"
    )
    render.add_argument(
        "--cluster-domain",
        default=defaults.cluster_domain,
        help="the cluster's DNS domain, for cross-namespace FQDNs (default: %(default)s)",
    )
    render.set_defaults(tool=run_render)

    graph = commands.add_parser(
        "graph",
        help="who links what: workloads, Services, external names",
        description=(
            "Draw the links of ServiceLinks: from workloads (the consumers of each ConfigMap) to Services, "
            "each edge labelled with its key and state (resolved, no endpoints, not found, port not found, "
            "forbidden). Reads the cluster (-n, -A) or files (-f)."
        ),
    )
    where = graph.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="this namespace (default: the context's)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    graph.add_argument("-f", "--filename", action="append", metavar="FILE|DIR|-", help="read files, not the cluster")
    graph.add_argument("-o", "--output", choices=sorted(graphs.FORMATS), default="mermaid", help="(default: mermaid)")
    graph.add_argument(
        "--cluster-domain", default=defaults.cluster_domain, help="DNS domain for FQDNs (default: %(default)s)"
    )
    _cluster_flags(graph)
    graph.set_defaults(tool=run_graph)

    imports = commands.add_parser(
        "import", help="Services and ServiceLinks from another tool's files", description="Translate into ServiceLinks."
    )
    sources = imports.add_subparsers(dest="source", required=True, metavar="{compose}")
    compose = sources.add_parser(
        "compose",
        help="from a Docker Compose file",
        description=(
            "Write a ClusterIP Service per Compose service with ports (ports, expose) and a ServiceLink per service "
            "whose environment (environment, env_file) points at another one, each link rendering the value byte "
            "for byte. Prints the objects on stdout and what was left out on stderr."
        ),
    )
    compose.add_argument("file", metavar="docker-compose.yml", help="the Compose file")
    compose.add_argument("-n", "--namespace", help="put the objects in this namespace (default: none given)")
    compose.set_defaults(tool=run_import_compose)
