"""The subcommands besides ``run`` and ``demo``: flags, reading input, printing (does I/O).

Each decision is made by a pure module (``offline``, ``graph``, ``compose``, ``doctor``, ``adopt``);
here input is read, errors become one line on stderr, and results are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from servicelink.model import FINALIZER, LISTED_KINDS, MAPPING_KIND, REPORTED_KINDS, WORKLOAD_KINDS, WorkloadResource
from servicelink.settings import Settings
from servicelink.tools import doctor
from servicelink.tools import graph as graphs
from servicelink.tools.adopt import Adoption, adopt_configmap
from servicelink.tools.cluster import Cluster, ReadKind
from servicelink.tools.compose import ComposeError, import_compose
from servicelink.tools.leave import (
    LEFT_MANAGER,
    describe_release,
    plan_finalizers,
    plan_release,
    written_objects,
)
from servicelink.tools.manifests import InputError, Manifest, Manifests, load_documents, read_manifests, read_text
from servicelink.tools.offline import (
    build_world,
    link_servicelinks,
    name_mapped_kind,
    parse_mappings,
    place,
    render_configmaps,
    render_report,
    render_secrets,
)

EXIT_PROBLEM = 1  # a link does not resolve, a key conflicts, a spec is invalid
EXIT_BAD_INPUT = 2  # as argparse exits on bad flags


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
    note = manifests.skipped_note(("ServiceLink", "Service", "Secret"), "render")
    if note:
        print(note, file=sys.stderr)
    world = build_world([m.body for m in manifests.of("ServiceLink", "Service", "Secret")], namespace=args.namespace)
    linked = link_servicelinks(world, cluster_domain=args.cluster_domain)
    if not linked:
        return _fail("no ServiceLink in the input")
    configmaps = render_configmaps(linked) + (render_secrets(linked) if args.show_secrets else [])
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": configmaps}, indent=2))
    else:
        sys.stdout.write(dump_yaml(configmaps))
    sys.stderr.write(render_report(linked))
    return 0 if all(sl.ok for sl in linked) else EXIT_PROBLEM


def _print_skipped(skipped: tuple[str, ...]) -> None:
    for why in skipped:
        print(f"note: skipped {why}", file=sys.stderr)


def _map_manifests(manifests: Manifests) -> tuple[Manifests, dict[str, WorkloadResource]]:
    """The objects read, those of a kind a WorkloadMapping among them maps named ``Kind.group``; and those kinds."""
    mapped = parse_mappings(m.body for m in manifests.objects)
    _print_skipped(mapped.skipped)
    objects = [Manifest(dict(name_mapped_kind(m.body, mapped.resources)), m.source) for m in manifests.objects]
    return Manifests(objects), dict(mapped.resources)


def _read_mapped(cluster: Cluster, namespace: str | None) -> tuple[list[dict[str, Any]], dict[str, WorkloadResource]]:
    """The objects of each kind a WorkloadMapping of the cluster maps, and those kinds; a mapping the operator
    would refuse, a kind not served or not readable is a note on stderr."""
    mapped = parse_mappings(cluster.read_mappings())
    _print_skipped(mapped.skipped)
    bodies = [body for resource in mapped.resources.values() for body in cluster.read_mapped(resource, namespace)]
    return bodies, dict(mapped.resources)


def run_graph(args: argparse.Namespace) -> int:
    """``servicelink graph``: from files (``-f``) or the cluster (``-n`` / ``-A``)."""
    try:
        if args.filename:
            manifests, mapped = _map_manifests(read_manifests(args.filename))
            read = (*LISTED_KINDS, *mapped, "ConfigMap")
            note = manifests.skipped_note((*read, MAPPING_KIND), "graph")
            if note:
                print(note, file=sys.stderr)
            bodies = [m.body for m in manifests.of(*read)]
        else:
            cluster = Cluster(kubeconfig=args.kubeconfig, context=args.context)
            namespace = None if args.all_namespaces else args.namespace or cluster.default_namespace
            kinds: tuple[ReadKind, ...] = ("ServiceLink", *WORKLOAD_KINDS, *REPORTED_KINDS, "ConfigMap")
            bodies, mapped = _read_mapped(cluster, namespace)
            bodies += cluster.read_all(kinds, namespace) + _read_services(cluster, namespace)
    except InputError as error:
        return _fail(str(error))
    default = args.namespace or "default"
    world = build_world(bodies, namespace=default, mapped=mapped)
    linked = link_servicelinks(world, cluster_domain=args.cluster_domain)
    placed = [place(body, namespace=default) for body in bodies]
    state = doctor.ClusterState.from_objects(placed, mapped=mapped)
    hand_written = doctor.examine(state, cluster_domain=args.cluster_domain)
    graph = graphs.build_graph(linked, world, live=not args.filename, hand_written=hand_written)
    sys.stdout.write(graphs.FORMATS[args.output](graph))
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


KIND_ALIASES = {
    "deployment": "Deployment",
    "deployments": "Deployment",
    "deploy": "Deployment",
    "statefulset": "StatefulSet",
    "statefulsets": "StatefulSet",
    "sts": "StatefulSet",
    "daemonset": "DaemonSet",
    "daemonsets": "DaemonSet",
    "ds": "DaemonSet",
    "cronjob": "CronJob",
    "cronjobs": "CronJob",
    "cj": "CronJob",
    "rollout": "Rollout",
    "rollouts": "Rollout",
    "ro": "Rollout",
    "job": "Job",
    "jobs": "Job",
}


def _read_services(cluster: Cluster, namespace: str | None) -> list[dict[str, Any]]:
    """Services and EndpointSlices of every namespace, so addresses into other namespaces are checked too;
    those of ``namespace`` alone when listing all is refused."""
    try:
        return cluster.read_all(("Service", "EndpointSlice"), None)
    except InputError:
        if namespace is None:
            raise
        print(f"note: Services read in namespace {namespace} only (listing all was refused)", file=sys.stderr)
        return cluster.read_all(("Service", "EndpointSlice"), namespace)


def mapped_kind_named(text: str, mapped: Mapping[str, WorkloadResource]) -> str | None:
    """The mapped kind ``text`` names as ``kubectl get`` takes it: ``Kind.group`` or ``plural.group``, any case."""
    wanted = text.lower()
    return next(
        (kind for kind, r in mapped.items() if wanted in (kind.lower(), f"{r.plural}.{r.group}")),
        None,
    )


def run_doctor(args: argparse.Namespace) -> int:
    """``servicelink doctor``: read-only; a table per workload, exit 1 when a problem is found."""
    kind, name = "", ""
    expected = f"{args.target}: expected KIND/NAME, KIND one of {', '.join((*WORKLOAD_KINDS, *REPORTED_KINDS))}"
    if args.target:
        kind, _, name = args.target.partition("/")
        # A mapped kind always has a dot (Kind.group); which ones exist is known once the mappings are read.
        if (kind.lower() not in KIND_ALIASES and "." not in kind) or not name:
            return _fail(f"{expected} or a mapped kind such as CloneSet.apps.kruise.io")
    try:
        cluster = Cluster(kubeconfig=args.kubeconfig, context=args.context)
        namespace = None if args.all_namespaces else args.namespace or cluster.default_namespace
        bodies, mapped = _read_mapped(cluster, namespace)
        bodies += cluster.read_all(("ServiceLink", *WORKLOAD_KINDS, *REPORTED_KINDS, "ConfigMap", "Pod"), namespace)
        bodies += _read_services(cluster, namespace)
    except InputError as error:
        return _fail(str(error))
    only: tuple[str, str] | None = None
    if args.target:
        chosen = KIND_ALIASES.get(kind.lower()) or mapped_kind_named(kind, mapped)
        if chosen is None:
            return _fail(f"{expected}, or a kind a WorkloadMapping maps ({', '.join(sorted(mapped)) or 'none'})")
        only = (chosen, name)
    state = doctor.ClusterState.from_objects(bodies, mapped=mapped)
    reports = doctor.examine(state, cluster_domain=args.cluster_domain, only=only)
    if only is not None and not reports:
        return _fail(f"{args.target}: not found in {namespace or 'any namespace'}")
    sys.stdout.write(doctor.format_json(reports) if args.output == "json" else doctor.format_text(reports))
    return EXIT_PROBLEM if any(r.problem_count for r in reports) else 0


def adoption_notes(adoption: Adoption) -> list[str]:
    """The notes adopt prints on stderr for one ConfigMap: what it adopted, left alone, and what to run first."""
    where = f"ConfigMap {adoption.namespace}/{adoption.configmap}"
    notes: list[str] = []
    if adoption.servicelink is not None:
        keys = ", ".join(link["key"] for link in adoption.servicelink["spec"]["links"])
        notes.append(f"{where}: adopted {keys}")
    for key, why in adoption.left:
        notes.append(f"{where}: {key} left alone: {why}")
    if adoption.servicelink is not None and adoption.share:
        notes.append(
            f"{where}: servicelink writes only into ConfigMaps shared with the ServiceLink; "
            f"share it before applying the ServiceLink (else ConfigMapNotShared): {adoption.share}"
        )
    if adoption.servicelink is not None and adoption.credentials:
        secret = adoption.servicelink["spec"]["secretName"]
        for key, source in sorted(adoption.credentials.items()):
            notes.append(
                f"{where}: {key} carries credentials: its link reads them from Secret {source} (keys username and "
                f"password), and servicelink writes it to Secret {secret}, not to the ConfigMap. Point its readers "
                f"at Secret {secret} (secretKeyRef or envFrom secretRef), then remove {key} from the ConfigMap"
            )
        for commands in adoption.create_secrets:
            notes.append(
                f"{where}: create and share the credentials before applying the ServiceLink (else SecretNotShared), "
                f"typing the username and password in place of the placeholders: {commands}"
            )
    held = {key: owners for key, owners in adoption.owners.items() if owners}
    if held:
        listing = "; ".join(f"{key} by {', '.join(owners)}" for key, owners in sorted(held.items()))
        notes.append(
            f"{where}: owned by other field managers: {listing}. Hand them over with their values unchanged, "
            f"before applying the ServiceLink (else KeyConflict): servicelink adopt -n {adoption.namespace} "
            f"configmap/{adoption.configmap} --handover | kubectl apply --server-side --field-manager=servicelink "
            "--force-conflicts -f -   and drop the keys from that manager's source (Helm values, manifests)"
        )
    return notes


def run_adopt(args: argparse.Namespace) -> int:
    """``servicelink adopt``: ServiceLinks, or with --handover the hand-over ConfigMaps, on stdout; notes on stderr."""
    name: str | None = None
    if args.target:
        kind, _, name = args.target.partition("/")
        if kind.lower() not in ("configmap", "configmaps", "cm") or not name:
            return _fail(f"{args.target}: expected configmap/NAME")
    try:
        cluster = Cluster(kubeconfig=args.kubeconfig, context=args.context)
        namespace = args.namespace or cluster.default_namespace
        bodies = cluster.read_all(("ServiceLink", "ConfigMap"), namespace) + _read_services(cluster, namespace)
    except InputError as error:
        return _fail(str(error))
    world = build_world(bodies, namespace=namespace)
    configmaps = [b for b in bodies if b["kind"] == "ConfigMap" and (name is None or b["metadata"]["name"] == name)]
    if name is not None and not configmaps:
        return _fail(f"configmap/{name} not found in namespace {namespace}")
    adoptions = [adopt_configmap(cm, world=world, cluster_domain=args.cluster_domain) for cm in configmaps]
    chosen = [a.handover if args.handover else a.servicelink for a in adoptions]
    sys.stdout.write(dump_yaml([body for body in chosen if body is not None]))
    for adoption in adoptions:
        for note in adoption_notes(adoption):
            print(f"note: {note}", file=sys.stderr)
    if not any(chosen):
        print("note: no value to adopt", file=sys.stderr)
    return 0


def run_leave(args: argparse.Namespace) -> int:
    """``servicelink leave``: one line per object changed on stdout; nothing to change is a note on stderr."""
    try:
        cluster = Cluster(kubeconfig=args.kubeconfig, context=args.context)
        namespace = None if args.all_namespaces else args.namespace or cluster.default_namespace
        servicelinks = cluster.read("ServiceLink", namespace)
        seen: set[tuple[str, str, str]] = set()
        changed = 0
        for servicelink in servicelinks:
            where = servicelink["metadata"]["namespace"]
            for kind, name in written_objects(servicelink):
                if (kind, where, name) in seen:
                    continue
                seen.add((kind, where, name))
                body = cluster.get_written(kind, namespace=where, name=name)
                if body is None:
                    continue
                release = plan_release(body)
                if not release.changes:
                    continue
                cluster.leave(release=release, manager=LEFT_MANAGER, dry_run=args.dry_run)
                print(describe_release(release))
                changed += 1
            # Last: once the finalizer is gone, deleting the ServiceLink withdraws no key.
            finalizers = plan_finalizers(servicelink)
            if finalizers is not None:
                cluster.set_finalizers(
                    namespace=where,
                    name=servicelink["metadata"]["name"],
                    finalizers=finalizers,
                    resource_version=servicelink["metadata"]["resourceVersion"],
                    dry_run=args.dry_run,
                )
                print(f"ServiceLink {where}/{servicelink['metadata']['name']}: finalizer {FINALIZER} removed")
                changed += 1
    except InputError as error:
        return _fail(str(error))
    if not changed:
        print("note: nothing of servicelink's to remove", file=sys.stderr)
    if args.dry_run:
        print("note: dry run: the API server checked each change and kept none", file=sys.stderr)
    return 0


def _cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


def _cluster_domain_flag(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    # No default here: one left out falls back to SERVICELINK_CLUSTER_DOMAIN, as `servicelink run` does
    # (servicelink.cli resolves it), so that the tools write the FQDNs the operator writes.
    parser.add_argument(
        "--cluster-domain",
        help="the cluster's DNS domain, for cross-namespace FQDNs "
        f"(SERVICELINK_CLUSTER_DOMAIN; default: {defaults.cluster_domain})",
    )


def add_parsers(commands: Any, defaults: Settings) -> None:
    """Add the subcommands to ``servicelink``'s subparsers; each sets ``tool`` to the function that runs it."""
    render = commands.add_parser(
        "render",
        help="the ConfigMaps the operator would write, offline",
        description=(
            "Resolve ServiceLinks against Services read from YAML (files, folders, or - for stdin, such as "
            "kustomize build or helm template output) as the operator would, without a cluster. Prints the "
            "ConfigMaps on stdout and a report per link on stderr. Secrets in the input labelled "
            "servicelink.dev/shared=true give links[].credentials their values. Exit code 1 when a link does not "
            "resolve."
        ),
    )
    render.add_argument(
        "-f", "--filename", action="append", required=True, metavar="FILE|DIR|-", help="input (repeatable)"
    )
    render.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="format (default: yaml)")
    render.add_argument(
        "--show-secrets",
        action="store_true",
        help="also print the Secrets that links with credentials write (spec.secretName), values included;"
        " without it their values show nowhere",
    )
    render.add_argument(
        "-n", "--namespace", default="default", help="namespace of objects that name none (default: %(default)s)"
    )
    _cluster_domain_flag(render, defaults)
    render.set_defaults(tool=run_render)

    graph = commands.add_parser(
        "graph",
        help="who links what: workloads, Services, external names",
        description=(
            "Draw the links of ServiceLinks, and service addresses written by hand: from workloads (the "
            "consumers of each ConfigMap) to Services, each edge labelled with its key and state (resolved, "
            "no endpoints, not found, port not found, forbidden). Reads the cluster (-n, -A) or files (-f). "
            "Workloads of a kind a WorkloadMapping maps (in the cluster, or among the files) are drawn as Kind.group."
        ),
    )
    where = graph.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="this namespace (default: the context's)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    graph.add_argument("-f", "--filename", action="append", metavar="FILE|DIR|-", help="read files, not the cluster")
    graph.add_argument("-o", "--output", choices=sorted(graphs.FORMATS), default="mermaid", help="(default: mermaid)")
    _cluster_domain_flag(graph, defaults)
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

    doctor_parser = commands.add_parser(
        "doctor",
        help="check every service address workloads read, and say how to fix each problem (read-only)",
        description=(
            "For each Deployment, StatefulSet, DaemonSet, CronJob, Argo Rollout, running Job and object of a kind "
            "a WorkloadMapping maps (KIND/NAME: Kind.group/NAME), check every environment value "
            "that looks like a service address (literal env, configMapKeyRef, envFrom), hand-written or managed "
            "by a ServiceLink: "
            "the Service exists where the name resolves, the port is one of its ports, it has ready endpoints, "
            "a short name is not used across namespaces, ExternalName targets, and pods older than the value. "
            "Exit code 1 when a problem is found."
        ),
    )
    where = doctor_parser.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="this namespace (default: the context's)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    doctor_parser.add_argument("target", nargs="?", metavar="KIND/NAME", help="only this workload")
    doctor_parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="(default: text)")
    _cluster_domain_flag(doctor_parser, defaults)
    _cluster_flags(doctor_parser)
    doctor_parser.set_defaults(tool=run_doctor)

    adopt = commands.add_parser(
        "adopt",
        help="propose ServiceLinks for hand-written ConfigMaps, values kept byte for byte",
        description=(
            "For each value of a hand-written ConfigMap that resolves to a Service, propose a link whose rendered "
            "value equals it byte for byte; values it cannot explain are listed and left alone. Keys another "
            "field manager owns are named, with how to hand them over: --handover prints the ConfigMap to apply "
            "server-side as field manager servicelink, which changes no value. Then applying the ServiceLinks "
            "changes no value and rolls nothing."
        ),
    )
    adopt.add_argument("-n", "--namespace", help="this namespace (default: the context's)")
    adopt.add_argument("target", nargs="?", metavar="configmap/NAME", help="only this ConfigMap")
    adopt.add_argument("--handover", action="store_true", help="print the hand-over ConfigMaps, not the ServiceLinks")
    _cluster_domain_flag(adopt, defaults)
    _cluster_flags(adopt)
    adopt.set_defaults(tool=run_adopt)

    leave = commands.add_parser(
        "leave",
        help="keep the ConfigMaps and Secrets ServiceLinks wrote, and let servicelink go (the reverse of adopt)",
        description=(
            "Before uninstalling servicelink: for each ServiceLink, remove its ownerReference from the ConfigMap "
            "(spec.configMapName) and Secret (spec.secretName) it writes, so that deleting the ServiceLinks or "
            f"their CRD deletes neither; hand the keys field manager servicelink owns to field manager "
            f"{LEFT_MANAGER}, values unchanged; and remove the finalizer {FINALIZER}, so that deleting a "
            "ServiceLink withdraws no key. Stop the operator first: a running one writes its keys back. "
            "Prints one line per object changed, never a value."
        ),
    )
    where = leave.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="this namespace (default: the context's)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    leave.add_argument("--dry-run", action="store_true", help="have the API server check each change, and keep none")
    _cluster_flags(leave)
    leave.set_defaults(tool=run_leave)
