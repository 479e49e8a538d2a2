"""A pytest plugin that fails a run in which a test skipped that an allow-list does not name (reads the list).

On only when ``SERVICELINK_ALLOWED_SKIPS`` names the list, relative to the repository: ``.ci/run`` sets it to
``tests/allowed-skips.txt``, since in CI a skip hides a test that did not run. Each line of the list is
``<node id, file or folder/>  # <why it may skip>``. The run then prints the list and every skip, and fails
(exit status 1) if one is not allowed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ENV = "SERVICELINK_ALLOWED_SKIPS"


@dataclass(frozen=True)
class Allowed:
    """One line of the allow-list: the tests it names, and why they may skip."""

    prefix: str
    reason: str


def parse_allowed(text: str) -> list[Allowed]:
    """Return the allow-list's entries; blank lines and lines starting with ``#`` say nothing.

    Raise ``ValueError`` naming the line for an entry without a reason.
    """
    allowed = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        prefix, _, reason = stripped.partition(" # ")
        if not reason.strip():
            raise ValueError(f"line {number}: {stripped!r} gives no reason (write '<node id>  # <why it may skip>')")
        allowed.append(Allowed(prefix.strip(), reason.strip()))
    return allowed


def is_allowed(nodeid: str, allowed: Iterable[Allowed]) -> bool:
    """Whether the test ``nodeid`` may skip: an entry is its node id, its file (``path.py``, which also covers
    its parametrized cases and classes), or a folder it is in (``tests/node/``)."""
    for entry in allowed:
        prefix = entry.prefix
        if nodeid == prefix or nodeid.startswith((f"{prefix}::", f"{prefix}[")):
            return True
        if prefix.endswith("/") and nodeid.startswith(prefix):
            return True
    return False


def unlisted(skipped: Iterable[str], allowed: Iterable[Allowed]) -> list[str]:
    """The node ids of ``skipped`` the allow-list does not name, sorted, each once."""
    entries = list(allowed)
    return sorted({nodeid for nodeid in skipped if not is_allowed(nodeid, entries)})


# --- the hooks --------------------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """With ``SERVICELINK_ALLOWED_SKIPS`` set, read its allow-list (relative to the repository) and gate the run."""
    path = os.environ.get(ENV)
    if not path:
        return
    listed = Path(path) if Path(path).is_absolute() else config.rootpath / path
    try:
        allowed = parse_allowed(listed.read_text())
    except (OSError, ValueError) as error:
        raise pytest.UsageError(f"{ENV}={path}: {error}") from None
    config.pluginmanager.register(SkipGate(path, allowed), "servicelink-allowed-skips")


class SkipGate:
    """Records every skip of the run; at its end, prints them and the allow-list, and fails the run for one
    not allowed."""

    def __init__(self, path: str, allowed: list[Allowed]) -> None:
        self.path = path
        self.allowed = allowed
        self.skipped: list[str] = []

    def _record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):  # an expected failure is no skip
            self.skipped.append(report.nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)  # a module that skips as a whole

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if unlisted(self.skipped, self.allowed) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        write = terminalreporter.write_line
        terminalreporter.section("skips")
        write(f"allowed to skip ({self.path}):")
        for entry in self.allowed:
            write(f"  {entry.prefix}  # {entry.reason}")
        write("skipped:" if self.skipped else "skipped: none")
        for nodeid in sorted(set(self.skipped)):
            write(f"  {nodeid}" + ("" if is_allowed(nodeid, self.allowed) else "  NOT ALLOWED"))
        failing = unlisted(self.skipped, self.allowed)
        if failing:
            write(f"{len(failing)} skipped but not allowed: the run fails (make them run, or allow them with a reason)")
