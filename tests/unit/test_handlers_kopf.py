"""How handlers.py watches kinds served after start: the kopf internals (on the pinned minor), how often it looks."""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import tomllib
from pathlib import Path

import kopf
from kopf._cogs.structs.references import Insights, Resource
from packaging.requirements import Requirement
from packaging.version import Version

from servicelink import handlers
from servicelink.model import WORKLOAD_RESOURCES

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
ROLLOUTS = Resource("argoproj.io", "v1alpha1", "rollouts", kind="Rollout", namespaced=True)


def test_the_installed_kopf_is_the_one_minor_pyproject_allows() -> None:
    """The internals below are checked on one kopf minor, so taking another is a deliberate change of the pin."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pin = next(r for r in map(Requirement, dependencies) if r.name == "kopf").specifier
    installed = Version(importlib.metadata.version("kopf"))
    assert installed in pin
    assert Version(f"{installed.major}.{installed.minor + 1}.0") not in pin
    assert Version(f"{installed.major}.{installed.minor - 1}.999") not in pin


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


def test_an_unserved_kind_is_looked_up_every_round_at_first_then_less_often_up_to_once_a_minute() -> None:
    assert handlers.next_lookup(0.0) == handlers.next_lookup(29.0) == 0.0  # every DISCOVERY_SECONDS
    assert handlers.next_lookup(30.0) == 30.0  # then the waits double
    assert handlers.next_lookup(45.0) == 45.0
    assert handlers.next_lookup(3600.0) == handlers.DISCOVERY_MAX_SECONDS == 60.0
