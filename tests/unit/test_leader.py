"""Who holds the Lease: acquire, renew, wait, take over a lapsed one."""

from __future__ import annotations

import datetime

from servicelink.leader import decide

NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.UTC)


def lease(holder: str, renewed: datetime.datetime, transitions: int = 0) -> dict[str, object]:
    return {
        "metadata": {"name": "servicelink", "namespace": "ops", "resourceVersion": "7"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "leaseTransitions": transitions,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }


def test_no_lease_is_created_and_held() -> None:
    decision = decide(None, identity="a", namespace="ops", now=NOW, duration=15)
    assert decision.action == "create"
    assert decision.leading
    assert decision.body is not None
    assert decision.body["spec"]["holderIdentity"] == "a"


def test_the_holder_renews_its_lease_guarded_by_its_resource_version() -> None:
    decision = decide(
        lease("a", NOW - datetime.timedelta(seconds=5)), identity="a", namespace="ops", now=NOW, duration=15
    )
    assert decision.action == "replace"
    assert decision.leading
    assert decision.body is not None
    assert decision.body["metadata"]["resourceVersion"] == "7"
    assert decision.body["spec"]["leaseTransitions"] == 0


def test_another_replica_waits_while_the_lease_is_fresh() -> None:
    decision = decide(
        lease("a", NOW - datetime.timedelta(seconds=14)), identity="b", namespace="ops", now=NOW, duration=15
    )
    assert decision.action == "none"
    assert not decision.leading


def test_another_replica_takes_over_a_lapsed_lease() -> None:
    decision = decide(
        lease("a", NOW - datetime.timedelta(seconds=16), transitions=2),
        identity="b",
        namespace="ops",
        now=NOW,
        duration=15,
    )
    assert decision.action == "replace"
    assert decision.leading
    assert decision.body is not None
    assert decision.body["spec"]["holderIdentity"] == "b"
    assert decision.body["spec"]["leaseTransitions"] == 3
