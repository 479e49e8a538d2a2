"""Property tests: bad or odd input never escapes the pure parser, resolver and renderer as anything but a refusal;
a workload reading any number of servicelink ConfigMaps rolls once per real change and never otherwise."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from servicelink import conditions as c
from servicelink.messages import MESSAGE_LIMIT
from servicelink.model import (
    DEFAULT_TEMPLATE,
    FIELD_MANAGER,
    MAX_LINKS,
    PLACEHOLDERS,
    RESERVED_CONFIGMAP_NAMES,
    WORKLOAD_RESOURCES,
    ServiceLinkSpec,
    parse_spec,
)
from servicelink.plan import parse_servicelink, plan_invalid_status
from servicelink.render import plan_configmap, render_configmap, render_data_size, render_hash
from servicelink.resolve import resolve_links
from servicelink.rollout import consumed, merge_rollouts, plan_rollouts
from servicelink.status import describe_invalid_spec
from servicelink.views import Reads, ServicePort, ServiceView, WorkloadView

FULL = os.environ.get("SERVICELINK_FULL") == "1"
EXAMPLES = settings(
    max_examples=1000 if FULL else 200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
NAMESPACE = "home"
OTHER = "away"

# --- strategies ------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=True) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
dns_label = st.from_regex(r"\A[a-z]([-a-z0-9]{0,10}[a-z0-9])?\Z")
env_key = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,20}\Z")
port_name = st.from_regex(r"\A[a-z]{1,6}(-[a-z0-9]{1,4})?\Z")
literal = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="{}"), max_size=30)
template = st.lists(literal | st.sampled_from(sorted(PLACEHOLDERS)).map(lambda p: "{" + p + "}"), max_size=6).map(
    "".join
)
almost_any_text = st.text(max_size=20) | st.sampled_from(["", "-", "{", "}", "{port", "{x}", "Ä", "a" * 70, "0", "_"])


@st.composite
def raw_links(draw: st.DrawFn, *, valid: bool) -> dict[str, Any]:
    """A link mapping: from the valid shapes, or (``valid=False``) with any field possibly odd."""

    def field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return good if valid else good | almost_any_text | json_scalars

    link: dict[str, Any] = {"key": draw(field(env_key)), "service": draw(field(dns_label))}
    if draw(st.booleans()):
        link["namespace"] = draw(field(st.sampled_from([NAMESPACE, OTHER]) | dns_label))
    if draw(st.booleans()):
        link["port"] = draw(field(st.integers(1, 65535) | port_name))
    if draw(st.booleans()):
        link["scheme"] = draw(field(st.sampled_from(["http", "https", "redis", "mongodb+srv", "grpc"])))
    if draw(st.booleans()):
        link["path"] = draw(field(st.just("") | st.text(max_size=20).map(lambda p: "/" + p)))
    if draw(st.booleans()):
        link["template"] = draw(field(template | st.just(DEFAULT_TEMPLATE)))
    return link


@st.composite
def raw_specs(draw: st.DrawFn, *, valid: bool) -> dict[str, Any]:
    """A spec mapping whose links are valid shapes, or (``valid=False``) anything near them."""
    links = draw(st.lists(raw_links(valid=valid), min_size=1, max_size=8, unique_by=lambda link: str(link["key"])))
    spec: dict[str, Any] = {"configMapName": draw(dns_label), "links": links}
    if draw(st.booleans()):
        spec["rollout"] = draw(st.sampled_from(["Rolling", "None"]))
    if not valid:
        mutate = draw(st.sampled_from(["none", "drop", "replace", "add"]))
        name = draw(st.sampled_from(["configMapName", "links", "workloads", "rollout", "extra"]))
        if mutate == "drop":
            spec.pop(name, None)
        elif mutate in ("replace", "add"):
            spec[name] = draw(json_values)
    return spec


# Values at the API's bounds and just past them, and values of the wrong type.
odd_types = st.sampled_from([True, 1.5, -1, 0, 65536, [], {}, "80", "", None])
configmap_names = st.sampled_from([*RESERVED_CONFIGMAP_NAMES, "a" * 253, "a" * 254, "kube-root-ca.crt.d"])
hostile_templates = st.sampled_from(
    ["{fqdn}" * 85, "{fqdn}" * 86, "x" * 512, "x" * 513, "{username}", "{" * 600, "{fqdn:>9}", "{0}", "{}"]
)


@st.composite
def hostile_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A spec as a user or a fuzzer could store under an older CRD: names at the limits, huge templates, odd types.

    Each field is hostile one time in four, so that specs at the limits are accepted too, not only refused.
    """

    def rarely(value: Any, hostile: st.SearchStrategy[Any]) -> Any:
        return draw(hostile) if draw(st.integers(0, 3)) == 0 else value

    shape = draw(raw_links(valid=True))
    shape["service"] = rarely(shape["service"], st.sampled_from(["a" * 63, "a" * 64]) | odd_types)
    shape["template"] = rarely(shape.get("template", DEFAULT_TEMPLATE), hostile_templates | odd_types)
    shape["path"] = rarely(shape.get("path", ""), st.sampled_from(["/" + "p" * 2047, "/" + "p" * 2048]) | odd_types)
    shape["port"] = rarely(shape.get("port", 80), odd_types)
    count = draw(st.sampled_from([0, 1, 2, MAX_LINKS, MAX_LINKS + 1]))
    keys = draw(st.sampled_from(["K{}", "K{}" + "_" * 248, "K{}" + "_" * 251, "1K{}"]))
    spec: dict[str, Any] = {
        "configMapName": rarely(draw(dns_label), configmap_names | almost_any_text | odd_types),
        "links": rarely([{**shape, "key": keys.format(i)} for i in range(count)], json_values),
    }
    if draw(st.booleans()):
        spec["secretName"] = rarely(draw(dns_label), configmap_names | odd_types)
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["Deployment", "CloneSet.apps.kruise.io", "Pod", "A" + ".b" * 200]))
        spec["workloads"] = {"names": [{"kind": kind, "name": "w"}]}
    if draw(st.booleans()):
        spec["waitForEndpoints"] = rarely(True, odd_types)
    return spec


