"""The two kopf internals handlers.py relies on to watch an optional kind whose CRD appears later."""

from __future__ import annotations

import asyncio
import inspect

import kopf
from kopf._cogs.structs.references import Insights, Resource

from servicelink import handlers
from servicelink.model import WORKLOAD_RESOURCES

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
    assert not handlers.is_watched(insights, WORKLOAD_RESOURCES["Rollout"])
    insights.watched_resources.add(ROLLOUTS)
    assert handlers.is_watched(insights, WORKLOAD_RESOURCES["Rollout"])
