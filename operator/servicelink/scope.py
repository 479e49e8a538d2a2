"""Which namespaces the operator serves: label selectors as kubectl writes them, parsed and matched (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!"]

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(rf"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_NAME}")
_VALUE = re.compile(rf"({_NAME})?")
_SET = re.compile(r"(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)")
_COMPARE = re.compile(r"(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)")
_EXISTS = re.compile(r"(?P<op>!?)\s*(?P<key>[^\s!=(),]+)")


@dataclass(frozen=True)
class Requirement:
    """One term of a selector: ``key`` compared by ``operator`` with ``values``."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` meet it; ``!=`` and ``notin`` are met by labels without the key, as in Kubernetes."""
        value = labels.get(self.key)
        if self.operator in ("=", "in"):
            return value in self.values
        if self.operator in ("!=", "notin"):
            return value not in self.values
        return (value is not None) == (self.operator == "exists")


Selector = tuple[Requirement, ...]


def parse_selector(raw: str) -> Selector:
    """Parse a label selector as ``kubectl -l`` takes it: terms joined by commas, each ``key=value``,
    ``key==value``, ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``, ``key`` or ``!key``.

    An empty selector has no term and matches every namespace. Raises ``ValueError`` naming the term refused.
    """
    terms = [term.strip() for term in re.split(r",(?![^()]*\))", raw)] if raw.strip() else []
    return tuple(_parse_term(term) for term in terms)


def _parse_term(term: str) -> Requirement:
    if found := _SET.fullmatch(term):
        values = [value.strip() for value in found["values"].split(",")]
        return _checked(found["key"], "in" if found["op"] == "in" else "notin", values, term)
    if found := _COMPARE.fullmatch(term):
        return _checked(found["key"], "!=" if found["op"] == "!=" else "=", [found["value"]], term)
    if found := _EXISTS.fullmatch(term):
        return _checked(found["key"], "!" if found["op"] else "exists", [], term)
    raise ValueError(f"cannot read {term!r}")


def _checked(key: str, operator: Operator, values: list[str], term: str) -> Requirement:
    if not _KEY.fullmatch(key) or len(key.rpartition("/")[0]) > 253:
        raise ValueError(f"{term!r}: {key!r} is not a label key")
    if not all(_VALUE.fullmatch(value) for value in values):
        raise ValueError(f"{term!r}: a value is not a label value")
    return Requirement(key, operator, frozenset(values))


def matches(selector: Selector, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` meet every term of ``selector`` (an empty one: always)."""
    return all(requirement.matches(labels) for requirement in selector)
