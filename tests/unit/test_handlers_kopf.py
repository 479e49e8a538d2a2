"""What servicelink asks of kopf: the pinned minor, two watches, and public names only."""

from __future__ import annotations

import ast
import importlib.metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from servicelink import handlers
from servicelink.model import GROUP, MAPPING_PLURAL, PLURAL

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
