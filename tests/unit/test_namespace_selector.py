"""scope.py: label selectors read as kubectl reads them, and matched against a namespace's labels."""

from __future__ import annotations

import pytest

from servicelink.scope import Requirement, matches, parse_selector


def test_every_form_of_term_is_read() -> None:
    assert parse_selector("team=payments, env!=dev,tier==web") == (
        Requirement("team", "=", frozenset({"payments"})),
        Requirement("env", "!=", frozenset({"dev"})),
        Requirement("tier", "=", frozenset({"web"})),
    )
    assert parse_selector("env in (prod, staging),zone notin (a),servicelink.dev/serve,!legacy") == (
        Requirement("env", "in", frozenset({"prod", "staging"})),
        Requirement("zone", "notin", frozenset({"a"})),
        Requirement("servicelink.dev/serve", "exists"),
        Requirement("legacy", "!"),
    )
    assert parse_selector("") == parse_selector("  ") == ()
    assert parse_selector("team=") == (Requirement("team", "=", frozenset({""})),)  # an empty value, as in Kubernetes


@pytest.mark.parametrize("raw", ["=x", "team=a b", "env in prod", "env in (a", "Team Payments", "a/b/c", "!"])
def test_a_term_that_is_not_a_selector_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="'"):
        parse_selector(raw)


@pytest.mark.parametrize(
    ("selector", "labels", "served"),
    [
        ("team=payments,env!=dev", {"team": "payments", "env": "prod"}, True),
        ("team=payments,env!=dev", {"team": "payments"}, True),  # != is met without the key
        ("team=payments,env!=dev", {"team": "payments", "env": "dev"}, False),
        ("team=payments", {}, False),
        ("env in (prod,staging)", {"env": "staging"}, True),
        ("env in (prod,staging)", {"env": "dev"}, False),
        ("env notin (dev)", {}, True),
        ("env notin (dev)", {"env": "dev"}, False),
        ("servicelink.dev/serve", {"servicelink.dev/serve": ""}, True),
        ("servicelink.dev/serve", {}, False),
        ("!legacy", {"legacy": "true"}, False),
        ("!legacy", {"team": "x"}, True),
        ("", {}, True),
    ],
)
def test_labels_match_when_they_meet_every_term(selector: str, labels: dict[str, str], served: bool) -> None:
    assert matches(parse_selector(selector), labels) is served
