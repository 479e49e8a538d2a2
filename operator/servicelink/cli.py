"""The ``servicelink`` command: ``run`` starts the operator; the others help people use it (does I/O)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

from servicelink import handlers
from servicelink.settings import Settings
from servicelink.tools import commands as tools


def _parser(defaults: Settings) -> argparse.ArgumentParser:
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
        default=defaults.cluster_domain,
        help="the cluster's DNS domain, for cross-namespace FQDNs (default: %(default)s)",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=defaults.resync_seconds,
        help="reconcile every ServiceLink this often, repairing drift (default: %(default)s)",
    )
    run.add_argument(
        "--coalesce-seconds",
        type=float,
        default=defaults.coalesce_seconds,
        help="changes to one ServiceLink closer together than this reconcile once (default: %(default)s)",
    )
    run.add_argument(
        "--workers", type=int, default=defaults.workers, help="ServiceLinks reconciled at once (default: %(default)s)"
    )
    run.add_argument(
        "--log-format", choices=("text", "json"), default=defaults.log_format, help="log format (default: %(default)s)"
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=defaults.metrics_port,
        help="serve Prometheus /metrics here; 0 turns it off (default: %(default)s)",
    )
    run.add_argument(
        "--health-port",
        type=int,
        default=defaults.health_port,
        help="serve the liveness endpoint /healthz here; 0 turns it off (default: %(default)s)",
    )
    run.add_argument(
        "--watch-inactivity-seconds",
        type=float,
        default=defaults.watch_inactivity_seconds,
        help="reopen a watch that delivered nothing, not even a bookmark, for this long (default: %(default)s)",
    )
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=defaults.leader_elect,
        help="run several replicas: they share a Lease and only its holder reconciles (default: %(default)s)",
    )
    run.add_argument(
        "--lease-namespace",
        default=defaults.lease_namespace,
        help="namespace of the Lease (default: $POD_NAMESPACE, else %(default)s)",
    )
    run.add_argument("--verbose", action="store_true", help="log at debug level")
    commands.add_parser(
        "demo",
        add_help=False,
        help="the image gallery end to end on a local control plane (servicelink demo --help)",
    )
    tools.add_parsers(commands, defaults)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    try:
        defaults = Settings.from_env(os.environ)
    except ValueError as error:
        sys.exit(f"servicelink: {error}")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from servicelink import demo  # imported here: the demo pulls in the control-plane harness

        demo.main(argv[1:])
        return
    args = _parser(defaults).parse_args(argv)
    if hasattr(args, "tool"):
        sys.exit(args.tool(args))
    # Every flag's dest is the name of its setting, and its default already read the environment.
    settings = dataclasses.replace(
        defaults,
        **{
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(Settings)
            if f.name not in ("namespaces", "workers")
        },
        namespaces=tuple(args.namespaces or defaults.namespaces),
        workers=max(1, args.workers),
    )
    handlers.run_operator(settings, verbose=args.verbose)


if __name__ == "__main__":
    main()
