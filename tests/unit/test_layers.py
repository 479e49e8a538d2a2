"""The import rules: pyproject.toml's import-linter contracts hold, and no package shadows the standard library.

The contracts ([tool.importlinter] in pyproject.toml) name the layers, keep the
kubernetes client in kube.py and kopf in handlers.py, and keep the pure modules
free of I/O. Run them alone with ``lint-imports``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run(
        [str(lint_imports), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_no_package_named_operator_shadows_the_standard_library() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()


def test_no_two_test_files_share_a_name() -> None:
    """tests/ has no __init__.py, so pytest imports each test file by its bare name: two of one name, in unit and
    integration say, make the whole run stop at collection."""
    names = [path.name for path in (REPO / "tests").rglob("test_*.py")]
    assert sorted({name for name in names if names.count(name) > 1}) == []
