"""crds/servicelink.yaml is generated from model.py (hack/crd.sh): the committed file is what the models give.

It holds two CRDs, ServiceLink then WorkloadMapping, so whatever applies the file installs both.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from servicelink.crd import DESCRIPTION, MAPPING_PRINTER_COLUMNS, build_crd, build_mapping_crd, render_crd
from servicelink.model import (
    CRD_NAMES,
    MAPPING_NAME,
    REPORTED_KINDS,
    RESERVED_CONFIGMAP_NAMES,
    TEMPLATE,
    WORKLOAD_KINDS,
    WorkloadMappingSpec,
    WorkloadMappingStatus,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_crd_is_the_generated_one() -> None:
    """If this fails after a change of model.py, run hack/crd.sh and commit what it writes."""
    assert (REPO / "crds" / "servicelink.yaml").read_text() == render_crd()


def test_the_file_reads_back_as_the_two_crds() -> None:
    assert list(yaml.safe_load_all(render_crd())) == [build_crd(), build_mapping_crd()]
    assert tuple(crd["metadata"]["name"] for crd in yaml.safe_load_all(render_crd())) == CRD_NAMES


def test_the_description_names_every_kind_followed_and_reported() -> None:
    """What `kubectl explain servicelink` prints: every built-in kind, the mapped ones, and Jobs as reported."""
    for kind in (*WORKLOAD_KINDS, *REPORTED_KINDS, "WorkloadMapping"):
        assert re.search(rf"\b{kind}s\b", DESCRIPTION), kind


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


def test_the_api_server_refuses_the_reserved_configmap_names_the_operator_refuses() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    (rule,) = spec["properties"]["configMapName"]["x-kubernetes-validations"]
    found = re.fullmatch(r"!\(self in \[(.*)\]\)", rule["rule"])
    assert found, rule["rule"]
    assert found.group(1).split(", ") == [f"'{name}'" for name in RESERVED_CONFIGMAP_NAMES]
    assert all(name in rule["message"] for name in RESERVED_CONFIGMAP_NAMES)


def test_only_rollout_is_defaulted_by_the_api_server() -> None:
    """The model's other defaults stay the operator's: the API server writes none into stored objects."""
    text = yaml.safe_dump(build_crd())
    assert text.count("default:") == 1
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["rollout"]["default"] == "Rolling"


# --- WorkloadMapping ------------------------------------------------------------------------------------------


def mapping_root() -> dict:
    (version,) = build_mapping_crd()["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def aliases(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def test_the_mapping_crd_is_cluster_scoped_with_its_short_name_and_columns() -> None:
    spec = build_mapping_crd()["spec"]
    assert (spec["scope"], spec["names"]["kind"], spec["names"]["plural"]) == (
        "Cluster",
        "WorkloadMapping",
        "workloadmappings",
    )
    assert spec["names"]["shortNames"] == ["slwm"]
    assert [c["name"] for c in MAPPING_PRINTER_COLUMNS] == ["Kind", "Version", "Template", "Ready", "Reason", "Age"]
    assert spec["versions"][0]["subresources"] == {"status": {}}


def test_the_mapping_crd_names_the_models_fields_each_described() -> None:
    properties = mapping_root()["properties"]
    assert set(properties["spec"]["properties"]) == aliases(WorkloadMappingSpec)
    assert set(properties["status"]["properties"]) == aliases(WorkloadMappingStatus)
    assert properties["spec"]["required"] == ["kind", "version", "template"]
    for part in ("spec", "status"):
        assert all(field.get("description") for field in properties[part]["properties"].values())
    conditions = properties["status"]["properties"]["conditions"]
    assert (conditions["x-kubernetes-list-type"], conditions["x-kubernetes-list-map-keys"]) == ("map", ["type"])


def test_the_api_server_defaults_nothing_of_a_mapping() -> None:
    assert "default:" not in yaml.safe_dump(build_mapping_crd())


def name_rule_pattern() -> str:
    """Return the regular expression the CEL rule on the mapping's name matches it against."""
    (rule,) = mapping_root()["x-kubernetes-validations"]
    found = re.fullmatch(r"self\.metadata\.name\.matches\('([^'\\]*)'\)", rule["rule"])
    assert found, rule["rule"]  # no quote or backslash inside: the literal means what the pattern says
    assert "<plural>.<group>" in rule["message"]
    return found.group(1)


def test_the_name_rule_is_the_models_pattern() -> None:
    assert name_rule_pattern() == MAPPING_NAME.pattern


@pytest.mark.parametrize("name", ["clonesets.apps.kruise.io", "services.serving.knative.dev", "widgets.example"])
def test_the_name_rule_accepts_plural_dot_group(name: str) -> None:
    assert re.fullmatch(name_rule_pattern(), name)


@pytest.mark.parametrize("name", ["clonesets", "CloneSets.apps.kruise.io", "clonesets.", ".apps", "clone_sets.apps"])
def test_the_name_rule_refuses_a_name_that_is_not_plural_dot_group(name: str) -> None:
    assert not re.fullmatch(name_rule_pattern(), name)


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("template", ".spec.template", ["spec.template", ".spec.containers[0]", ".spec..template", "$.spec", "."]),
        ("kind", "CloneSet", ["cloneSet", "Clone-Set", "Clone Set"]),
        ("version", "v1alpha1", ["1", "v1alpha", "V1", "v1gamma1"]),
    ],
)
def test_the_schema_pattern_of_a_mapping_field_refuses_bad_values(field: str, good: str, bad: list[str]) -> None:
    pattern = mapping_root()["properties"]["spec"]["properties"][field]["pattern"]
    assert re.fullmatch(pattern, good)
    for value in bad:
        assert not re.fullmatch(pattern, value), value
