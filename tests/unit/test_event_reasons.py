"""events.EVENTS lists every Event the code records, with its type and object, and nothing else (events.py).

The recording code is read, not run: each ``Event(...)`` in plan.py and ``MappingEvent(...)`` in mapping.py
names its reason as a literal, a ``conditions`` constant, or (in the functions below) a reason taken from
the status, whose possible values the conditions tables give.
"""

from __future__ import annotations

import ast
from pathlib import Path

from servicelink import conditions as c
from servicelink import events, mapping, plan
from servicelink.events import EVENTS

# The functions that record a reason read from the status, and the reasons that status can hold.
FROM_STATUS = {
    ("plan.py", "plan_problem_events"): ("ServiceLink", set(c.LINK_REASONS) | set(plan.WARNED_CONDITION_REASONS)),
    ("mapping.py", "plan_mapping_event"): ("WorkloadMapping", set(c.MAPPING_REASONS[c.READY])),
}
RECORDERS = {"plan.py": ("Event", "ServiceLink"), "mapping.py": ("MappingEvent", "WorkloadMapping")}


def _reason(node: ast.expr) -> str | None:
    """The reason a call's first argument names when it is a literal or a constant of conditions or events."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "c":
        return str(getattr(c, node.attr))
    if isinstance(node, ast.Name) and hasattr(events, node.id):
        return str(getattr(events, node.id))
    return None


def _warning(call: ast.Call) -> bool | None:
    """Whether the call records a Warning; None when it decides at run time."""
    given = [kw.value for kw in call.keywords if kw.arg == "warning"] + call.args[2:3]
    if not given:
        return False
    return given[0].value if isinstance(given[0], ast.Constant) and isinstance(given[0].value, bool) else None


def recorded() -> set[tuple[str, str, str | None]]:
    """Every (reason, object, type) the code records; type None when it is decided at run time."""
    found: set[tuple[str, str, str | None]] = set()
    for module in (plan, mapping):
        file = Path(str(module.__file__))
        constructor, on = RECORDERS[file.name]
        for function in ast.walk(ast.parse(file.read_text())):
            if not isinstance(function, ast.FunctionDef):
                continue
            for call in ast.walk(function):
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == constructor):
                    continue
                warning = _warning(call)
                kind = None if warning is None else "Warning" if warning else "Normal"
                reason = _reason(call.args[0])
                if reason is None:
                    source = FROM_STATUS.get((file.name, function.name))
                    assert source is not None, (
                        f"{file.name}:{call.lineno} in {function.name} records a reason read at run time: "
                        "add its function and the reasons it can take to FROM_STATUS"
                    )
                    found |= {(r, source[0], kind) for r in source[1]}
                    continue
                found.add((reason, on, kind))
    return found


def test_every_event_the_code_records_is_in_the_table_with_its_type() -> None:
    table = {(e.reason, e.on): e.type for e in EVENTS}
    for reason, on, kind in recorded():
        assert (reason, on) in table, f"{on} Event {reason} is recorded but not in events.EVENTS"
        if kind is not None:
            assert table[reason, on] == kind, f"{on} Event {reason} is recorded as {kind}"


def test_the_table_lists_nothing_the_code_does_not_record() -> None:
    code = {(reason, on) for reason, on, _ in recorded()}
    assert [(e.reason, e.on) for e in EVENTS if (e.reason, e.on) not in code] == []


def test_a_mapping_event_is_normal_only_while_watching() -> None:
    # plan_mapping_event decides the type from the condition's status; Ready is True only with Watching.
    for event in EVENTS:
        if event.on == "WorkloadMapping":
            assert (event.type == "Normal") == (event.reason == c.WATCHING)
