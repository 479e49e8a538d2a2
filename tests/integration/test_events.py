"""Events aggregate as client-go's recorder does: a repeat raises the count of the Event already written."""

from __future__ import annotations

from typing import Any

from objects import data, events, service, servicelink, set_port

from servicelink.testing.fixtures import Cluster, OperatorProcess, wait_for

LINK = {"key": "AUTH_SERVICE_URL", "service": "auth-service"}
UP = "AUTH_SERVICE_URL: http://auth-service:3001 -> http://auth-service:4001"
DOWN = "AUTH_SERVICE_URL: http://auth-service:4001 -> http://auth-service:3001"


def flap(cluster: Cluster, namespace: str, port: int) -> None:
    set_port(cluster, namespace, "auth-service", port)
    url = f"http://auth-service:{port}"
    wait_for(lambda: (data(cluster, namespace, "gateway-config") or {}).get("AUTH_SERVICE_URL") == url, what=url)


def value_changed(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    """The ValueChanged Events of the flapping port, by message (there must be one object per message)."""
    found: dict[str, dict[str, Any]] = {}
    for event in events(cluster, namespace, "ValueChanged"):
        if event["message"] in (UP, DOWN):
            assert event["message"] not in found, f"two Events for {event['message']!r}"
            found[event["message"]] = event
    return found


def counts(cluster: Cluster, namespace: str) -> dict[str, int]:
    return {message: event["count"] for message, event in value_changed(cluster, namespace).items()}


def test_a_flapping_service_raises_the_count_of_one_event_per_change(
    cluster: Cluster, namespace: str, operator_process: OperatorProcess
) -> None:
    cluster.apply([service("auth-service", namespace, 3001), servicelink("gateway", namespace, "gateway-config", LINK)])
    wait_for(lambda: data(cluster, namespace, "gateway-config") == {"AUTH_SERVICE_URL": "http://auth-service:3001"})

    for round_trip in (1, 2, 3):
        flap(cluster, namespace, 4001)
        flap(cluster, namespace, 3001)
        wait_for(
            lambda n=round_trip: counts(cluster, namespace) == {UP: n, DOWN: n},
            what=f"both Events counted {round_trip} times",
        )
    up = value_changed(cluster, namespace)[UP]
    assert up["involvedObject"]["name"] == "gateway"

    # What a user reads: the count beside the Event, listed and under the ServiceLink.
    def line(*args: str) -> str:
        return next(line for line in cluster.kubectl(*args, "-n", namespace).stdout.splitlines() if UP in line)

    assert line("get", "events", "-o", "custom-columns=COUNT:.count,MESSAGE:.message").split()[0] == "3"
    assert "(x3 over" in line("events")
    assert "(x3 over" in line("describe", "servicelink", "gateway")

    # An Event deleted meanwhile (by its TTL, say) is written anew, starting from one.
    cluster.kubectl("delete", "event", up["metadata"]["name"], "-n", namespace)
    flap(cluster, namespace, 4001)
    wait_for(lambda: counts(cluster, namespace).get(UP) == 1, what="a new Event for the change")
    assert value_changed(cluster, namespace)[UP]["metadata"]["name"] != up["metadata"]["name"]
