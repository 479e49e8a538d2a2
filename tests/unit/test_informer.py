"""What an informer lists and watches, and how soon it lists again a kind the API server does not serve."""

from __future__ import annotations

from servicelink.informer import UNSERVED_SECONDS, unserved_wait
from servicelink.kube import listed_source, shared_secrets_source, workload_source
from servicelink.model import WORKLOAD_RESOURCES


def test_a_source_is_the_path_of_its_list_and_watch_and_names_itself_in_logs() -> None:
    services = listed_source("Service", "shop")
    assert services.path == "/api/v1/namespaces/shop/services"
    assert str(services) == "services in shop"
    rollouts = workload_source(WORKLOAD_RESOURCES["Rollout"], None)
    assert rollouts.path == "/apis/argoproj.io/v1alpha1/rollouts"
    assert str(rollouts) == "rollouts.argoproj.io"
    secrets = shared_secrets_source("shop")
    assert secrets.selector == "servicelink.dev/shared=true"
    assert str(secrets) == "secrets in shop labelled servicelink.dev/shared=true"


def test_an_unserved_kind_is_listed_every_two_seconds_at_first_then_less_often_up_to_once_a_minute() -> None:
    every, patience, longest = UNSERVED_SECONDS
    assert unserved_wait(0.0) == unserved_wait(patience - 1) == every == 2.0
    assert unserved_wait(patience) == patience  # then the waits double
    assert unserved_wait(45.0) == 45.0
    assert unserved_wait(3600.0) == longest == 60.0
