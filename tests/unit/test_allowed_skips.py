"""Which skips the allow-list lets through, and a run that fails for one it does not (tests/allowed_skips.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from allowed_skips import ENV, Allowed, is_allowed, parse_allowed, unlisted

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[2]
KIND = "tests/integration/test_kind.py::test_gateway_on_a_kind_cluster"


def test_each_line_names_tests_and_why_they_may_skip() -> None:
    text = "# a comment\n\ntests/node/  # no node here\ntests/a.py::test_b  # needs kind  # and Docker\n"
    assert parse_allowed(text) == [
        Allowed("tests/node/", "no node here"),
        Allowed("tests/a.py::test_b", "needs kind  # and Docker"),
    ]


@pytest.mark.parametrize("line", ["tests/a.py::test_b", "tests/a.py::test_b  #   ", "tests/a.py::test_b # "])
def test_a_line_without_a_reason_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match=r"line 2: .* gives no reason"):
        parse_allowed(f"# a comment\n{line}\n")


def test_an_entry_allows_its_test_its_file_or_its_folder_and_nothing_that_only_starts_alike() -> None:
    allowed = [Allowed("tests/a.py::test_b", "r"), Allowed("tests/c.py", "r"), Allowed("tests/node/", "r")]
    for nodeid in (
        "tests/a.py::test_b",
        "tests/a.py::test_b[one]",
        "tests/c.py",
        "tests/c.py::test_x",
        "tests/c.py::TestY::test_z",
        "tests/node/test_on_a_node.py::test_w",
    ):
        assert is_allowed(nodeid, allowed), nodeid
    for nodeid in ("tests/a.py::test_bc", "tests/a.py::test_c", "tests/cd.py::test_x", "tests/nodes/t.py::t"):
        assert not is_allowed(nodeid, allowed), nodeid


def test_the_unlisted_skips_are_named_once_each_in_order() -> None:
    allowed = [Allowed("tests/a.py", "r")]
    assert unlisted(["tests/z.py::t", "tests/a.py::t", "tests/b.py::t", "tests/z.py::t"], allowed) == [
        "tests/b.py::t",
        "tests/z.py::t",
    ]
    assert unlisted(["tests/a.py::t"], allowed) == []


def test_the_repositorys_list_allows_exactly_the_kind_test() -> None:
    allowed = parse_allowed((REPO / "tests" / "allowed-skips.txt").read_text())
    assert [entry.prefix for entry in allowed] == [KIND]


def test_a_run_with_the_list_on_fails_for_a_skip_it_does_not_allow(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest('pytest_plugins = ["allowed_skips"]')
    pytester.makepyfile(
        test_some="""
        import pytest

        def test_allowed():
            pytest.skip("no kind here")

        @pytest.mark.skipif(True, reason="not here either")
        def test_unlisted():
            pass

        def test_runs():
            pass
        """
    )
    pytester.makefile(".txt", skips="test_some.py::test_allowed  # no kind here")
    monkeypatch.setenv(ENV, "skips.txt")
    failed = pytester.runpytest("-p", "no:cacheprovider")
    assert failed.ret == pytest.ExitCode.TESTS_FAILED
    failed.stdout.fnmatch_lines(
        [
            "*allowed to skip (skips.txt):",
            "  test_some.py::test_allowed  # no kind here",
            "skipped:",
            "  test_some.py::test_allowed",
            "  test_some.py::test_unlisted  NOT ALLOWED",
            "1 skipped but not allowed: the run fails*",
        ]
    )
    pytester.makefile(".txt", skips="test_some.py::test_allowed  # no kind here\ntest_some.py  # the rest too")
    assert pytester.runpytest("-p", "no:cacheprovider").ret == pytest.ExitCode.OK
    monkeypatch.delenv(ENV)
    pytester.makefile(".txt", skips="")
    assert pytester.runpytest("-p", "no:cacheprovider").ret == pytest.ExitCode.OK  # off without the variable
