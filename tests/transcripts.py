"""The docs' transcripts ("a real run") read from their pages, and matched against what a test's real run printed.

A transcript is the fenced block that follows a sentence of its page. It holds
``$ command`` lines, each followed by what the command printed, or (with no
``$`` line at all) one program's output. A shown line matches a printed line
field by field once what varies from run to run is masked: ages, durations,
timestamps and temporary paths. A ``...`` line stands for any lines; other lines
must be printed one after another.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```\w*\n(.*?)^```$", re.M | re.S)
# What differs between two runs of the same commands, masked in both the shown and the printed line.
VARIES = (
    (re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b"), "<time>"),  # creationTimestamp, lastTransitionTime
    (re.compile(r"\b\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\b"), "<time>"),  # helm's LAST DEPLOYED
    (re.compile(r"/tmp/\S+"), "<tmp>"),  # a run's temporary folder
    (re.compile(r"(?<![\w.])\d+(?:\.\d+)?m?s\b"), "<duration>"),  # 4.4s, 0.45s, 120ms
    (re.compile(r"(?<![\w.])\d+[mhd](?:\d+[smh])?\b"), "<duration>"),  # an age: 2m3s, 5h, 4d
)


@dataclass(frozen=True)
class Shown:
    """One ``$ command`` of a transcript (its trailing ``# comment`` dropped) and the lines shown after it."""

    command: str
    output: str


def transcript(page: Path, sentence: str) -> str:
    """The fenced block that comes first after ``sentence`` in ``page``; raise if the page lacks the sentence."""
    text = page.read_text()
    at = text.index(sentence)
    block = FENCE.search(text, at)
    assert block is not None, f"{page}: no fenced block after {sentence!r}"
    return block[1]


def commands(block: str) -> list[Shown]:
    """The ``$ command`` lines of a transcript, in order, each with what it shows."""
    shown: list[Shown] = []
    for part in re.split(r"^\$ ", block, flags=re.M)[1:]:
        command, _, output = part.partition("\n")
        shown.append(Shown(re.sub(r"\s+#\s.*$", "", command).strip(), output))
    return shown


def shown_for(block: str, command: str) -> str:
    """What the transcript shows after ``$ command``; raise if it runs that command other than once."""
    (output,) = [shown.output for shown in commands(block) if shown.command == command]
    return output


def mask(line: str) -> str:
    """The line with what varies between runs replaced by a placeholder."""
    for pattern, placeholder in VARIES:
        line = pattern.sub(placeholder, line)
    return line


def _same_line(shown: str, printed: str) -> bool:
    return mask(shown).split() == mask(printed).split()


def _chunks(shown: str) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in shown.splitlines():
        if line.strip() == "...":
            yield chunk
            chunk = []
        elif line.strip():
            chunk.append(line)
    yield chunk


def shows(shown: str, printed: str) -> bool:
    """Whether ``printed`` holds the lines ``shown`` in order; ``...`` stands for any lines, blank lines for none."""
    lines = [line for line in printed.splitlines() if line.strip()]
    at = 0
    for chunk in _chunks(shown):
        if not chunk:
            continue
        found = next(
            (
                start
                for start in range(at, len(lines) - len(chunk) + 1)
                if all(_same_line(s, p) for s, p in zip(chunk, lines[start : start + len(chunk)], strict=True))
            ),
            None,
        )
        if found is None:
            return False
        at = found + len(chunk)
    return True


def assert_shows(shown: str, printed: str, what: str) -> None:
    """Fail, with both texts, unless ``printed`` holds the lines ``shown``."""
    assert shows(shown, printed), f"{what}: the run printed\n{printed}\nwhere the page shows\n{shown}"
