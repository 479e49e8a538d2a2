"""The README stays short, the docs carry no project history, every page under docs/ is in the site's nav, and the
kinds, RBAC verbs and versions the pages name are those the code, the chart and the harness have."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicelink import conditions
from servicelink.kube import OPTIONAL_RBAC_RULES, RBAC_RULES, SECRET_RBAC_RULES
from servicelink.mapping import MAPPED_VERBS
from servicelink.model import CORE_WORKLOAD_KINDS, CRD_NAMES, REPORTED_KINDS, REPORTED_RESOURCES, WORKLOAD_KINDS
from servicelink.testing.assets import (
    COREDNS_VERSION,
    CRICTL_VERSION,
    ETCD_VERSION,
    HELM_VERSION,
    KUBERNETES_VERSION,
    cache_dir,
    helm_cache_dir,
    node_cache_dir,
)

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
USER_PAGES = sorted([REPO / "README.md", REPO / "CHANGELOG.md", *DOCS.rglob("*.md")])
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
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


# Pages that describe the present: the CHANGELOG keeps history, and performance.md's figures (and what the operator
# watched while they were measured) predate kinds it follows now, as its note says.
PRESENT_PAGES = [page for page in USER_PAGES if page.name not in ("CHANGELOG.md", "performance.md")]
# Kubernetes' own kinds with a pod template; a run of three or more of them is a list of the kinds servicelink follows.
POD_TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job", "ReplicaSet", "ReplicationController")
PLURALS = re.compile(r"\b[A-Z]\w*s(?:(?:,\s+|,?\s+and\s+)[A-Z]\w*s\b)+")


def _kinds_listed(text: str) -> Iterator[list[str]]:
    for run in PLURALS.finditer(text):
        kinds = [name.removesuffix("s") for name in re.findall(r"[A-Z]\w*s\b", run.group(0))]
        listed = [kind for kind in kinds if kind in POD_TEMPLATE_KINDS]
        if len(listed) >= 3:
            yield listed


@pytest.mark.parametrize("page", PRESENT_PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_a_list_of_the_kinds_servicelink_follows_names_those_of_the_code(page: Path) -> None:
    assert [kinds for kinds in _kinds_listed(page.read_text()) if kinds != list(CORE_WORKLOAD_KINDS)] == []


def test_the_kind_list_finder_reads_lists_across_lines_and_skips_short_ones() -> None:
    text = "rolls the Deployments,\n  StatefulSets, DaemonSets and ReplicaSets. Deployments and Services."
    assert list(_kinds_listed(text)) == [["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"]]


Grants = dict[tuple[str, str], set[str]]


def _grants(rules: Any) -> Grants:
    return {(g, r): set(rule["verbs"]) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}


OPERATOR_GRANTS: Grants = {
    (g, r): set(verbs) for g, r, verbs in (*RBAC_RULES, *OPTIONAL_RBAC_RULES, *SECRET_RBAC_RULES)
}
AGGREGATED_ROLES = {
    doc["metadata"]["name"]: _grants(doc["rules"])
    for doc in yaml.safe_load_all((REPO / "manifests" / "aggregated-roles.yaml").read_text())
}
# "`list`, `watch` and `patch` on `batch/cronjobs`"; "Jobs are read (`list`, `watch`)"
VERBS_ON = re.compile(r"((?:`[a-z]+`(?:,\s*|,?\s+and\s+)?)+)\s+on\s+`([\w.]+)/(\w+)`")
KIND_READ = re.compile(r"\b(\w+)s are read \(((?:`[a-z]+`(?:,\s*)?)+)\)")
# The security page's table of aggregated roles: what a cell names, as resources.
TABLE_ROW = re.compile(r"^\| `([\w-]+)` \|[^|]*\| ([^|]*) \|$", re.M)
GRANTED_ON = {
    "ServiceLinks": ("servicelinks",),
    "their status": ("servicelinks/status",),
    "ServiceLinks and their status": ("servicelinks", "servicelinks/status"),
}


def _rbac_rules(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "verbs" in node:
            yield node
        for value in node.values():
            yield from _rbac_rules(value)
    elif isinstance(node, list):
        for item in node:
            yield from _rbac_rules(item)


@pytest.mark.parametrize("page", PRESENT_PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_rbac_rule_a_page_shows_is_what_the_operator_is_granted(page: Path) -> None:
    text = page.read_text()
    shown: list[tuple[str, str, set[str]]] = []
    for block in re.findall(r"^```yaml\n(.*?)^```$", text, re.M | re.S):
        for document in yaml.safe_load_all(block):
            shown += [(g, r, verbs) for (g, r), verbs in _grants(_rbac_rules(document)).items()]
    for match in VERBS_ON.finditer(text):
        shown.append((match[2], match[3], set(re.findall(r"`(\w+)`", match[1]))))
    for match in KIND_READ.finditer(text):
        resource = REPORTED_RESOURCES[match[1]]  # type: ignore[index]  # a KeyError names a kind the code lacks
        shown.append((resource.group, resource.plural, set(re.findall(r"`(\w+)`", match[2]))))
    # A kind the operator has no rule for is one a WorkloadMapping maps, which needs MAPPED_VERBS.
    wrong = [(g, r, verbs) for g, r, verbs in shown if verbs != OPERATOR_GRANTS.get((g, r), set(MAPPED_VERBS))]
    assert wrong == []
    if "no deletes" in text:
        assert [rule for rule in RBAC_RULES if {"delete", "deletecollection"} & set(rule[2])] == []


def test_the_security_pages_table_of_roles_is_the_aggregated_roles() -> None:
    rows = TABLE_ROW.findall((DOCS / "explanation" / "security.md").read_text())
    shown = {
        role: {
            ("servicelink.dev", resource): {verb.strip() for verb in verbs.split(",")}
            for grant in cell.split("; ")
            for what, verbs in [grant.split(": ")]
            for resource in GRANTED_ON[what]
        }
        for role, cell in rows
        if role in AGGREGATED_ROLES
    }
    assert shown == AGGREGATED_ROLES


def test_the_verb_patterns_read_prose() -> None:
    text = "needs `list`, `watch`\nand `patch` on `batch/cronjobs`. Jobs are read (`list`, `watch`) only."
    assert [m.groups() for m in VERBS_ON.finditer(text)] == [("`list`, `watch`\nand `patch`", "batch", "cronjobs")]
    assert [m.groups() for m in KIND_READ.finditer(text)] == [("Job", "`list`, `watch`")]


def _release(version: str) -> str:
    return version.removeprefix("v")


def _floor(requirement: str) -> str:
    """The X.Y of a requirement such as ">=1.30.0-0" (the chart's kubeVersion) or ">=3.11" (requires-python)."""
    found = re.fullmatch(r">=(\d+\.\d+)(?:\.0-0)?", requirement)
    assert found, requirement
    return found[1]


CHART = yaml.safe_load((REPO / "charts" / "servicelink" / "Chart.yaml").read_text())
# The versions a page may state for each component: the floors the chart and pyproject set, and what the harness builds.
STATED_VERSIONS = {
    "Kubernetes": {
        _floor(CHART["kubeVersion"]),
        _release(KUBERNETES_VERSION),
        _release(KUBERNETES_VERSION).rsplit(".", 1)[0],
    },
    "etcd": {_release(ETCD_VERSION)},
    "CoreDNS": {_release(COREDNS_VERSION)},
    "crictl": {_release(CRICTL_VERSION)},
    "helm": {_release(HELM_VERSION)},
    "Python": {_floor(PYPROJECT["project"]["requires-python"])},
}
# What Helm assumes without its Makefile's flags is Helm's version, not one of ours.
STATED_VERSION = re.compile(r"(?<!assume )\b(Kubernetes|etcd|CoreDNS|crictl|helm|Python) v?(\d+\.\d+(?:\.\d+)?)\b")
CACHE_FOLDER = re.compile(r"servicelink/(control-plane|node|helm)/(v[^/`\s]+)")
CACHE_FOLDERS = {"control-plane": cache_dir(), "node": node_cache_dir(), "helm": helm_cache_dir()}


@pytest.mark.parametrize("page", PRESENT_PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_version_a_page_states_is_one_the_chart_pyproject_or_harness_has(page: Path) -> None:
    text = page.read_text()
    assert [m.group(0) for m in STATED_VERSION.finditer(text) if m[2] not in STATED_VERSIONS[m[1]]] == []
    assert [m.group(0) for m in CACHE_FOLDER.finditer(text) if m[2] != CACHE_FOLDERS[m[1]].name] == []


def test_the_version_pattern_finds_stated_versions_but_helms_assumption() -> None:
    found = STATED_VERSION.findall("Kubernetes 1.30 or later; helm v3.22.0; Helm 3; would assume Kubernetes 1.20")
    assert found == [("Kubernetes", "1.30"), ("helm", "3.22.0")]
