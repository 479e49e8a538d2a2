"""model.py: what a user's ServiceLink spec may and may not say."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from servicelink.model import (
    BUILT_IN_MAPPINGS,
    CREDENTIALS_TEMPLATE,
    DEFAULT_TEMPLATE,
    MAX_LINKS,
    OPTIONAL_KIND_SETTINGS,
    WORKLOAD_RESOURCES,
    BuiltInKindError,
    Link,
    ServiceLinkSpec,
    WorkloadResource,
    describe_spec_error,
    mapped_kind_name,
    parse_mapping,
    parse_spec,
)


def link(**overrides: Any) -> dict[str, Any]:
    return {"key": "AUTH_SERVICE_URL", "service": "auth-service", **overrides}


def spec(**overrides: Any) -> dict[str, Any]:
    return {"configMapName": "gateway-service-config", "links": [link()], **overrides}


def error_text(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_spec(raw)
    return str(caught.value)


# --- keys -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["AUTH_SERVICE_URL", "_private", "x", "MONGODB_HOST2", "camelCase"])
def test_key_that_is_an_env_var_name_is_accepted(key: str) -> None:
    assert Link.model_validate(link(key=key)).key == key


@pytest.mark.parametrize("key", ["", "1AUTH", "AUTH-URL", "auth.url", "AUTH URL", "ÄUTH", "AUTH$"])
def test_key_that_is_not_an_env_var_name_is_rejected_and_named(key: str) -> None:
    text = error_text(spec(links=[link(key=key)]))
    assert "links.0.key" in text
    assert "A-Za-z_" in text


def test_key_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Link.model_validate(link(key="AUTH\n"))


def test_duplicate_keys_are_rejected_naming_the_key() -> None:
    raw = spec(links=[link(), link(service="other-auth")])
    assert "'AUTH_SERVICE_URL' appears more than once" in error_text(raw)


def test_keys_differing_only_in_case_are_distinct() -> None:
    parsed = parse_spec(spec(links=[link(key="url"), link(key="URL")]))
    assert [entry.key for entry in parsed.links] == ["url", "URL"]


# --- port ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [1, 3001, 65535])
def test_port_number_in_range_is_accepted(port: int) -> None:
    assert Link.model_validate(link(port=port)).port == port


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_port_number_out_of_range_is_rejected(port: int) -> None:
    assert "between 1 and 65535" in error_text(spec(links=[link(port=port)]))


@pytest.mark.parametrize("port", ["http", "grpc-web", "web1", "h2c", "a" * 15])
def test_port_name_is_accepted_as_a_name(port: str) -> None:
    assert Link.model_validate(link(port=port)).port == port


@pytest.mark.parametrize("port", ["HTTP", "a" * 16, "-http", "http-", "my--port", "8080", "my_port", ""])
def test_bad_port_name_is_rejected(port: str) -> None:
    assert "links.0.port" in error_text(spec(links=[link(port=port)]))


def test_port_false_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Link.model_validate(link(port=False))


def test_port_true_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Link.model_validate(link(port=True))


def test_port_left_out_is_none() -> None:
    assert Link.model_validate(link()).port is None


# --- path, scheme, template ---------------------------------------------------------------------------------


def test_path_without_leading_slash_is_rejected() -> None:
    assert "must start with '/'" in error_text(spec(links=[link(path="v1")]))


@pytest.mark.parametrize("path", ["", "/", "/v1", "/api/v1?x=1"])
def test_path_empty_or_with_leading_slash_is_accepted(path: str) -> None:
    assert Link.model_validate(link(path=path)).path == path


@pytest.mark.parametrize("scheme", ["http", "https", "mongodb+srv", "grpc"])
def test_uri_scheme_is_accepted(scheme: str) -> None:
    assert Link.model_validate(link(scheme=scheme)).scheme == scheme


@pytest.mark.parametrize("scheme", ["", "1http", "ht tp", "http://"])
def test_bad_scheme_is_rejected(scheme: str) -> None:
    with pytest.raises(ValidationError):
        Link.model_validate(link(scheme=scheme))


def test_defaults_match_the_contract() -> None:
    parsed = Link.model_validate(link())
    assert (parsed.scheme, parsed.path, parsed.template, parsed.namespace) == ("http", "", DEFAULT_TEMPLATE, None)
    assert DEFAULT_TEMPLATE == "{scheme}://{host}:{port}{path}"


def test_unknown_placeholder_is_rejected_naming_it_and_the_known_ones() -> None:
    text = error_text(spec(links=[link(template="{scheme}://{hostname}:{port}")]))
    assert "{hostname}" in text
    assert "{host}" in text
    assert "{fqdn}" in text


@pytest.mark.parametrize(
    "template",
    ["{host}", "{fqdn}", "{scheme}://{host}:{port}{path}", "{service}.{namespace}", "mongodb://{host}/db", "plain"],
)
def test_known_placeholders_are_accepted(template: str) -> None:
    assert Link.model_validate(link(template=template)).template == template


@pytest.mark.parametrize("template", ["{host", "host}", "{host!r}", "{host:>10}", "{}", "{0}"])
def test_malformed_template_is_rejected(template: str) -> None:
    with pytest.raises(ValidationError):
        Link.model_validate(link(template=template))


# --- service, namespace -------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["auth-service", "a", "mongodb", "a" * 63, "svc-1"])
def test_dns1035_service_name_is_accepted(service: str) -> None:
    assert Link.model_validate(link(service=service)).service == service


@pytest.mark.parametrize("service", ["", "1auth", "Auth", "auth_service", "auth.service", "auth-", "a" * 64])
def test_non_dns1035_service_name_is_rejected(service: str) -> None:
    assert "DNS-1035" in error_text(spec(links=[link(service=service)]))


@pytest.mark.parametrize("namespace", ["identity", "1team", "a" * 63])
def test_dns1123_namespace_is_accepted(namespace: str) -> None:
    assert Link.model_validate(link(namespace=namespace)).namespace == namespace


@pytest.mark.parametrize("namespace", ["", "Identity", "team_a", "a.b", "a" * 64])
def test_bad_namespace_is_rejected(namespace: str) -> None:
    with pytest.raises(ValidationError):
        Link.model_validate(link(namespace=namespace))


def test_service_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Link.model_validate(link(service="auth-service\n"))


def test_unknown_link_field_is_rejected() -> None:
    assert "servce" in error_text(spec(links=[link(servce="auth-service")]))


# --- the spec -----------------------------------------------------------------------------------------------


def test_zero_links_are_rejected() -> None:
    assert "1 to 256" in error_text(spec(links=[]))


def test_257_links_are_rejected_and_256_accepted() -> None:
    many = [link(key=f"KEY_{i}") for i in range(MAX_LINKS + 1)]
    assert MAX_LINKS == 256
    assert "not 257" in error_text(spec(links=many))
    assert len(parse_spec(spec(links=many[:256])).links) == 256


def test_missing_links_or_config_map_name_is_rejected() -> None:
    assert "links" in error_text({"configMapName": "cm"})
    assert "configMapName" in error_text({"links": [link()]})


@pytest.mark.parametrize("name", ["gateway-service-config", "a", "app.config", "0cfg", "a" * 253])
def test_dns_subdomain_config_map_name_is_accepted(name: str) -> None:
    assert parse_spec(spec(configMapName=name)).config_map_name == name


@pytest.mark.parametrize("name", ["", "Gateway", "cfg_a", "-cfg", "cfg-", "a..b", "a" * 254])
def test_bad_config_map_name_is_rejected(name: str) -> None:
    assert "configMapName" in error_text(spec(configMapName=name))


def test_a_configmap_kubernetes_writes_itself_is_refused_with_the_fix() -> None:
    """A spec that passed an older CRD still never names kube-root-ca.crt to the operator."""
    with pytest.raises(ValidationError) as caught:
        parse_spec(spec(configMapName="kube-root-ca.crt"))
    assert describe_spec_error(caught.value) == (
        "spec.configMapName: Value error, configMapName may not be kube-root-ca.crt: Kubernetes writes that"
        " ConfigMap into every namespace itself; name a ConfigMap of your own"
    )
    assert parse_spec(spec(configMapName="kube-root-ca.crt-copy")).config_map_name == "kube-root-ca.crt-copy"


def test_parse_spec_fills_defaults() -> None:
    parsed = parse_spec(spec())
    assert isinstance(parsed, ServiceLinkSpec)
    assert parsed.config_map_name == "gateway-service-config"
    assert parsed.rollout == "Rolling"
    assert parsed.workloads.auto is True
    assert parsed.workloads.names == []
    assert parsed.workloads.selector is None


def test_parse_spec_reads_the_full_contract_example() -> None:
    parsed = parse_spec(
        {
            "configMapName": "gateway-service-config",
            "links": [
                {
                    "key": "AUTH_SERVICE_URL",
                    "service": "auth-service",
                    "namespace": "identity",
                    "port": 3001,
                    "scheme": "http",
                    "path": "/v1",
                    "template": "{scheme}://{host}:{port}{path}",
                },
                {"key": "MONGODB_HOST", "service": "mongodb", "template": "{host}"},
            ],
            "workloads": {
                "auto": True,
                "names": [{"kind": "Deployment", "name": "gateway-service"}],
                "selector": {
                    "matchLabels": {"tier": "edge"},
                    "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}],
                },
            },
            "rollout": "None",
        }
    )
    assert [entry.key for entry in parsed.links] == ["AUTH_SERVICE_URL", "MONGODB_HOST"]
    assert parsed.links[0].namespace == "identity"
    assert parsed.links[0].port == 3001
    assert parsed.workloads.names[0].name == "gateway-service"
    assert parsed.workloads.selector is not None
    assert parsed.workloads.selector.match_labels == {"tier": "edge"}
    assert parsed.workloads.selector.match_expressions[0].operator == "In"
    assert parsed.rollout == "None"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rollout", "Recreate"),
        ("workloads", {"names": [{"kind": "Pod", "name": "x"}]}),
        ("workloads", {"selector": {"matchExpressions": [{"key": "a", "operator": "Gt"}]}}),
        ("extra", 1),
    ],
)
def test_bad_rollout_workload_kind_operator_or_extra_field_is_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        parse_spec(spec(**{field: value}))


def test_parse_spec_on_a_non_mapping_raises_validation_error() -> None:
    with pytest.raises(ValidationError):
        parse_spec(["not", "a", "spec"])


# --- the CRD's bounds, checked by the model too (both come from the same Field) -------------------------------


@pytest.mark.parametrize(
    ("field", "longest"),
    [("key", "K" * 253), ("scheme", "h" * 32), ("path", "/" + "p" * 2047), ("template", "t" * 512)],
)
def test_a_value_at_the_crds_max_length_is_accepted_and_one_longer_rejected(field: str, longest: str) -> None:
    assert getattr(Link.model_validate(link(**{field: longest})), field) == longest
    with pytest.raises(ValidationError, match=field):
        Link.model_validate(link(**{field: longest + longest[-1]}))


# --- WorkloadMapping ------------------------------------------------------------------------------------------

CLONESET = {"kind": "CloneSet", "version": "v1alpha1", "template": ".spec.template", "rolls": True}


def mapping_error(name: str = "clonesets.apps.kruise.io", **overrides: Any) -> str:
    with pytest.raises(ValueError, match=r"^(metadata\.name|spec\.)") as caught:
        parse_mapping(name, {**CLONESET, **overrides})
    return str(caught.value)


def test_parse_mapping_reads_the_designs_example() -> None:
    assert parse_mapping("clonesets.apps.kruise.io", CLONESET) == WorkloadResource(
        "CloneSet.apps.kruise.io", "apps.kruise.io", "v1alpha1", "clonesets", ("spec", "template"), rolls=True
    )


def test_a_mapping_rolls_unless_it_says_not_and_takes_a_deeper_template() -> None:
    spec = {"kind": "Task", "version": "v1beta1", "template": ".spec.jobTemplate.spec.template"}
    assert parse_mapping("tasks.example.com", spec).rolls is True
    parsed = parse_mapping("tasks.example.com", {**spec, "rolls": False})
    assert (parsed.template, parsed.rolls) == (("spec", "jobTemplate", "spec", "template"), False)


@pytest.mark.parametrize("name", ["clonesets", "CloneSets.apps.kruise.io", "clonesets.", "clone_sets.apps"])
def test_a_mapping_name_that_is_not_plural_dot_group_is_refused_with_the_fix(name: str) -> None:
    text = mapping_error(name)
    assert text.startswith(f"metadata.name {name!r}")
    assert "<plural>.<group>" in text


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("kind", "cloneSet", "CloneSet"),
        ("kind", "", "CloneSet"),
        ("version", "1", "v1alpha1"),
        ("version", "v1gamma1", "v1alpha1"),
        ("template", "spec.template", ".spec.template"),
        ("template", ".spec.containers[0]", "no brackets"),
        ("rolls", "sometimes", "boolean"),
    ],
)
def test_a_bad_mapping_field_is_refused_naming_it_and_the_fix(field: str, value: object, says: str) -> None:
    text = mapping_error(**{field: value})
    assert text.startswith(f"spec.{field}: ")
    assert says in text


@pytest.mark.parametrize("field", ["kind", "version", "template"])
def test_a_missing_mapping_field_is_named(field: str) -> None:
    spec = {k: v for k, v in CLONESET.items() if k != field}
    with pytest.raises(ValueError, match=f"spec.{field}: Field required"):
        parse_mapping("clonesets.apps.kruise.io", spec)


def test_an_unknown_mapping_field_is_named() -> None:
    assert mapping_error(containers=".spec.template.spec.containers").startswith("spec.containers: ")


@pytest.mark.parametrize(
    "name",
    [
        "deployments.apps",
        "statefulsets.apps",
        "daemonsets.apps",
        "cronjobs.batch",
        "jobs.batch",
        "rollouts.argoproj.io",
    ],
)
def test_a_mapping_of_a_built_in_kind_is_refused(name: str) -> None:
    with pytest.raises(BuiltInKindError, match=f"^{name} is the built-in kind {BUILT_IN_MAPPINGS[name]}: "):
        parse_mapping(name, CLONESET)


def test_a_mapping_of_argo_rollouts_says_how_to_enable_them() -> None:
    with pytest.raises(BuiltInKindError, match="enable it with --argo-rollouts"):
        parse_mapping("rollouts.argoproj.io", CLONESET)


def test_every_optional_kind_says_how_to_enable_it() -> None:
    assert set(OPTIONAL_KIND_SETTINGS) == {kind for kind, r in WORKLOAD_RESOURCES.items() if r.optional}


def test_a_mapped_kind_is_named_kind_dot_group() -> None:
    assert mapped_kind_name("CloneSet", "apps.kruise.io") == "CloneSet.apps.kruise.io"


# --- credentials ------------------------------------------------------------------------------------------


def test_a_link_with_credentials_defaults_to_the_template_with_userinfo_and_the_usual_keys() -> None:
    parsed = parse_spec(spec(secretName="app-secrets", links=[link(credentials={"secretName": "pg"})]))
    only = parsed.links[0]
    assert only.template == CREDENTIALS_TEMPLATE == "{scheme}://{username}:{password}@{host}:{port}{path}"
    assert only.credentials is not None
    assert (only.credentials.username_key, only.credentials.password_key) == ("username", "password")
    assert parsed.secret_keys == frozenset({"AUTH_SERVICE_URL"})


def test_a_template_of_its_own_is_kept_with_credentials() -> None:
    parsed = parse_spec(spec(secretName="s", links=[link(credentials={"secretName": "pg"}, template="{password}")]))
    assert parsed.links[0].template == "{password}"


def test_credentials_need_spec_secret_name() -> None:
    assert "set spec.secretName" in error_text(spec(links=[link(credentials={"secretName": "pg"})]))


def test_username_or_password_in_a_template_need_credentials() -> None:
    assert "set links[].credentials" in error_text(spec(links=[link(template="{scheme}://{username}@{host}")]))


@pytest.mark.parametrize(
    "credentials", [{"secretName": "Bad_Name"}, {"secretName": "pg", "passwordKey": "a/b"}, {"usernameKey": "u"}]
)
def test_bad_credentials_are_rejected(credentials: dict[str, Any]) -> None:
    assert "credentials" in error_text(spec(secretName="s", links=[link(credentials=credentials)]))
