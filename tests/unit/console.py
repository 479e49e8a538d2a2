"""Running ``servicelink`` subcommands in-process for the tests, and comparing with golden files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from servicelink import cli

REPO = Path(__file__).resolve().parents[2]
GALLERY = REPO / "examples" / "gallery"
GOLDEN = Path(__file__).parent / "golden"


@dataclass(frozen=True)
class Ran:
    """What a command printed and its exit code."""

    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Ran:
    """Run ``servicelink ARGV`` as the console script does; return its exit code and output."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.main(list(argv))
    captured = capsys.readouterr()
    code = exited.value.code
    return Ran(code if isinstance(code, int) else 1, captured.out, captured.err)


def assert_golden(name: str, text: str) -> None:
    """``text`` equals ``golden/NAME``; ``SERVICELINK_UPDATE_GOLDEN=1`` rewrites the file instead."""
    path = GOLDEN / name
    if os.environ.get("SERVICELINK_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path} (SERVICELINK_UPDATE_GOLDEN=1 rewrites it)"