@st.composite
def service_views(draw: st.DrawFn, name: str, namespace: str) -> ServiceView:
    """Any shape a Service can take as resolution sees it: odd ports, any type, any annotation."""
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "", "Headless"]))
    ports = draw(
        st.lists(
            st.builds(ServicePort, name=st.none() | port_name | st.text(max_size=8), port=st.integers(0, 70000)),
            max_size=4,
        )
    )
    return ServiceView(
        namespace=namespace,
        name=name,
        type=kind,
        ports=tuple(ports),
        external_name=draw(st.none() | st.text(alphabet=st.characters(codec="utf-8"), max_size=40)),
        expose_to=frozenset(draw(st.lists(st.sampled_from([NAMESPACE, OTHER, "*", "else"]), max_size=3))),
    )


@st.composite
def specs_and_services(draw: st.DrawFn) -> tuple[ServiceLinkSpec, dict[tuple[str, str], ServiceView]]:
    """A valid spec, and for each Service it names: nothing, or any Service shape."""
    try:
        spec = parse_spec(draw(raw_specs(valid=True)))
    except ValidationError:
        assume(False)
        raise
    services: dict[tuple[str, str], ServiceView] = {}
    for link in spec.links:
        key = (link.namespace or NAMESPACE, link.service)
        if key not in services and draw(st.integers(0, 4)) > 0:
            services[key] = draw(service_views(link.service, key[0]))
    return spec, services


# --- properties ------------------------------------------------------------------------------------


@EXAMPLES
@given(raw=json_values)
def test_parse_spec_raises_only_validation_errors_on_any_json(raw: Any) -> None:
    try:
        spec = parse_spec(raw)
    except ValidationError:
        return
    assert 1 <= len(spec.links) <= MAX_LINKS


@EXAMPLES
@given(raw=raw_specs(valid=False))
def test_parse_spec_raises_only_validation_errors_on_near_valid_specs(raw: dict[str, Any]) -> None:
    try:
        spec = parse_spec(raw)
    except ValidationError as error:
        problems = error.errors()
    else:
        problems = []
        keys = [link.key for link in spec.links]
        assert len(keys) == len(set(keys))
        assert all(CONFIGMAP_KEY.fullmatch(key) for key in keys)
    # A user is told what is wrong: every error says where or what.
    assert all(e["loc"] or e["msg"] for e in problems)


