"""The operator's settings: one frozen object, read and checked from flags or the environment (pure).

Flags and ``SERVICELINK_*`` variables pass through the same parsers here, so a
value is refused the same way whichever way it came, with one line naming the
flag or variable, the value, and what is allowed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from servicelink.model import CORE_WORKLOAD_KINDS, WORKLOAD_KIND, WorkloadKind
from servicelink.scope import Selector, parse_selector

LogFormat = Literal["text", "json"]
AlertFormat = Literal["webhook", "slack"]  # a JSON body of our own, or Slack's incoming-webhook body

# The kubelet gives every container Docker-link variables for each Service of its
# namespace: <SVC>_PORT=tcp://10.96.86.203:9090 for the Service servicelink-metrics
# reads as SERVICELINK_METRICS_PORT. Such a value is never the user's setting.
_SERVICE_LINK = re.compile(r"(tcp|udp|sctp)://(\[[0-9A-Fa-f:.]+\]|[0-9.]+):[0-9]+")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    """Everything a user can tune; defaults suit a cluster of a few thousand Services."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    # Never read, reconciled or written, even when listed in namespaces: the ignore list wins.
    ignore_namespaces: tuple[str, ...] = ()
    # Empty: every namespace. Else only the namespaces whose labels match are served, followed as they change.
    namespace_selector: str = ""
    cluster_domain: str = "cluster.local"
    resync_seconds: float = 300.0  # repairs drift such as a hand-edited key
    coalesce_seconds: float = 0.3  # triggers closer together than this reconcile once (one kubectl apply)
    # ServiceLinks reconciled at once. Each mostly waits on the API server (4 calls in a
    # row for a new one). Benchmark, 1,000 new ServiceLinks on 2 cores: cold start 38.5 s
    # with 8, 30.5 s with 24 (peak RSS 196 MB); 16 with the rest of today's code, 26.5 s.
    workers: int = 16
    watch_inactivity_seconds: float = 70.0  # a watch silent this long is reopened (bookmarks come every minute)
    log_format: LogFormat = "text"
    metrics_port: int = 9090  # 0 turns the Prometheus endpoint off
    health_port: int = 8080  # 0 turns the liveness endpoint off
    leader_elect: bool = False  # replicas share a Lease; only its holder reconciles
    lease_namespace: str = "default"  # where the Lease lives (the operator's own namespace)
    # Off by default: the CRD may not exist, and the default install grants no RBAC on argoproj.io.
    argo_rollouts: bool = False
    # Off by default: reading Secrets is a grant the default install does not make (the chart's secrets.enabled).
    secrets: bool = False
    # Workloads of these kinds are still watched (status.skipped names them) but never rolled.
    ignore_kinds: tuple[WorkloadKind, ...] = ()
    # Off where WorkloadMappings may not be read: they are cluster-scoped, and the chart's rbac.namespaced grants
    # nothing cluster-wide. Only the built-in kinds are followed then.
    workload_mappings: bool = True
    # Empty: no alert is sent. Else the Secret (in the operator's namespace, lease_namespace) whose key "url" holds
    # the receiver's URL: a URL with a token in it is a credential, so it is neither a flag nor a chart value.
    alert_secret: str = ""
    alert_format: AlertFormat = "webhook"
    # 0: no cap. Else at most this many rollouts servicelink started are in flight at once, cluster-wide; the
    # rest wait their turn (WaitingForRolloutSlot), so a Service read by 500 workloads does not restart them all.
    max_rollouts_in_flight: int = 0
    # A rollout in flight this long frees its slot even if it neither completed nor stalled: a StatefulSet or
    # DaemonSet has no progress deadline. 600 s is a Deployment's default progressDeadlineSeconds.
    rollout_timeout_seconds: float = 600.0

    def serves(self, namespace: str) -> bool:
        """Whether the operator reads and reconciles what ``namespace`` holds: it is in ``namespaces`` (when
        they are given) and not in ``ignore_namespaces``."""
        return namespace not in self.ignore_namespaces and (not self.namespaces or namespace in self.namespaces)

    @functools.cached_property
    def selector(self) -> Selector:
        """``namespace_selector`` parsed; empty: no namespace's labels are read."""
        return parse_selector(self.namespace_selector)

    @property
    def reads_cluster_scope(self) -> bool:
        """Whether the operator reads anything cluster-scoped: every namespace, the WorkloadMappings, or the
        namespaces' labels."""
        return not self.namespaces or self.workload_mappings or bool(self.namespace_selector)

    @property
    def workload_kinds(self) -> tuple[WorkloadKind, ...]:
        """The workload kinds the operator lists, watches and patches: the core ones, and those enabled."""
        return (*CORE_WORKLOAD_KINDS, "Rollout") if self.argo_rollouts else CORE_WORKLOAD_KINDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read ``SERVICELINK_*`` variables; an absent variable keeps the default.

        Raises ``SettingsError`` naming the variable when a value is refused.
        """
        return load_settings(flags={}, environ=environ).settings


class SettingsError(ValueError):
    """A flag or variable holds a value outside what its setting allows; the message says all three."""


@dataclass(frozen=True)
class Rule:
    """What a setting allows, in words for its error and its ``--help``, and the parser that holds to it."""

    allowed: str
    parse: Callable[[str], Any]  # raises ValueError on a value outside ``allowed``


def _seconds(low: float, high: float) -> Rule:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:  # also refuses nan
            raise ValueError(raw)
        return value

    return Rule(f"a number of seconds from {low:g} to {high:g}", parse)


def _integer(low: int, high: int, unit: str) -> Rule:
    def parse(raw: str) -> int:
        if not re.fullmatch(r"[0-9]+", raw.strip()) or not low <= int(raw) <= high:
            raise ValueError(raw)
        return int(raw)

    return Rule(f"{unit} from {low} to {high}", parse)


def _choice(*allowed: str) -> Rule:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(raw)
        return raw

    return Rule(f"one of {', '.join(allowed)}", parse)


def _boolean(raw: str) -> bool:
    if raw.lower() not in _TRUE + _FALSE:
        raise ValueError(raw)
    return raw.lower() in _TRUE


def _namespace(raw: str) -> str:
    if not _DNS_LABEL.fullmatch(raw):
        raise ValueError(raw)
    return raw


def _namespaces(raw: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_namespace(name) for name in raw.replace(",", " ").split()))


def _selector(raw: str) -> str:
    parse_selector(raw)
    return raw.strip()


def _kinds(raw: str) -> tuple[WorkloadKind, ...]:
    kinds = tuple(dict.fromkeys(raw.replace(",", " ").split()))
    if not all(WORKLOAD_KIND.fullmatch(kind) for kind in kinds):
        raise ValueError(raw)
    return kinds


def _secret_name(raw: str) -> str:
    if len(raw) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in raw.split(".")):
        raise ValueError(raw)
    return raw


def _domain(raw: str) -> str:
    if len(raw) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in raw.split(".")):
        raise ValueError(raw)
    return raw


@dataclass(frozen=True)
class Option:
    """One setting as users write it: its flag, its variable, what it allows and what it does."""

    field: str
    flag: str
    rule: Rule
    help: str
    default_text: str = ""  # the default in words, where the value alone would mislead

    def describe_default(self) -> str:
        """The default as ``--help`` and docs/reference/settings.md give it: ``300``, ``0.3``, ``all namespaces``."""
        if self.default_text:
            return self.default_text
        default = getattr(Settings(), self.field)
        return f"{default:g}" if isinstance(default, float) else str(default)

    @property
    def env(self) -> str:
        """The environment variable that sets it: ``--resync-seconds`` reads ``SERVICELINK_RESYNC_SECONDS``."""
        return "SERVICELINK_" + self.field.upper()


# Every setting, with its allowed range. The lower bounds keep the operator from
# hammering the API server: a resync relists the whole cluster, a watch reopen
# relists a kind, and a zero would do either back to back.
OPTIONS: tuple[Option, ...] = (
    Option(
        "namespaces",
        "--namespace",
        Rule(
            "namespace names: up to 63 of a-z, 0-9 and '-' each, starting and ending alphanumeric",
            lambda raw: tuple(_namespace(name) for name in raw.replace(",", " ").split()),
        ),
        "watch this namespace (repeatable; comma-separated in the variable)",
        default_text="all namespaces",
    ),
    Option(
        "ignore_namespaces",
        "--ignore-namespaces",
        Rule(
            "namespace names, comma-separated: up to 63 of a-z, 0-9 and '-' each, starting and ending alphanumeric",
            _namespaces,
        ),
        "never read, reconcile or write anything in these namespaces, even those --namespace names; their"
        " ServiceLinks are left as they are, status included",
        default_text="none",
    ),
    Option(
        "namespace_selector",
        "--namespace-selector",
        Rule(
            "a label selector as kubectl -l takes it: key=value, key!=value, key in (a,b), key notin (a,b), key and"
            " !key, comma-separated",
            _selector,
        ),
        "serve only the namespaces whose labels match, followed as labels change (a namespace must also be in"
        " --namespace if given, and not ignored); needs list and watch on namespaces",
        default_text="every namespace",
    ),
    Option(
        "cluster_domain",
        "--cluster-domain",
        Rule("a DNS domain such as cluster.local: dot-separated labels of a-z, 0-9 and '-'", _domain),
        "the cluster's DNS domain, for cross-namespace FQDNs",
    ),
    Option(
        "resync_seconds", "--resync-seconds", _seconds(1, 86400), "reconcile everything this often, repairing drift"
    ),
    Option(
        "coalesce_seconds",
        "--coalesce-seconds",
        _seconds(0, 60),
        "changes to one ServiceLink closer together than this reconcile once",
    ),
    Option("workers", "--workers", _integer(1, 256, "a whole number"), "ServiceLinks reconciled at once"),
    Option(
        "watch_inactivity_seconds",
        "--watch-inactivity-seconds",
        _seconds(1, 3600),
        "reopen a watch that delivered nothing, not even a bookmark, for this long",
    ),
    Option("log_format", "--log-format", _choice("text", "json"), "log format"),
    Option(
        "metrics_port",
        "--metrics-port",
        _integer(0, 65535, "a port number (0: off)"),
        "serve Prometheus /metrics here",
    ),
    Option(
        "health_port",
        "--health-port",
        _integer(0, 65535, "a port number (0: off)"),
        "serve the liveness endpoint /healthz here",
    ),
    Option(
        "leader_elect",
        "--leader-elect",
        Rule(f"one of {', '.join(_TRUE + _FALSE)}", _boolean),
        "run several replicas: they share a Lease and only its holder reconciles",
        default_text="off",
    ),
    Option(
        "lease_namespace",
        "--lease-namespace",
        Rule("a namespace name: up to 63 of a-z, 0-9 and '-', starting and ending alphanumeric", _namespace),
        "namespace of the Lease",
        default_text="$POD_NAMESPACE, else default",
    ),
    Option(
        "argo_rollouts",
        "--argo-rollouts",
        Rule(f"one of {', '.join(_TRUE + _FALSE)}", _boolean),
        "watch and roll Argo Rollouts (argoproj.io/v1alpha1); needs RBAC on rollouts"
        " (the chart's argoRollouts.enabled)",
        default_text="off",
    ),
    Option(
        "secrets",
        "--secrets",
        Rule(f"one of {', '.join(_TRUE + _FALSE)}", _boolean),
        "read the Secrets labelled servicelink.dev/shared=true for links[].credentials, and write spec.secretName;"
        " needs RBAC on secrets (the chart's secrets.enabled)",
        default_text="off",
    ),
    Option(
        "ignore_kinds",
        "--ignore-kinds",
        Rule(
            "workload kinds, comma-separated: Deployment, StatefulSet, DaemonSet, CronJob, Rollout, or a mapped"
            " kind as Kind.group (CloneSet.apps.kruise.io)",
            _kinds,
        ),
        "never roll workloads of these kinds; each ServiceLink lists them in status.skipped (KindIgnored)",
        default_text="none",
    ),
    Option(
        "workload_mappings",
        "--workload-mappings",
        Rule(f"one of {', '.join(_TRUE + _FALSE)}", _boolean),
        "follow the kinds WorkloadMappings map; off, no WorkloadMapping is read and only the built-in kinds are"
        " followed (the chart's rbac.namespaced turns it off)",
        default_text="on",
    ),
    Option(
        "alert_secret",
        "--alert-secret",
        Rule("a Secret name: dot-separated labels of a-z, 0-9 and '-', up to 253 characters", _secret_name),
        "send alerts (ValueChanged, RolloutStalled, StaleJobs, a ServiceLink no longer Ready) to the URL in the key"
        " url of this Secret, in the operator's namespace ($POD_NAMESPACE); needs RBAC to get it (the chart's"
        " alerts.secretName)",
        default_text="none: no alerts",
    ),
    Option(
        "alert_format",
        "--alert-format",
        _choice("webhook", "slack"),
        "the body alerts are POSTed in: webhook (servicelink's JSON) or slack (a Slack incoming webhook)",
    ),
    Option(
        "max_rollouts_in_flight",
        "--max-rollouts-in-flight",
        _integer(0, 100000, "a whole number (0: no cap)"),
        "at most this many rollouts servicelink started run at once, cluster-wide; a due rollout waits for a slot"
        " (RolledOut False, WaitingForRolloutSlot) and goes when one completes, stalls or times out",
        default_text="0: no cap",
    ),
    Option(
        "rollout_timeout_seconds",
        "--rollout-timeout-seconds",
        _seconds(1, 86400),
        "with --max-rollouts-in-flight: a rollout neither complete nor stalled after this long frees its slot",
    ),
)


def is_service_link(value: str) -> bool:
    """Whether ``value`` has the form of a kubelet service-link variable (``tcp://10.96.0.1:443``)."""
    return _SERVICE_LINK.fullmatch(value) is not None


@dataclass(frozen=True)
class Loaded:
    """Settings as read, and the variables passed over because the kubelet set them, not the user."""

    settings: Settings
    ignored: tuple[str, ...]


def load_settings(*, flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Loaded:
    """Return the settings from ``flags`` (by field name; None: not given), else ``environ``, else defaults.

    An empty variable, or one holding a kubelet service link, counts as unset.
    The lease namespace falls back to ``POD_NAMESPACE``. Raises ``SettingsError``
    with one line naming the flag or variable, the value and what is allowed.
    """
    values: dict[str, Any] = {}
    ignored: list[str] = []
    for option in OPTIONS:
        flag, variable = flags.get(option.field), environ.get(option.env, "")
        if flag is not None:
            source, raw = f"{option.flag} {flag}", flag
        elif variable and is_service_link(variable):
            ignored.append(f"{option.env}={variable}")
            continue
        elif variable:
            source, raw = f"{option.env}={variable!r}", variable
        else:
            continue
        try:
            values[option.field] = option.rule.parse(raw)
        except ValueError:
            raise SettingsError(f"{source}: must be {option.rule.allowed}") from None
    if "lease_namespace" not in values and environ.get("POD_NAMESPACE"):
        values["lease_namespace"] = environ["POD_NAMESPACE"]
    return Loaded(Settings(**values), tuple(ignored))
