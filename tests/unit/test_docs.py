"""The README stays short, the docs carry no project history, and every page under docs/ is in the site's nav."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicelink import conditions
from servicelink.model import CRD_NAMES, REPORTED_KINDS, WORKLOAD_KINDS

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
USER_PAGES = sorted([REPO / "README.md", REPO / "CHANGELOG.md", *DOCS.rglob("*.md")])
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# A version a page shows for the install: an image tag, the install NOTES' first line, a chart's release name
# in `helm list`. Other versions (an upgrade from 0.1.0, say) are named in words, and the CHANGELOG keeps history.
INSTALLED_VERSION = re.compile(
    r"(?:servicelink|gallery-app):(\d+\.\d+\.\d+)"  # an image
    r"|servicelink (\d+\.\d+\.\d+) runs"  # the chart's NOTES
    r"|\bgallery-(\d+\.\d+\.\d+)"  # the gallery chart in `helm list`
)

# Our own issue numbers and commits are history, not documentation. Upstream references stay
# allowed as full URLs (kubernetes/kubernetes#22952 is preceded by a word character, so it passes),
# and so does hex in code, such as a sha256 digest or a config hash: only "commit <hex>" is flagged.
HISTORY = re.compile(
    r"\bissues?\s+#?\d+"  # "issue 15", "issues 12 and 14"
    r"|(?<![\w/])#\d+\b"  # "#123"
    r"|\bcommits?\s+`?[0-9a-f]{7,40}\b",  # "commit a8d1167"
    re.IGNORECASE,
)


class _MkDocsLoader(yaml.SafeLoader):
    """A safe loader that reads mkdocs.yml's `!!python/name:` tags as plain strings."""


_MkDocsLoader.add_multi_constructor(
    "tag:yaml.org,2002:python/name:", lambda _loader, suffix, _node: f"python/name:{suffix}"
)


def _nav_pages(entries: Any) -> Iterator[str]:
    if isinstance(entries, str):
        yield entries
    elif isinstance(entries, list):
        for entry in entries:
            yield from _nav_pages(entry)
    elif isinstance(entries, dict):
        for value in entries.values():
            yield from _nav_pages(value)


def test_the_readme_fits_on_a_few_screens() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 260


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_no_page_names_our_issues_or_commits(page: Path) -> None:
    found = [
        f"line {number}: {match.group(0)!r}"
        for number, line in enumerate(page.read_text().splitlines(), start=1)
        for match in HISTORY.finditer(line)
    ]
    assert found == []


def test_the_history_pattern_flags_history_and_spares_upstream_links_and_digests() -> None:
    assert HISTORY.search("Upgrade notes (issue 15)")
    assert HISTORY.search("fixed in #123")
    assert HISTORY.search("The migration (commit a8d1167) replaces")
    assert not HISTORY.search("https://github.com/kubernetes/kubernetes/issues/22952")
    assert not HISTORY.search("kubernetes/kubernetes#22952")
    assert not HISTORY.search("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    assert not HISTORY.search("hash a191b442; see [Status](#status)")


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_MkDocsLoader)
    in_nav = list(_nav_pages(config["nav"]))
    on_disk = sorted(str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md"))
    assert sorted(in_nav) == on_disk
    assert len(in_nav) == len(set(in_nav))


def test_the_rollout_flowchart_ends_in_every_reason_of_rolled_out() -> None:
    page = (DOCS / "explanation" / "rollouts.md").read_text()
    chart = page.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert set(re.findall(r"RolledOut (?:True|False), (\w+)", chart)) == set(conditions.REASONS[conditions.ROLLED_OUT])


@pytest.mark.parametrize(
    "page", [page for page in USER_PAGES if page.name != "CHANGELOG.md"], ids=lambda page: str(page.relative_to(REPO))
)
def test_no_page_installs_a_version_but_the_current_one(page: Path) -> None:
    found = [
        f"line {number}: {match.group(0)!r}"
        for number, line in enumerate(page.read_text().splitlines(), start=1)
        for match in INSTALLED_VERSION.finditer(line)
        if VERSION not in match.groups()
    ]
    assert found == []


def test_the_installed_version_pattern_finds_tags_notes_and_releases() -> None:
    assert [m.group(0) for m in INSTALLED_VERSION.finditer("docker push ghcr.io/servicelink/servicelink:0.1.0")] == [
        "servicelink:0.1.0"
    ]
    assert INSTALLED_VERSION.search("servicelink 0.1.0 runs in namespace servicelink-system")
    assert INSTALLED_VERSION.search("deployed\tgallery-0.1.0\t0.1.0")
    assert INSTALLED_VERSION.search("image: ghcr.io/servicelink/gallery-app:0.1.0")
    assert not INSTALLED_VERSION.search("none on an upgrade from 0.1.0's bare hash")


@pytest.mark.parametrize("page", ["explanation/security.md", "explanation/rollouts.md"])
def test_the_pages_on_rbac_name_every_kind_followed(page: str) -> None:
    text = (DOCS / page).read_text()
    for kind in (*WORKLOAD_KINDS, *REPORTED_KINDS, "WorkloadMapping"):
        assert re.search(rf"\b{kind}s\b", text), kind
    assert "three workload kinds" not in text


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_a_transcript_that_lists_a_crd_lists_every_crd_the_install_makes(page: Path) -> None:
    text = page.read_text()
    counts = {name: text.count(f"customresourcedefinition.apiextensions.k8s.io/{name}") for name in CRD_NAMES}
    assert len(set(counts.values())) == 1, counts