@EXAMPLES
@given(case=specs_and_services(), domain=st.sampled_from(["cluster.local", "example.internal"]))
def test_resolve_never_raises_and_renders_a_valid_configmap(
    case: tuple[ServiceLinkSpec, dict[tuple[str, str], ServiceView]], domain: str
) -> None:
    spec, services = case
    results = resolve_links(spec, namespace=NAMESPACE, services=services, endpoints={}, cluster_domain=domain)
    assert [r.key for r in results] == [link.key for link in spec.links]
    values: dict[str, str] = {}
    for result, link in zip(results, spec.links, strict=True):
        if result.value is None:
            assert result.reason
            assert result.message
            continue
        assert isinstance(result.value, str)
        result.value.encode("utf-8")  # a ConfigMap value is UTF-8 text
        values[result.key] = result.value
        # A Service elsewhere that has not opened to us never yields a value.
        target = services.get((link.namespace or NAMESPACE, link.service))
        assert target is not None
        assert target.allows(NAMESPACE)
    for result, link in zip(results, spec.links, strict=True):
        target_ns = link.namespace or NAMESPACE
        target = services.get((target_ns, link.service))
        if target_ns != NAMESPACE and (target is None or not target.allows(NAMESPACE)):
            # "Absent" and "closed" read the same, and neither leaks a port.
            assert result.reason == "CrossNamespaceForbidden"
            assert not result.keeps_last_value
            absent = resolve_links(
                ServiceLinkSpec.model_validate({"configMapName": "x", "links": [link.model_dump(by_alias=True)]}),
                namespace=NAMESPACE,
                services={},
                endpoints={},
                cluster_domain=domain,
            )[0]
            assert (result.reason, result.message) == (absent.reason, absent.message)

    body = render_configmap(name=spec.config_map_name, namespace=NAMESPACE, data=values, owner=None)
    assert body["data"] == values
    assert all(CONFIGMAP_KEY.fullmatch(key) and len(key) <= 253 for key in body["data"])
    assert all(isinstance(value, str) for value in body["data"].values())
    plan = plan_configmap(
        None, desired=values, previous={}, siblings=frozenset(), owner_uid="uid", manager=FIELD_MANAGER
    )
    assert plan.apply_data == values
    assert plan.write
    assert plan.size == render_data_size(values)
    digest = render_hash(values)
    assert re.fullmatch(r"[0-9a-f]{8}", digest)
    assert digest == render_hash(dict(reversed(list(values.items()))))


@EXAMPLES
@given(
    values=st.dictionaries(env_key, st.text(max_size=30), max_size=6),
    key=env_key,
    value=st.text(max_size=30),
)
def test_hash_changes_exactly_when_a_value_changes(values: dict[str, str], key: str, value: str) -> None:
    changed = {**values, key: value}
    assert (render_hash(changed) == render_hash(values)) == (changed == values)


