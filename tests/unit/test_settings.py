"""settings.py: SERVICELINK_* variables, their defaults, and errors that name the variable."""

from __future__ import annotations

import dataclasses

import pytest

from servicelink.settings import Settings


def test_empty_environment_gives_the_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.namespaces == ()
    assert settings.cluster_domain == "cluster.local"
    assert settings.log_format == "text"
    assert settings.workers >= 1


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "SERVICELINK_NAMESPACES": "gallery, shop  billing",
            "SERVICELINK_CLUSTER_DOMAIN": "corp.internal",
            "SERVICELINK_RESYNC_SECONDS": "60",
            "SERVICELINK_COALESCE_SECONDS": "0.2",
            "SERVICELINK_WORKERS": "4",
            "SERVICELINK_LOG_FORMAT": "json",
            "SERVICELINK_METRICS_PORT": "0",
            "SERVICELINK_HEALTH_PORT": "8081",
            "SERVICELINK_LEADER_ELECT": "true",
            "SERVICELINK_LEASE_NAMESPACE": "servicelink-system",
        }
    )
    assert settings == Settings(
        namespaces=("gallery", "shop", "billing"),
        cluster_domain="corp.internal",
        resync_seconds=60.0,
        coalesce_seconds=0.2,
        workers=4,
        log_format="json",
        metrics_port=0,
        health_port=8081,
        leader_elect=True,
        lease_namespace="servicelink-system",
    )


def test_empty_number_keeps_the_default() -> None:
    assert Settings.from_env({"SERVICELINK_WORKERS": "", "SERVICELINK_RESYNC_SECONDS": ""}) == Settings()


def test_leader_election_is_off_by_default_and_the_lease_follows_the_pod_namespace() -> None:
    assert Settings.from_env({}).leader_elect is False
    assert Settings.from_env({"POD_NAMESPACE": "servicelink-system"}).lease_namespace == "servicelink-system"


def test_zero_workers_become_one() -> None:
    assert Settings.from_env({"SERVICELINK_WORKERS": "0"}).workers == 1


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().workers = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "name",
    [
        "SERVICELINK_RESYNC_SECONDS",
        "SERVICELINK_COALESCE_SECONDS",
        "SERVICELINK_WORKERS",
        "SERVICELINK_METRICS_PORT",
        "SERVICELINK_HEALTH_PORT",
    ],
)
@pytest.mark.parametrize("raw", ["abc", "-1", "5s"])
def test_bad_number_is_an_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: raw})


def test_bad_log_format_is_an_error_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="SERVICELINK_LOG_FORMAT"):
        Settings.from_env({"SERVICELINK_LOG_FORMAT": "yaml"})


@pytest.mark.parametrize("raw", ["inf", "nan"])
@pytest.mark.parametrize("name", ["SERVICELINK_WORKERS", "SERVICELINK_METRICS_PORT"])
def test_non_finite_integer_setting_is_an_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: raw})


@pytest.mark.parametrize("name", ["SERVICELINK_COALESCE_SECONDS", "SERVICELINK_RESYNC_SECONDS"])
def test_nan_seconds_is_an_error_naming_the_variable(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: "nan"})


@pytest.mark.parametrize("name", ["SERVICELINK_METRICS_PORT", "SERVICELINK_HEALTH_PORT"])
def test_port_above_65535_is_an_error_naming_the_variable(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: "70000"})
