"""The ``servicelink`` command: ``run`` starts the operator; the others help people use it (does I/O)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from servicelink import handlers
from servicelink.settings import OPTIONS, Settings, SettingsError, load_settings
from servicelink.tools import commands as tools

# Settings given as --flag / --no-flag rather than --flag VALUE.
_SWITCHES = ("leader_elect", "argo_rollouts", "secrets", "workload_mappings")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the `servicelink` command (docs/reference/cli.md is generated from it)."""
    # Flags are read as text and checked by settings.load_settings, like the environment;
    # no flag has a default here, so one left out falls back to its variable.
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="servicelink",
        description="servicelink run starts the operator; the other commands help you write, check and adopt"
        " ServiceLinks.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run the operator",
        description="Run the operator. Every flag also reads SERVICELINK_<FLAG> from the environment.",
    )
    for option in OPTIONS:
        text = f"{option.help}; {option.rule.allowed} ({option.env}; default: {option.describe_default()})"
        if option.field == "namespaces":
            run.add_argument("--namespace", "-n", action="append", dest="namespaces", metavar="NAMESPACE", help=text)
        elif option.field in _SWITCHES:
            run.add_argument(option.flag, action=argparse.BooleanOptionalAction, help=text)
        else:
            run.add_argument(option.flag, help=text)
    run.add_argument("--verbose", action="store_true", help="log at debug level")
    commands.add_parser(
        "demo",
        add_help=False,
        help="the image gallery end to end on a local control plane (servicelink demo --help)",
    )
    tools.add_parsers(commands, defaults)
    return parser


def _flags(args: argparse.Namespace) -> dict[str, str | None]:
    """The flags given, as text by setting name; None for those left out."""
    flags: dict[str, str | None] = {option.field: getattr(args, option.field) for option in OPTIONS}
    flags["namespaces"] = ",".join(args.namespaces) if args.namespaces else None
    for field in _SWITCHES:
        if getattr(args, field) is not None:
            flags[field] = str(getattr(args, field)).lower()
    return flags


def _read_cluster_domain(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Give a tool's --cluster-domain, when left out, from the environment as `servicelink run` reads it.

    Only that variable is read: another SERVICELINK_* setting, wrong or not, is the operator's business.
    Raises ``SettingsError`` naming the flag or variable when the domain is not one.
    """
    if "cluster_domain" not in vars(args):
        return
    (option,) = (option for option in OPTIONS if option.field == "cluster_domain")
    only = {option.env: environ[option.env]} if option.env in environ else {}
    loaded = load_settings(flags={"cluster_domain": args.cluster_domain}, environ=only)
    args.cluster_domain = loaded.settings.cluster_domain


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from servicelink import demo  # imported here: the demo pulls in the control-plane harness

        demo.main(argv[1:])
        return
    args = build_parser().parse_args(argv)
    if hasattr(args, "tool"):
        try:
            _read_cluster_domain(args, os.environ)
        except SettingsError as error:
            print(f"servicelink: {error}", file=sys.stderr)
            sys.exit(2)
        sys.exit(args.tool(args))
    try:
        loaded = load_settings(flags=_flags(args), environ=os.environ)
    except SettingsError as error:
        sys.exit(f"servicelink: {error}")
    handlers.run_operator(loaded, verbose=args.verbose)


if __name__ == "__main__":
    main()
