"""The layer rule of STYLE.md: the kubernetes client only in kube.py, kopf only in handlers.py, pure modules pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "servicelink"
PURE = [
    "cache",
    "views",
    "model",
    "resolve",
    "render",
    "messages",
    "rollout",
    "consent",
    "conditions",
    "status",
    "settings",
    "workqueue",
    "tools/offline",
    "tools/graph",
    "tools/address",
    "tools/compose",
    "tools/doctor",
    "tools/adopt",
]
IO_LIBRARIES = {
    "kubernetes",
    "kopf",
    "urllib",
    "socket",
    "subprocess",
    "requests",
    "aiohttp",
    "servicelink.kube",
    "servicelink.handlers",
    "servicelink.runtime",
    "servicelink.reconcile",
    "prometheus_client",
}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def product_modules() -> list[Path]:
    """The package's modules, tools/ included; not the test harness in testing/."""
    return [
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" and p.relative_to(PACKAGE).parts[0] != "testing"
    ]


@pytest.mark.parametrize("library", ["kubernetes", "kopf"])
def test_only_one_module_imports_each_client(library: str) -> None:
    # tools/cluster.py: the CLI's reads as the user, kept out of kube.py so RBAC_RULES stays the operator's.
    owner = {"kubernetes": ["cluster.py", "kube.py"], "kopf": ["handlers.py"]}[library]
    importers = sorted(
        p.name for p in product_modules() if any(i == library or i.startswith(f"{library}.") for i in imports(p))
    )
    assert importers == owner


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module: str) -> None:
    used = imports(PACKAGE / f"{module}.py")
    assert not {i for i in used if i in IO_LIBRARIES or i.split(".")[0] in IO_LIBRARIES}


def test_no_package_named_operator_shadows_the_standard_library() -> None:
    assert not (PACKAGE.parent / "__init__.py").exists()
