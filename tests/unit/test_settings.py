"""settings.py and the flags of cli.py: one check for flags and variables, errors naming what was refused."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servicelink import cli
from servicelink.settings import OPTIONS, Settings, SettingsError, is_service_link, load_settings

EVERY_VARIABLE = {
    "SERVICELINK_NAMESPACES": "gallery, shop  billing",
    "SERVICELINK_IGNORE_NAMESPACES": "kube-system,shop",
    "SERVICELINK_NAMESPACE_SELECTOR": " team=payments,env!=dev ",
    "SERVICELINK_CLUSTER_DOMAIN": "corp.internal",
    "SERVICELINK_RESYNC_SECONDS": "60",
    "SERVICELINK_COALESCE_SECONDS": "0.2",
    "SERVICELINK_WORKERS": "4",
    "SERVICELINK_WATCH_INACTIVITY_SECONDS": "30",
    "SERVICELINK_LOG_FORMAT": "json",
    "SERVICELINK_METRICS_PORT": "0",
    "SERVICELINK_HEALTH_PORT": "8081",
    "SERVICELINK_LEADER_ELECT": "true",
    "SERVICELINK_LEASE_NAMESPACE": "servicelink-system",
    "SERVICELINK_ARGO_ROLLOUTS": "yes",
    "SERVICELINK_SECRETS": "1",
    "SERVICELINK_IGNORE_KINDS": "CronJob, DaemonSet CloneSet.apps.kruise.io",
    "SERVICELINK_WORKLOAD_MAPPINGS": "off",
    "SERVICELINK_ALERT_SECRET": "alert-hook",
    "SERVICELINK_ALERT_FORMAT": "slack",
    "SERVICELINK_MAX_ROLLOUTS_IN_FLIGHT": "10",
    "SERVICELINK_ROLLOUT_TIMEOUT_SECONDS": "900",
}
EVERY_SETTING = Settings(
    namespaces=("gallery", "shop", "billing"),
    ignore_namespaces=("kube-system", "shop"),
    namespace_selector="team=payments,env!=dev",
    cluster_domain="corp.internal",
    resync_seconds=60.0,
    coalesce_seconds=0.2,
    workers=4,
    watch_inactivity_seconds=30.0,
    log_format="json",
    metrics_port=0,
    health_port=8081,
    leader_elect=True,
    lease_namespace="servicelink-system",
    argo_rollouts=True,
    secrets=True,
    ignore_kinds=("CronJob", "DaemonSet", "CloneSet.apps.kruise.io"),
    workload_mappings=False,
    alert_secret="alert-hook",
    alert_format="slack",
    max_rollouts_in_flight=10,
    rollout_timeout_seconds=900.0,
)
# For each setting, values it refuses and what the message says is allowed.
REFUSED = {
    "namespaces": (["Gallery", "a_b", "-x"], "namespace name"),
    "ignore_namespaces": (["Kube-System", "a.b", "x,-y"], "namespace names"),
    "namespace_selector": (["=x", "team=a=b", "team in payments", "Team Payments", "a/b/c=x"], "a label selector"),
    "cluster_domain": (["corp..internal", "Corp.Internal", "a" * 254], "DNS domain"),
    "resync_seconds": (["0", "0.5", "-1", "abc", "5s", "nan", "inf", "86401"], "from 1 to 86400"),
    "coalesce_seconds": (["-0.1", "61", "nan", "x"], "from 0 to 60"),
    "workers": (["0", "-1", "257", "1.5", "inf", "many"], "from 1 to 256"),
    "watch_inactivity_seconds": (["0", "3601", "nan"], "from 1 to 3600"),
    "log_format": (["yaml", "JSON", ""], "one of text, json"),
    "metrics_port": (["-1", "65536", "80.5", "http", "nan"], "from 0 to 65535"),
    "health_port": (["-1", "70000", "inf"], "from 0 to 65535"),
    "leader_elect": (["maybe", "2"], "one of 1, true"),
    "lease_namespace": (["Kube_System", "a.b"], "namespace name"),
    "argo_rollouts": (["argo", "2"], "one of 1, true"),
    "secrets": (["all", "2"], "one of 1, true"),
    "ignore_kinds": (["Job", "deployment", "CloneSet", "Deployment,Pod"], "workload kinds"),
    "workload_mappings": (["mapped", "2"], "one of 1, true"),
    "alert_secret": (["Alert_Hook", "a..b", "x" * 254], "a Secret name"),
    "alert_format": (["teams", "Slack"], "one of webhook, slack"),
    "max_rollouts_in_flight": (["-1", "2.5", "many", "100001"], "from 0 to 100000"),
    "rollout_timeout_seconds": (["0", "86401", "nan"], "from 1 to 86400"),
}
CASES = [(field, raw, allowed) for field, (values, allowed) in REFUSED.items() for raw in values]
ENV_CASES = [case for case in CASES if case[1] != ""]  # an empty variable means unset
FLAG_CASES = [case for case in CASES if case[0] not in cli._SWITCHES]  # --leader-elect takes no value


def option(field: str) -> tuple[str, str]:
    (found,) = (o for o in OPTIONS if o.field == field)
    return found.flag, found.env


def test_every_setting_has_one_option_and_a_refused_value() -> None:
    assert [o.field for o in OPTIONS] == [f.name for f in dataclasses.fields(Settings)]
    assert REFUSED.keys() == {f.name for f in dataclasses.fields(Settings)}
    assert EVERY_VARIABLE.keys() == {o.env for o in OPTIONS}


def test_run_help_names_every_variable_and_range(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for o in OPTIONS:
        assert o.flag in text
        assert o.env in text
        assert " ".join(o.rule.allowed.split()) in text


@pytest.mark.parametrize("command", ["", "run", "render", "graph", "doctor", "adopt"])
def test_help_is_plain_text(capsys: pytest.CaptureFixture[str], command: str) -> None:
    """--help prints words, not the reStructuredText of docstrings."""
    with pytest.raises(SystemExit):
        cli.main([*command.split(), "--help"])
    assert "``" not in capsys.readouterr().out


def test_empty_environment_gives_the_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.namespaces == ()
    assert settings.cluster_domain == "cluster.local"
    assert settings.log_format == "text"


def test_every_variable_is_read() -> None:
    assert Settings.from_env(EVERY_VARIABLE) == EVERY_SETTING


def test_every_flag_is_read_and_wins_over_its_variable() -> None:
    argv = [
        "run",
        *("-n", "gallery", "--namespace", "shop", "-n", "billing", "--ignore-namespaces", "kube-system,shop"),
        *("--namespace-selector", "team=payments,env!=dev"),
        *("--cluster-domain", "corp.internal", "--resync-seconds", "60", "--coalesce-seconds", "0.2"),
        *("--workers", "4", "--watch-inactivity-seconds", "30", "--log-format", "json"),
        *("--metrics-port", "0", "--health-port", "8081", "--leader-elect", "--lease-namespace", "servicelink-system"),
        "--argo-rollouts",
        "--secrets",
        *("--ignore-kinds", "CronJob,DaemonSet,CloneSet.apps.kruise.io"),
        "--no-workload-mappings",
        *("--alert-secret", "alert-hook", "--alert-format", "slack"),
        *("--max-rollouts-in-flight", "10", "--rollout-timeout-seconds", "900"),
    ]
    flags = cli._flags(cli.build_parser().parse_args(argv))
    environ = {env: "junk" for _, env in map(option, REFUSED)}
    assert load_settings(flags=flags, environ=environ).settings == EVERY_SETTING


def test_a_flag_left_out_falls_back_to_its_variable_then_the_default() -> None:
    flags = cli._flags(cli.build_parser().parse_args(["run", "--workers", "3", "--no-leader-elect"]))
    loaded = load_settings(flags=flags, environ={"SERVICELINK_RESYNC_SECONDS": "60", "SERVICELINK_LEADER_ELECT": "1"})
    assert loaded.settings == Settings(workers=3, resync_seconds=60.0)


def test_empty_variable_keeps_the_default() -> None:
    assert Settings.from_env({env: "" for env in EVERY_VARIABLE}) == Settings()


def test_the_lease_follows_the_pod_namespace_unless_set() -> None:
    assert Settings.from_env({"POD_NAMESPACE": "servicelink-system"}).lease_namespace == "servicelink-system"
    environ = {"POD_NAMESPACE": "servicelink-system", "SERVICELINK_LEASE_NAMESPACE": "leases"}
    assert Settings.from_env(environ).lease_namespace == "leases"


def test_argo_rollouts_add_the_rollout_kind_to_the_core_ones() -> None:
    assert "Rollout" not in Settings().workload_kinds
    assert Settings(argo_rollouts=True).workload_kinds == (*Settings().workload_kinds, "Rollout")
    flags = cli._flags(cli.build_parser().parse_args(["run", "--no-argo-rollouts"]))
    assert not load_settings(flags=flags, environ={"SERVICELINK_ARGO_ROLLOUTS": "true"}).settings.argo_rollouts


def test_cluster_scope_is_read_unless_namespaces_are_named_and_workload_mappings_are_off() -> None:
    """The chart's rbac.namespaced grants nothing cluster-wide: the operator must then read nothing cluster-scoped."""
    assert Settings().reads_cluster_scope
    assert Settings(workload_mappings=False).reads_cluster_scope  # every namespace
    assert Settings(namespaces=("gallery",)).reads_cluster_scope  # the WorkloadMappings
    assert not Settings(namespaces=("gallery",), workload_mappings=False).reads_cluster_scope


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().workers = 2  # type: ignore[misc]


