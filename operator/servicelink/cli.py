"""The ``servicelink`` command: ``servicelink run`` starts the operator (does I/O)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from servicelink import handlers
from servicelink.settings import OPTIONS, Settings, SettingsError, load_settings


def _parser() -> argparse.ArgumentParser:
    # Flags are read as text and checked by settings.load_settings, like the environment;
    # no flag has a default here, so one left out falls back to its variable.
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="servicelink", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run the operator",
        description="Run the operator. Every flag also reads SERVICELINK_<FLAG> from the environment.",
    )
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        metavar="NAMESPACE",
        help="watch this namespace (repeatable; SERVICELINK_NAMESPACES, comma-separated); default: all namespaces",
    )
    run.add_argument(
        "--cluster-domain",
        help=f"the cluster's DNS domain, for cross-namespace FQDNs (default: {defaults.cluster_domain})",
    )
    run.add_argument(
        "--resync-seconds",
        help="reconcile every ServiceLink this often, repairing drift; 1 to 86400 "
        f"(default: {defaults.resync_seconds:g})",
    )
    run.add_argument(
        "--coalesce-seconds",
        help="changes to one ServiceLink closer together than this reconcile once; 0 to 60 "
        f"(default: {defaults.coalesce_seconds:g})",
    )
    run.add_argument("--workers", help=f"ServiceLinks reconciled at once; 1 to 256 (default: {defaults.workers})")
    run.add_argument("--log-format", help=f"text or json (default: {defaults.log_format})")
    run.add_argument(
        "--metrics-port",
        help=f"serve Prometheus /metrics here; 0 turns it off (default: {defaults.metrics_port})",
    )
    run.add_argument(
        "--health-port",
        help=f"serve the liveness endpoint /healthz here; 0 turns it off (default: {defaults.health_port})",
    )
    run.add_argument(
        "--watch-inactivity-seconds",
        help="reopen a watch that delivered nothing, not even a bookmark, for this long; 1 to 3600 "
        f"(default: {defaults.watch_inactivity_seconds:g})",
    )
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        help="run several replicas: they share a Lease and only its holder reconciles (default: off)",
    )
    run.add_argument("--lease-namespace", help="namespace of the Lease (default: $POD_NAMESPACE, else default)")
    run.add_argument("--verbose", action="store_true", help="log at debug level")
    commands.add_parser(
        "demo",
        add_help=False,
        help="the image gallery end to end on a local control plane (servicelink demo --help)",
    )
    return parser


def _flags(args: argparse.Namespace) -> dict[str, str | None]:
    """The flags given, as text by setting name; None for those left out."""
    flags: dict[str, str | None] = {option.field: getattr(args, option.field) for option in OPTIONS}
    flags["namespaces"] = ",".join(args.namespaces) if args.namespaces else None
    if args.leader_elect is not None:
        flags["leader_elect"] = str(args.leader_elect).lower()
    return flags


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from servicelink import demo  # imported here: the demo pulls in the control-plane harness

        demo.main(argv[1:])
        return
    args = _parser().parse_args(argv)
    try:
        loaded = load_settings(flags=_flags(args), environ=os.environ)
    except SettingsError as error:
        sys.exit(f"servicelink: {error}")
    handlers.run_operator(loaded, verbose=args.verbose)


if __name__ == "__main__":
    main()
