"""Read Kubernetes objects from YAML files, folders or stdin, naming the file and line of bad input (does I/O)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

YAML_SUFFIXES = (".yaml", ".yml", ".json")


class InputError(Exception):
    """Input the command cannot read; the message names the file and line."""


@dataclass(frozen=True)
class Manifest:
    """One object read from a file, and where it starts."""

    body: dict[str, Any]
    source: str  # file:line

    @property
    def kind(self) -> str:
        """The object's ``kind``."""
        return str(self.body.get("kind", ""))


@dataclass
class Manifests:
    """The objects read, by kind, and what was skipped."""

    objects: list[Manifest] = field(default_factory=list)

    def of(self, *kinds: str) -> list[Manifest]:
        """The objects of these kinds, in input order."""
        return [m for m in self.objects if m.kind in kinds]

    def skipped_note(self, read: Iterable[str], command: str) -> str | None:
        """One line naming the kinds ``command`` does not read, with counts; None when there are none."""
        wanted = set(read)
        skipped = Counter(m.kind or "(no kind)" for m in self.objects if m.kind not in wanted)
        if not skipped:
            return None
        kinds = ", ".join(f"{kind} ({count})" for kind, count in sorted(skipped.items()))
        return f"note: skipped {sum(skipped.values())} objects of kinds {command} does not read: {kinds}"


def load_documents(text: str, name: str) -> Iterator[tuple[Any, str]]:
    """Yield each YAML document of ``text`` with ``name:line`` where it starts.

    Raises ``InputError`` naming the file, line and column of malformed YAML.
    """
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                yield loader.construct_document(node), f"{name}:{node.start_mark.line + 1}"
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f"{mark.line + 1}:{mark.column + 1}" if mark else "?"
        raise InputError(f"{name}:{line}: malformed YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise InputError(f"{name}: malformed YAML: {error}") from None
    finally:
        loader.dispose()


def _objects(text: str, name: str) -> Iterator[Manifest]:
    for document, where in load_documents(text, name):
        if document is None:
            continue
        if not isinstance(document, Mapping):
            raise InputError(f"{where}: expected a Kubernetes object (a mapping), found {type(document).__name__}")
        if str(document.get("kind", "")).endswith("List"):
            for item in document.get("items") or ():
                if isinstance(item, Mapping):
                    yield Manifest(dict(item), where)
        else:
            yield Manifest(dict(document), where)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES)
    if path.is_file():
        return [path]
    raise InputError(f"{path}: no such file or folder")


def read_text(path: Path) -> str:
    """Return a file's text; raise ``InputError`` naming it when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read: {error}") from None


def read_manifests(sources: Iterable[str]) -> Manifests:
    """Read every object of ``sources``: files, folders (their .yaml, .yml and .json files), or ``-`` for stdin.

    Raises ``InputError`` naming the file and line of malformed input.
    """
    found = Manifests()
    for source in sources:
        if source == "-":
            found.objects.extend(_objects(sys.stdin.read(), "<stdin>"))
            continue
        for path in _files(Path(source)):
            found.objects.extend(_objects(read_text(path), str(path)))
    return found
