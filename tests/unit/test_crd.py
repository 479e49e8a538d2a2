"""crds/servicelink.yaml is generated from model.py (hack/crd.sh): the committed file is what the models give."""

from __future__ import annotations

from pathlib import Path

import yaml

from servicelink.crd import build_crd, render_crd
from servicelink.model import TEMPLATE

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_crd_is_the_generated_one() -> None:
    """If this fails after a change of model.py, run hack/crd.sh and commit what it writes."""
    assert (REPO / "crds" / "servicelink.yaml").read_text() == render_crd()


def test_the_file_reads_back_as_the_crd() -> None:
    assert yaml.safe_load(render_crd()) == build_crd()


def link_schema() -> dict:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec["properties"]["links"]["items"]["properties"]


def test_the_port_is_a_number_or_a_name_with_the_bounds_of_each() -> None:
    port = link_schema()["port"]
    assert "type" not in port
    assert port["x-kubernetes-int-or-string"] is True
    assert (port["minimum"], port["maximum"], port["maxLength"]) == (1, 65535, 15)


def test_the_template_rule_is_the_models_pattern() -> None:
    (rule,) = link_schema()["template"]["x-kubernetes-validations"]
    assert rule["rule"] == f"self.matches('{TEMPLATE.pattern}')"


def test_only_rollout_is_defaulted_by_the_api_server() -> None:
    """The model's other defaults stay the operator's: the API server writes none into stored objects."""
    text = yaml.safe_dump(build_crd())
    assert text.count("default:") == 1
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["rollout"]["default"] == "Rolling"
