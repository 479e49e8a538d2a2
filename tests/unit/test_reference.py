"""The reference pages under docs/reference/ are generated (servicelink.reference): each is what its source gives."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from servicelink import conditions, reference
from servicelink.model import (
    ANNOTATIONS,
    BUILT_IN_MAPPINGS,
    ServiceLinkSpec,
    ServiceLinkStatus,
    WorkloadMappingSpec,
    WorkloadMappingStatus,
)
from servicelink.reference import BLOCKS, COMMAND, Block, fill
from servicelink.settings import OPTIONS

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.page)
def test_the_committed_page_is_the_generated_one(block: Block) -> None:
    text = (REPO / "docs" / block.page).read_text()
    assert fill(text, block) == text, (
        f"docs/{block.page} differs from what {block.source} gives: run `{COMMAND}` and commit what it writes"
    )


def test_a_page_without_the_markers_is_refused_not_overwritten() -> None:
    with pytest.raises(ValueError, match="lacks the lines"):
        fill("# Metrics\n\nwritten by hand\n", BLOCKS[-1])


def test_hand_written_prose_around_the_block_is_kept() -> None:
    begin, end = reference.BEGIN.format(source="a source"), reference.END
    block = Block("x.md", "a source", lambda: "fresh")
    assert fill(f"before\n{begin}\nstale\n{end}\nafter\n", block) == f"before\n{begin}\n\nfresh\n\n{end}\nafter\n"


@pytest.mark.parametrize(
    ("spec", "status", "render"),
    [
        (ServiceLinkSpec, ServiceLinkStatus, reference.render_fields),
        (WorkloadMappingSpec, WorkloadMappingStatus, reference.render_mapping_fields),
    ],
    ids=["ServiceLink", "WorkloadMapping"],
)
def test_every_field_of_spec_and_status_has_a_row(
    spec: type[BaseModel], status: type[BaseModel], render: Callable[[], str]
) -> None:
    page = render()
    for top in (spec, status):
        for model in reference._models(top):
            for name, field in model.model_fields.items():
                assert f"| `{field.alias or name}` |" in page, f"{model.__name__}.{name}"


def test_every_built_in_kind_has_a_row_as_a_mapping() -> None:
    page = reference.render_mapping_fields()
    for name, kind in BUILT_IN_MAPPINGS.items():
        assert f"| `{name}` | `{kind}` |" in page, name


def test_every_value_of_the_chart_has_a_row() -> None:
    values = yaml.safe_load((REPO / "charts" / "servicelink" / "values.yaml").read_text())
    page = reference.render_chart_values()
    for name in values:
        assert f"| `{name}" in page, name


def test_a_pipe_in_code_stays_and_one_in_prose_is_escaped() -> None:
    assert reference._cell("`a|b` or c|d") == "`a|b` or c\\|d"


def test_every_setting_has_a_row_with_its_flag_variable_and_default() -> None:
    page = reference.render_settings()
    for option in OPTIONS:
        row = next(line for line in page.splitlines() if f"`{option.env}`" in line)
        assert f"`{option.flag}`" in row, option.field
        assert option.describe_default() in row, option.field


def test_the_reasons_the_annotations_name_are_the_operators_reasons() -> None:
    known = {reason for reasons in conditions.REASONS.values() for reason in reasons}
    known |= set(conditions.LINK_REASONS) | set(conditions.SKIPPED_REASONS)
    for annotation in ANNOTATIONS:
        named = set(re.findall(r"`([A-Z][A-Za-z]+)`", annotation.effect))
        assert named <= known, annotation.name