@pytest.mark.parametrize(("field", "raw", "allowed"), ENV_CASES)
def test_a_refused_variable_is_named_with_its_value_and_the_range(field: str, raw: str, allowed: str) -> None:
    _, env = option(field)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({env: raw})
    assert str(refused.value).startswith(f"{env}={raw!r}: must be ")
    assert allowed in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("field", "raw", "allowed"), FLAG_CASES)
def test_a_refused_flag_stops_run_with_one_line(field: str, raw: str, allowed: str) -> None:
    flag, _ = option(field)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["run", f"{flag}={raw}"])  # "=": a value may start with "-"
    message = str(stopped.value.code)
    assert message.startswith(f"servicelink: {flag} {raw}: must be ")
    assert allowed in message


def test_servicelink_run_refuses_a_zero_resync_before_it_starts() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("servicelink")), "run", "--resync-seconds", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "SERVICELINK_WORKERS": "4"},
    )
    assert done.returncode == 1
    assert done.stderr == "servicelink: --resync-seconds 0: must be a number of seconds from 1 to 86400\n"


def _kubelet_variables(service: str, ip: str, ports: list[tuple[str | None, int, str]]) -> dict[str, str]:
    """What the kubelet injects for one Service (pkg/kubelet/envvars): host, ports, Docker links."""
    prefix = service.upper().replace("-", "_")
    name, first, protocol = ports[0]
    host = f"[{ip}]" if ":" in ip else ip
    variables = {
        f"{prefix}_SERVICE_HOST": ip,
        f"{prefix}_SERVICE_PORT": str(first),
        f"{prefix}_PORT": f"{protocol.lower()}://{host}:{first}",
    }
    for name, port, protocol in ports:
        if name:
            variables[f"{prefix}_SERVICE_PORT_{name.upper().replace('-', '_')}"] = str(port)
        link = f"{prefix}_PORT_{port}_{protocol}"
        variables[link] = f"{protocol.lower()}://{host}:{port}"
        variables[f"{link}_PROTO"] = protocol.lower()
        variables[f"{link}_PORT"] = str(port)
        variables[f"{link}_ADDR"] = ip
    return variables


