"""What servicelink asks of kopf: the pinned minor, two watches, and public names only."""

from __future__ import annotations

import ast
import importlib.metadata
import tomllib
from pathlib import Path

import kopf
from packaging.requirements import Requirement
from packaging.version import Version

from servicelink import handlers
from servicelink.model import GROUP, MAPPING_PLURAL, PLURAL
from servicelink.settings import Settings

PACKAGE = Path(handlers.__file__).parent
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_installed_kopf_is_the_one_minor_pyproject_allows() -> None:
    """The operator is tested on one kopf minor, so taking another is a deliberate change of the pin."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pin = next(r for r in map(Requirement, dependencies) if r.name == "kopf").specifier
    installed = Version(importlib.metadata.version("kopf"))
    assert installed in pin
    assert Version(f"{installed.major}.{installed.minor + 1}.0") not in pin
    assert Version(f"{installed.major}.{installed.minor - 1}.999") not in pin


def test_no_module_imports_a_private_kopf_module() -> None:
    private = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            private += [f"{path.name}: {name}" for name in names if name.startswith("kopf._")]
    assert private == []


def test_kopf_watches_only_servicelinks_and_workloadmappings() -> None:
    """Every kind the operator only reads is kept by its own informers (informer.py), not by kopf."""
    watched = {(h.selector.group, h.selector.any_name) for h in handlers.REGISTRY._watching.get_all_handlers()}
    assert watched == {(GROUP, PLURAL), (GROUP, MAPPING_PLURAL)}


def test_with_workload_mappings_off_kopf_watches_only_servicelinks() -> None:
    """kopf would watch the cluster-scoped WorkloadMappings cluster-wide, even for an operator of named namespaces."""
    registry = handlers.register(kopf.OperatorRegistry(), Settings(workload_mappings=False))
    watched = {(h.selector.group, h.selector.any_name) for h in registry._watching.get_all_handlers()}
    assert watched == {(GROUP, PLURAL)}
    activities = {h.id for h in registry._activities.get_all_handlers()}
    assert activities == {"start", "api", "stop"}


def test_kopf_scans_the_cluster_only_where_the_operator_reads_cluster_scope() -> None:
    """Named namespaces and no WorkloadMappings (the chart's rbac.namespaced): kopf lists no namespace and watches
    no CRD, reads that need a ClusterRole, and takes the namespaces as the exact names they are."""
    for config, disabled in (
        (Settings(), False),
        (Settings(namespaces=("gallery",)), False),
        (Settings(namespaces=("gallery",), workload_mappings=False), True),
    ):
        settings = kopf.OperatorSettings()
        handlers.configure_kopf(settings, config)
        assert settings.scanning.disabled is disabled
