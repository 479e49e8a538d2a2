"""messages.py: joining and cutting messages to a size the API and a reader take."""

from __future__ import annotations

from servicelink.messages import MESSAGE_LIMIT, summarize, truncate


def test_a_short_summary_names_every_part() -> None:
    assert summarize(["A: <unset> -> x", "B: y -> z"]) == "A: <unset> -> x; B: y -> z"


def test_a_long_summary_stays_within_the_limit_and_counts_what_it_leaves_out() -> None:
    parts = [f"K{i}: http://old-{i}:3001 -> http://new-{i}:3002" for i in range(256)]
    text = summarize(parts)
    assert len(text) <= MESSAGE_LIMIT
    assert text.startswith(parts[0] + "; " + parts[1])
    shown = text.count(" -> ")
    assert text.endswith(f"; and {256 - shown} more")


def test_one_part_longer_than_the_limit_is_cut() -> None:
    assert summarize(["x" * 5000]) == "x" * (MESSAGE_LIMIT - len("; and 1 more") - 3) + "..."
    text = summarize(["x" * 5000, "B: y -> z"])
    assert len(text) <= MESSAGE_LIMIT
    assert text.endswith("...; and 1 more")


def test_a_message_within_the_limit_is_kept_and_a_longer_one_cut_with_an_ellipsis() -> None:
    assert truncate("x" * 10, 10) == "x" * 10
    assert truncate("x" * 11, 10) == "x" * 7 + "..."