@EXAMPLES
@given(
    current=st.dictionaries(env_key, st.text(max_size=20), max_size=5),
    foreign=st.dictionaries(st.from_regex(r"\A[-._a-zA-Z0-9]{1,20}\Z"), st.text(max_size=20), max_size=3),
    desired=st.dictionaries(env_key, st.text(max_size=20), max_size=5),
)
def test_plan_never_releases_or_rewrites_a_foreign_key(
    current: dict[str, str], foreign: dict[str, str], desired: dict[str, str]
) -> None:
    foreign = {k: v for k, v in foreign.items() if k not in current and k not in desired}
    fields: dict[str, Any] = {"f:data": {f"f:{k}": {} for k in current}}
    other_fields: dict[str, Any] = {"f:data": {f"f:{k}": {} for k in foreign}}
    configmap = {
        "metadata": {
            "name": "cfg",
            "namespace": NAMESPACE,
            "managedFields": [
                {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": fields},
                {"manager": "helm", "operation": "Update", "fieldsV1": other_fields},
            ],
        },
        "data": {**current, **foreign},
    }
    plan = plan_configmap(
        configmap, desired=desired, previous=current, siblings=frozenset(), owner_uid="uid", manager=FIELD_MANAGER
    )
    assert plan.apply_data == desired
    assert not set(plan.apply_data) & set(foreign)
    assert all(key not in foreign for key, _, _ in plan.changes)
    assert plan.write == (current != desired)


# --- rollouts of a workload that reads several servicelink ConfigMaps -------------------------------------------

KEYS = ("A", "B", "C")
short_value = st.sampled_from(["1", "2", "3"])


@st.composite
def readers(draw: st.DrawFn) -> tuple[dict[str, dict[str, str]], dict[str, Reads]]:
    """Up to five ConfigMaps, one ServiceLink each, and what one workload reads of each (None: every key)."""
    configmaps = [f"cm-{i}" for i in range(draw(st.integers(1, 5)))]
    values = {cm: {key: draw(short_value) for key in KEYS} for cm in configmaps}
    reads: dict[str, Reads] = {
        cm: draw(st.none() | st.frozensets(st.sampled_from(KEYS), min_size=1)) for cm in configmaps
    }
    return values, reads


def reconcile_all(
    w: WorkloadView,
    order: list[str],
    *,
    before: dict[str, dict[str, str]],
    after: dict[str, dict[str, str]],
    burst: bool,
) -> tuple[WorkloadView, int]:
    """Every ServiceLink reconciles once, in ``order``; return the workload and the patches it took.

    In a burst the Reconciler holds each rollout until the last ServiceLink of
    the burst has written, and sends them in one patch; otherwise each goes out
    at once and the next ServiceLink sees it.
    """
    held = []
    patches = 0
    for cm in order:
        plans = plan_rollouts(
            [(w, w.reads[cm])],
            configmap=cm,
            managed_configmaps=frozenset(order),
            managed=after[cm],
            baseline=before[cm],
            desired=after[cm],
        )
        if burst:
            held += plans
        elif plans:
            w, patches = replace(w, config_hash=merge_rollouts(w.config_hash, plans)), patches + 1
    if held:
        w, patches = replace(w, config_hash=merge_rollouts(w.config_hash, held)), patches + 1
    return w, patches


@EXAMPLES
@given(scenario=readers(), legacy=st.booleans(), data=st.data())
def test_a_workload_rolls_once_per_real_change_whatever_order_the_servicelinks_reconcile(
    scenario: tuple[dict[str, dict[str, str]], dict[str, Reads]], legacy: bool, data: st.DataObject
) -> None:
    values, reads = scenario
    configmaps = sorted(values)
    # Before: never rolled, or the one bare hash the last release wrote for one of its ConfigMaps.
    first = data.draw(st.sampled_from(configmaps))
    start = render_hash(consumed(values[first], reads[first])) if legacy else None
    w = WorkloadView(WORKLOAD_RESOURCES["Deployment"], "ns", "edge", {}, reads, start)
    for _ in range(data.draw(st.integers(1, 4))):
        changes = data.draw(
            st.lists(st.tuples(st.sampled_from(configmaps), st.sampled_from(KEYS), short_value), max_size=4)
        )
        after = {cm: dict(v) for cm, v in values.items()}
        for cm, key, value in changes:
            after[cm][key] = value
        changed = {cm for cm in configmaps if after[cm] != values[cm]}
        order = data.draw(st.permutations(configmaps))
        w, patches = reconcile_all(w, order, before=values, after=after, burst=len(changed) > 1)
        real = any(consumed(values[cm], reads[cm]) != consumed(after[cm], reads[cm]) for cm in configmaps)
        assert patches == (1 if real else 0)
        values = after
        # Resyncs, restarts, hand-overs: every ServiceLink again, nothing changed, in any order.
        for _ in range(2):
            w, patches = reconcile_all(
                w, data.draw(st.permutations(configmaps)), before=values, after=values, burst=False
            )
            assert patches == 0


@EXAMPLES
@given(raw=hostile_specs())
def test_a_hostile_spec_is_served_or_reported_as_invalid_never_an_exception(raw: dict[str, Any]) -> None:
    """What the reconcile runs on a stored spec: parse it, then resolve and render it, or report it InvalidSpec."""
    view = parse_servicelink(
        {"metadata": {"name": "sl", "namespace": NAMESPACE, "uid": "u", "generation": 3}, "spec": raw}
    )
    try:
        spec = parse_spec(view.spec)
    except ValidationError as error:
        write = plan_invalid_status(view, describe_invalid_spec(error), now="2026-01-01T00:00:00Z")
        assert write is not None
        (ready,) = write.patch["conditions"]
        assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", c.INVALID_SPEC, 3)
        assert 0 < len(ready["message"]) <= MESSAGE_LIMIT
        assert [(e.reason, e.warning) for e in write.events] == [(c.INVALID_SPEC, True)]
        return
    assert spec.config_map_name not in RESERVED_CONFIGMAP_NAMES
    services = {
        (link.namespace or NAMESPACE, link.service): ServiceView(
            namespace=link.namespace or NAMESPACE,
            name=link.service,
            type="ClusterIP",
            ports=(ServicePort(name=str(link.port or "http"), port=link.port if isinstance(link.port, int) else 80),),
            external_name=None,
            expose_to=frozenset({"*"}),
        )
        for link in spec.links
    }
    results = resolve_links(spec, namespace=NAMESPACE, services=services, endpoints={}, cluster_domain="cluster.local")
    values = {r.key: r.value for r in results if r.value is not None}
    assert render_configmap(name=spec.config_map_name, namespace=NAMESPACE, data=values, owner=None)["data"] == values