_label = st.from_regex(r"[a-z]([-a-z0-9]{0,40}[a-z0-9])?", fullmatch=True)
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_port = st.tuples(st.none() | _label, st.integers(1, 65535), st.sampled_from(["TCP", "UDP", "SCTP"]))
_service = st.just("servicelink") | _label.map(lambda s: f"servicelink-{s}")


@given(
    services=st.lists(
        st.tuples(_service, _ipv4 | _ipv6, st.lists(_port, min_size=1, max_size=4)),
        min_size=1,
        max_size=4,
    )
)
def test_the_kubelet_variables_of_any_servicelink_service_leave_the_defaults(
    services: list[tuple[str, str, list[tuple[str | None, int, str]]]],
) -> None:
    environ: dict[str, str] = {}
    for service, ip, ports in services:
        environ |= _kubelet_variables(service, ip, ports)
    loaded = load_settings(flags={}, environ=environ)
    assert loaded.settings == Settings()
    assert all(name.split("=")[0] in environ for name in loaded.ignored)


def test_the_shipped_metrics_service_link_is_ignored_and_reported() -> None:
    environ = _kubelet_variables("servicelink-metrics", "10.96.86.203", [("metrics", 9090, "TCP")])
    environ |= _kubelet_variables("servicelink-health", "10.96.0.7", [(None, 8080, "TCP")])
    loaded = load_settings(flags={}, environ={**environ, "SERVICELINK_WORKERS": "4"})
    assert loaded.settings == Settings(workers=4)
    assert loaded.ignored == (
        "SERVICELINK_METRICS_PORT=tcp://10.96.86.203:9090",
        "SERVICELINK_HEALTH_PORT=tcp://10.96.0.7:8080",
    )


def test_a_user_setting_next_to_a_service_link_is_still_read() -> None:
    assert is_service_link("tcp://[fd00::1]:9090")
    assert not is_service_link("9090")
    assert Settings.from_env({"SERVICELINK_METRICS_PORT": "9091"}).metrics_port == 9091


def test_a_namespace_is_served_when_listed_if_a_list_is_given_and_never_when_ignored() -> None:
    everywhere = Settings(ignore_namespaces=("kube-system",))
    assert everywhere.serves("shop")
    assert not everywhere.serves("kube-system")
    listed = Settings(namespaces=("shop", "kube-system"), ignore_namespaces=("kube-system",))
    assert listed.serves("shop")
    assert not listed.serves("gallery")
    assert not listed.serves("kube-system")  # the ignore list wins over the list
    assert Settings().serves("kube-system")
