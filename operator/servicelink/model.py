"""The ServiceLink API as pydantic models, and the names the operator shares with the cluster (pure)."""

from __future__ import annotations

import re
import string
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GROUP = "servicelink.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ServiceLink"
PLURAL = "servicelinks"

FIELD_MANAGER = "servicelink"
FINALIZER = f"{GROUP}/configmap-keys"
EXPOSE_TO_ANNOTATION = f"{GROUP}/expose-to"
# Consent of an object's owner: the ServiceLinks (names, or "*") that may write this ConfigMap, or roll this workload.
WRITABLE_BY_ANNOTATION = f"{GROUP}/writable-by"
ROLLABLE_BY_ANNOTATION = f"{GROUP}/rollable-by"
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"

DEFAULT_TEMPLATE = "{scheme}://{host}:{port}{path}"
PLACEHOLDERS = frozenset({"scheme", "host", "port", "path", "service", "namespace", "fqdn"})
MAX_LINKS = 256

KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# IANA service names as Kubernetes accepts them for port names.
PORT_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?=[a-z0-9]))*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
# The CRD's CEL rule: literal text and known placeholders, no other braces.
TEMPLATE = re.compile(r"^([^{}]|\{(" + "|".join(sorted(PLACEHOLDERS)) + r")\})*$")

WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet"]
# Each workload kind's resource in apps/v1: the one table of the kinds, their paths and their watches.
WORKLOAD_RESOURCES: dict[WorkloadKind, str] = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
}
WORKLOAD_KINDS: tuple[WorkloadKind, ...] = tuple(WORKLOAD_RESOURCES)
# The kinds the operator lists and watches.
ListedKind = Literal["ServiceLink", "Service", "EndpointSlice", "Deployment", "StatefulSet", "DaemonSet"]
LISTED_KINDS: tuple[ListedKind, ...] = ("ServiceLink", "Service", "EndpointSlice", *WORKLOAD_KINDS)


def parse_name_list(value: object) -> frozenset[str]:
    """Return the names in an annotation value such as ``"a, b"`` (commas or spaces between them)."""
    return frozenset(str(value or "").replace(",", " ").split())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def template_placeholders(template: str) -> list[str]:
    """Return the placeholder names in ``template``; raise ``ValueError`` on a malformed brace."""
    names: list[str] = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} may not carry a format spec or conversion")
        names.append(name)
    return names


class Link(_Strict):
    """One ConfigMap key and the Service whose address it holds."""

    key: str
    service: str
    namespace: str | None = None
    port: int | str | None = None
    scheme: str = "http"
    path: str = ""
    template: str = DEFAULT_TEMPLATE

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not KEY_PATTERN.fullmatch(value):
            raise ValueError(f"key {value!r} must match [A-Za-z_][A-Za-z0-9_]* (an environment variable name)")
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        if len(value) > 63 or not DNS1035_LABEL.fullmatch(value):
            raise ValueError(f"service {value!r} must be a DNS-1035 label (lowercase, at most 63 characters)")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 63 or not DNS1123_LABEL.fullmatch(value)):
            raise ValueError(f"namespace {value!r} must be a DNS-1123 label")
        return value

    @field_validator("port", mode="before")
    @classmethod
    def _port_not_bool(cls, value: object) -> object:
        # Before pydantic's coercion, which would read true as port 1.
        if isinstance(value, bool):
            raise ValueError("port must be a number or a port name, not a boolean")
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 1 <= value <= 65535:
            raise ValueError(f"port {value} must be between 1 and 65535")
        if isinstance(value, str) and not PORT_NAME.fullmatch(value):
            raise ValueError(f"port {value!r} must be a port name (IANA service name: lowercase, at most 15)")
        return value

    @field_validator("scheme")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not SCHEME.fullmatch(value):
            raise ValueError(f"scheme {value!r} must be a URI scheme such as http or https")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError(f"path {value!r} must start with '/'")
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        known = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
        unknown = sorted({m for m in re.findall(r"\{([^{}]*)\}", value)} - PLACEHOLDERS)
        if unknown:
            raise ValueError(
                f"template has unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; known: {known}"
            )
        if not TEMPLATE.fullmatch(value):
            raise ValueError(f"template has a stray brace; only the placeholders {known} may use braces")
        return value


class WorkloadRef(_Strict):
    """A workload named in ``spec.workloads.names``."""

    kind: WorkloadKind
    name: str


class LabelSelectorRequirement(_Strict):
    """One ``matchExpressions`` entry of a label selector."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(_Strict):
    """A standard Kubernetes label selector."""

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, alias="matchExpressions")


class Workloads(_Strict):
    """Which workloads are rolled when a value changes."""

    auto: bool = True
    names: list[WorkloadRef] = Field(default_factory=list)
    selector: LabelSelector | None = None


class ServiceLinkSpec(_Strict):
    """``spec`` of a ServiceLink."""

    config_map_name: Annotated[str, Field(alias="configMapName")]
    links: list[Link]
    workloads: Workloads = Field(default_factory=Workloads)
    rollout: Literal["Rolling", "None"] = "Rolling"
    # Roll consumers onto a changed value only once its Service has a ready endpoint.
    wait_for_endpoints: bool = Field(default=False, alias="waitForEndpoints")

    @field_validator("config_map_name")
    @classmethod
    def _config_map_name(cls, value: str) -> str:
        if len(value) > 253 or not DNS1123_SUBDOMAIN.fullmatch(value):
            raise ValueError(f"configMapName {value!r} must be a DNS-1123 subdomain")
        return value

    @model_validator(mode="after")
    def _links(self) -> ServiceLinkSpec:
        if not 1 <= len(self.links) <= MAX_LINKS:
            raise ValueError(f"links must hold 1 to {MAX_LINKS} entries, not {len(self.links)}")
        seen: set[str] = set()
        for link in self.links:
            if link.key in seen:
                raise ValueError(f"key {link.key!r} appears more than once in links")
            seen.add(link.key)
        return self


class RolledOut(_Strict):
    """A workload patched by the last rollout."""

    kind: WorkloadKind
    name: str
    hash: str


class Condition(_Strict):
    """A ``metav1.Condition``."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    last_transition_time: str | None = Field(default=None, alias="lastTransitionTime")


def parse_spec(spec: object) -> ServiceLinkSpec:
    """Validate a raw ``spec`` mapping; raise pydantic's ``ValidationError`` naming the field."""
    return ServiceLinkSpec.model_validate(spec)
