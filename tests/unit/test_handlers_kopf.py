"""The two kopf internals handlers.py relies on to watch an optional kind whose CRD appears later."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import kopf
import pytest
from kopf._cogs.structs.references import Insights, Resource

from servicelink import handlers

ROLLOUTS = Resource("argoproj.io", "v1alpha1", "rollouts", kind="Rollout", namespaced=True)


def test_kopf_still_takes_insights_and_rescans_a_group_from_a_crd_event() -> None:
    assert "insights" in inspect.signature(kopf.run).parameters
    rescan = inspect.signature(handlers.process_discovered_resource_event).parameters
    assert {"raw_event", "settings", "registry", "insights"} <= set(rescan)
    assert {"groups", "settings", "logger"} <= set(inspect.signature(handlers.scan_resources).parameters)
    insights = Insights()
    assert isinstance(insights.watched_resources, set)
    assert isinstance(insights.ready_resources, asyncio.Event)


def test_a_kind_is_watched_when_kopf_serves_its_group_version_and_plural() -> None:
    insights = Insights()
    assert not handlers.is_watched(insights, "Rollout")
    insights.watched_resources.add(ROLLOUTS)
    assert handlers.is_watched(insights, "Rollout")


def test_an_unwatched_optional_kind_is_rescanned_until_served_then_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    insights = Insights()
    scans: list[set[str]] = []
    rescans: list[str] = []

    async def scan(*, groups: set[str], **_: Any) -> set[Resource]:
        scans.append(groups)
        return {ROLLOUTS} if len(scans) >= 3 else set()  # the API server lists the resource on the third look

    async def rescan(*, raw_event: Any, insights: Insights, **_: Any) -> None:
        rescans.append(raw_event["object"]["spec"]["group"])
        insights.watched_resources.add(ROLLOUTS)

    monkeypatch.setattr(handlers, "scan_resources", scan)
    monkeypatch.setattr(handlers, "process_discovered_resource_event", rescan)
    monkeypatch.setattr(handlers, "DISCOVERY_SECONDS", 0.0)

    async def run() -> None:
        insights.ready_resources.set()
        follow = asyncio.create_task(
            handlers.follow_optional_kinds(("Rollout",), insights=insights, settings=kopf.OperatorSettings())
        )
        for _ in range(20):
            await asyncio.sleep(0)
        follow.cancel()

    with caplog.at_level(logging.INFO, logger=handlers.log.name):
        asyncio.run(run())
    assert scans == [{"argoproj.io"}] * 3  # then watched: no more reads
    assert rescans == ["argoproj.io"]  # kopf rescans only once the resource is served
    assert [r.message for r in caplog.records] == ["Rollout is now served: watching it"]
