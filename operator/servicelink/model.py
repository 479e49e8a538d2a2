"""The ServiceLink and WorkloadMapping APIs as pydantic models, and the names the operator shares with the cluster.

Pure. The models are the one source of the API: the CRDs' schemas (crds/servicelink.yaml) are
generated from them by hack/crd.sh (servicelink.crd). A field's description is what
``kubectl explain`` prints; its constraints (length, pattern, range) are both what the
API server checks and what the operator checks; ``json_schema_extra`` carries what only
the CRD has (CEL rules, list types, the API server's own defaults).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NamedTuple, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from servicelink.schedule import Window, parse_window

GROUP = "servicelink.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ServiceLink"
PLURAL = "servicelinks"
MAPPING_KIND = "WorkloadMapping"
MAPPING_PLURAL = "workloadmappings"
# The names of the two CRDs, both in crds/servicelink.yaml.
CRD_NAMES = (f"{PLURAL}.{GROUP}", f"{MAPPING_PLURAL}.{GROUP}")

FIELD_MANAGER = "servicelink"
FINALIZER = f"{GROUP}/configmap-keys"
EXPOSE_TO_ANNOTATION = f"{GROUP}/expose-to"
# Consent of an object's owner: the ServiceLinks (names, or "*") that may write this ConfigMap, or roll this workload.
WRITABLE_BY_ANNOTATION = f"{GROUP}/writable-by"
ROLLABLE_BY_ANNOTATION = f"{GROUP}/rollable-by"
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
# A workload owner's opt-out: with this value, no ServiceLink ever rolls the workload.
ROLLOUT_ANNOTATION = f"{GROUP}/rollout"
ROLLOUT_NEVER = "never"
# On an Argo Rollout: restart its pods (spec.restartAt) instead of starting a new revision.
ROLLOUT_RESTART = "restart"
# A workload owner's cooldown: the least seconds between two rollouts of it, over the ServiceLinks' cooldownSeconds.
COOLDOWN_ANNOTATION = f"{GROUP}/cooldown-seconds"
# When servicelink last rolled a workload (RFC 3339, on its own metadata): what a cooldown counts from.
ROLLED_AT_ANNOTATION = f"{GROUP}/rolled-at"
# A label on a rolled workload's own metadata: the digest of the pod template as servicelink's last patch left it.
# A label, because `kubectl rollout undo` of a Deployment restores its annotations with its old template.
ROLLED_TEMPLATE_LABEL = f"{GROUP}/rolled-template"
MAX_COOLDOWN_SECONDS = 7 * 24 * 3600
# A workload owner's rollout windows, over the ServiceLinks' spec.rolloutWindows: "always", or windows.
ROLLOUT_WINDOWS_ANNOTATION = f"{GROUP}/rollout-windows"
MAX_WINDOWS = 16

# Consent of a Secret's owner: the label lets the operator see the Secret at all (its watch selects it), the
# annotation names the ServiceLinks (names, or "*") of the Secret's namespace that may read it.
SHARED_LABEL = f"{GROUP}/shared"
READABLE_BY_ANNOTATION = f"{GROUP}/readable-by"

DEFAULT_TEMPLATE = "{scheme}://{host}:{port}{path}"
# The default template of a link with credentials.
CREDENTIALS_TEMPLATE = "{scheme}://{username}:{password}@{host}:{port}{path}"
# The placeholders a link's credentials fill; percent-encoded as a URL's userinfo.
CREDENTIAL_PLACEHOLDERS = ("username", "password")
# In the order the CRD's rule and its message name them.
PLACEHOLDER_NAMES = ("scheme", "host", "port", "path", "service", "namespace", "fqdn", *CREDENTIAL_PLACEHOLDERS)
PLACEHOLDERS = frozenset(PLACEHOLDER_NAMES)
MAX_LINKS = 256

# Each pattern is written once, in the syntax both Python and the API server (RE2) read.
KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# IANA service names as Kubernetes accepts them for port names: lowercase letters, digits and
# single inner dashes, one letter at least; at most PORT_NAME_MAX characters.
PORT_NAME = re.compile(r"^(?:[a-z0-9]+-)*[a-z0-9]*[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
PORT_NAME_MAX = 15
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
PATH = re.compile(r"^(/.*)?$")
# The CRD's CEL rule: literal text and known placeholders, no other braces.
TEMPLATE = re.compile(r"^([^{}]|[{](" + "|".join(PLACEHOLDER_NAMES) + r")[}])*$")
_TEMPLATE_RULE = {
    "rule": f"self.matches('{TEMPLATE.pattern}')",
    "message": "template may use only the placeholders "
    + " ".join("{" + p + "}" for p in PLACEHOLDER_NAMES)
    + ", and no other braces",
}
_CREDENTIALS_NEEDED = "template uses {username} or {password}: set links[].credentials to the Secret they come from"
_LINK_CREDENTIALS_RULE: JsonDict = {
    "rule": "!has(self.template) || has(self.credentials) || !self.template.matches('[{](username|password)[}]')",
    "message": _CREDENTIALS_NEEDED,
}
_SECRET_NEEDED = "links with credentials are written to a Secret, never to the ConfigMap: set spec.secretName"
_SPEC_SECRET_RULE: JsonDict = {
    "rule": "!self.links.exists(l, has(l.credentials)) || has(self.secretName)",
    "message": _SECRET_NEEDED,
}
# ConfigMaps Kubernetes itself writes into every namespace: kube-controller-manager's root-ca-cert-publisher keeps
# kube-root-ca.crt (the cluster's CA bundle, which every service-account token volume projects) in each one. Consent
# (servicelink.dev/writable-by) keeps the operator out of it once it exists, but in a new namespace, or after a
# delete, a ServiceLink could create it first and own it; so the name is refused outright. Names Kubernetes keeps in
# one system namespace (cluster-info in kube-public) exist from the cluster's start, and add-ons' names (Istio's
# istio-ca-root-cert) are not Kubernetes' to reserve: consent covers those.
RESERVED_CONFIGMAP_NAMES = ("kube-root-ca.crt",)
_RESERVED_NAMES_TEXT = " or ".join(RESERVED_CONFIGMAP_NAMES)
_RESERVED_CONFIGMAP = (
    f"configMapName may not be {_RESERVED_NAMES_TEXT}: Kubernetes writes that ConfigMap into every"
    " namespace itself; name a ConfigMap of your own"
)
_RESERVED_CONFIGMAP_RULE: JsonDict = {
    "rule": "!(self in [" + ", ".join(f"'{name}'" for name in RESERVED_CONFIGMAP_NAMES) + "])",
    "message": _RESERVED_CONFIGMAP,
}
# A key of a Secret's data, as the API server accepts it.
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

# A workload kind: a built-in one by its name ("Deployment"), a mapped one (a WorkloadMapping) as "Kind.group"
# ("CloneSet.apps.kruise.io"), the name `kubectl get` takes, so a mapped kind never shadows a built-in one.
WorkloadKind = str
# The built-in kinds, as the API names them in spec.workloads.names and status (the CRD's enum).
BuiltInKind = Literal["Deployment", "StatefulSet", "DaemonSet", "CronJob", "Rollout"]


class WorkloadResource(NamedTuple):
    """A workload kind: where it is served, where its pod template sits, and whether patching it rolls pods."""

    kind: WorkloadKind  # its name in spec.workloads.names, status and Events
    group: str
    version: str
    plural: str
    template: tuple[str, ...]  # the keys from the object to its pod template
    rolls: bool  # False: a patched template starts no rollout (a CronJob's next Jobs run it); none is awaited
    # True: a CRD serves it, not Kubernetes; watched (and granted in the chart) only when a setting enables it.
    optional: bool = False

    def pod_template(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return the pod template of an object of this kind as the API serves it; empty when absent."""
        found: Any = body
        for key in self.template:
            found = found.get(key) if isinstance(found, Mapping) else None
        return found if isinstance(found, Mapping) else {}


# The one table of the built-in kinds, their paths and their watches.
WORKLOAD_RESOURCES: dict[WorkloadKind, WorkloadResource] = {
    r.kind: r
    for r in (
        WorkloadResource("Deployment", "apps", "v1", "deployments", ("spec", "template"), rolls=True),
        WorkloadResource("StatefulSet", "apps", "v1", "statefulsets", ("spec", "template"), rolls=True),
        WorkloadResource("DaemonSet", "apps", "v1", "daemonsets", ("spec", "template"), rolls=True),
        WorkloadResource(
            "CronJob", "batch", "v1", "cronjobs", ("spec", "jobTemplate", "spec", "template"), rolls=False
        ),
        # Argo Rollouts: its inline pod template, patched like a Deployment's. A Rollout with spec.workloadRef has
        # none: the referenced Deployment holds it, reads the ConfigMap, and is the one patched.
        WorkloadResource(
            "Rollout", "argoproj.io", "v1alpha1", "rollouts", ("spec", "template"), rolls=True, optional=True
        ),
    )
}
WORKLOAD_KINDS = cast("tuple[BuiltInKind, ...]", tuple(WORKLOAD_RESOURCES))
# The kinds every install watches; the optional ones are added by their setting (Settings.workload_kinds).
CORE_WORKLOAD_KINDS = tuple(k for k in WORKLOAD_KINDS if not WORKLOAD_RESOURCES[k].optional)

ReportedKind = Literal["Job"]
# Kinds whose pod template cannot change once created: watched, and reported in status.staleJobs when they run on
# values that changed since; never patched, so never in WORKLOAD_RESOURCES (no consent, no rollout, no patch verb).
REPORTED_RESOURCES: dict[ReportedKind, WorkloadResource] = {
    "Job": WorkloadResource("Job", "batch", "v1", "jobs", ("spec", "template"), rolls=False),
}
REPORTED_KINDS: tuple[ReportedKind, ...] = tuple(REPORTED_RESOURCES)
# The kinds the operator lists and watches.
ListedKind = Literal[
    "ServiceLink", "Service", "EndpointSlice", "Deployment", "StatefulSet", "DaemonSet", "CronJob", "Rollout", "Job"
]
LISTED_KINDS: tuple[ListedKind, ...] = ("ServiceLink", "Service", "EndpointSlice", *WORKLOAD_KINDS, *REPORTED_KINDS)


def parse_name_list(value: object) -> frozenset[str]:
    """Return the names in an annotation value such as ``"a, b"`` (commas or spaces between them)."""
    return frozenset(str(value or "").replace(",", " ").split())


class Annotation(NamedTuple):
    """An annotation servicelink reads or writes, as docs/reference/annotations.md describes it."""

    name: str
    set_by: str
    on: str
    value: str
    effect: str


_KIND = (
    "Deployment, StatefulSet, DaemonSet, CronJob or Rollout (Argo Rollouts, when the operator watches them); or a"
    " kind a WorkloadMapping maps, as Kind.group (CloneSet.apps.kruise.io)."
)
# What spec.workloads.names[].kind takes: a built-in kind, or a mapped one as Kind.group.
WORKLOAD_KIND = re.compile("^(" + "|".join(WORKLOAD_KINDS) + r"|[A-Z][A-Za-z0-9]*([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)+)$")
_WORKLOAD_KINDS_TEXT = ", ".join(WORKLOAD_KINDS[:-1]) + " or " + WORKLOAD_KINDS[-1]
# The consent annotations go on the object whose owner consents, so only someone who may edit it can set them.
ANNOTATIONS: tuple[Annotation, ...] = (
    Annotation(
        EXPOSE_TO_ANNOTATION,
        "the Service's owner",
        "a Service",
        "namespaces, comma-separated, or `*`",
        "ServiceLinks in those namespaces may resolve it; without it a link from another namespace reports"
        " `CrossNamespaceForbidden`. Removing it revokes the value",
    ),
    Annotation(
        WRITABLE_BY_ANNOTATION,
        "the ConfigMap's owner",
        "a ConfigMap the ServiceLink did not create",
        "ServiceLink names of the same namespace, comma-separated, or `*`",
        "those ServiceLinks may write their keys into it (co-managing it); without it they report"
        " `ConfigMapNotShared` and write nothing",
    ),
    Annotation(
        READABLE_BY_ANNOTATION,
        "the Secret's owner",
        f"a Secret that links[].credentials names, which also carries the label `{SHARED_LABEL}=true`",
        "ServiceLink names of the same namespace, comma-separated, or `*`",
        "those ServiceLinks may build values from its data (written only to their spec.secretName). Without the"
        " label the operator never sees the Secret; without either the link reports `SecretNotShared`. Needs the"
        " install's Secret access (the chart's secrets.enabled)",
    ),
    Annotation(
        ROLLABLE_BY_ANNOTATION,
        "the workload's owner",
        f"a {_WORKLOAD_KINDS_TEXT}, or an object of a kind a WorkloadMapping maps (its own metadata)",
        "ServiceLink names of the same namespace, comma-separated, or `*`",
        "a workload named or selected in `spec.workloads` that does not read the ConfigMap is rolled; without it"
        " the ServiceLink reports `WorkloadNotOptedIn`",
    ),
    Annotation(
        ROLLOUT_ANNOTATION,
        "the workload's owner",
        f"a {_WORKLOAD_KINDS_TEXT}, or an object of a kind a WorkloadMapping maps (its own metadata)",
        f"`{ROLLOUT_NEVER}`; on an Argo Rollout, also `{ROLLOUT_RESTART}`",
        f"`{ROLLOUT_NEVER}`: no ServiceLink ever rolls it, even when its pods read a ConfigMap or Secret servicelink"
        " writes and a value changes; the ConfigMap is still written, and each ServiceLink it reads lists it in"
        f" `status.skipped` with `WorkloadOptedOut`. `{ROLLOUT_RESTART}`: a change restarts the Rollout's pods"
        f" (`spec.restartAt`) instead of patching its template, so no new revision and none of its steps run; the"
        f" hash it restarted for goes in `{CONFIG_HASH_ANNOTATION}` on the Rollout's own metadata (with"
        " `spec.workloadRef`: on the Deployment's, once every Rollout of that Deployment asks for restarts). Any other"
        " value, or none: rolled as usual",
    ),
    Annotation(
        COOLDOWN_ANNOTATION,
        "the workload's owner",
        f"a {_WORKLOAD_KINDS_TEXT}, or an object of a kind a WorkloadMapping maps (its own metadata)",
        f"seconds, `0` to `{MAX_COOLDOWN_SECONDS}`",
        "the least time between two rollouts of it, in place of the `spec.cooldownSeconds` of the ServiceLinks it"
        " reads (`0`: none). A rollout due sooner waits, listed in `status.deferred` with `CoolingDown` and the"
        " time it is due; a change meanwhile still makes one rollout. Any other value is ignored",
    ),
    Annotation(
        ROLLOUT_WINDOWS_ANNOTATION,
        "the workload's owner",
        f"a {_WORKLOAD_KINDS_TEXT}, or an object of a kind a WorkloadMapping maps (its own metadata)",
        "`always`, or windows separated by `;`, each `MIN HOUR DOM MONTH WEEKDAY DURATION [ZONE]` such as"
        " `0 2 * * * 2h Europe/Berlin`",
        "when it may be rolled, in place of the `spec.rolloutWindows` of the ServiceLinks it reads (`always`: at"
        " any time). A rollout due outside them waits, listed in `status.deferred` with `OutsideWindow` and the time"
        " the next window opens. A value it cannot read is ignored",
    ),
    Annotation(
        ROLLED_AT_ANNOTATION,
        "the operator",
        f"a {_WORKLOAD_KINDS_TEXT}, or an object of a kind a WorkloadMapping maps (its own metadata)",
        "a time such as `2026-12-07T10:00:00Z`",
        "when servicelink last rolled it, set in the same patch as the config hash: a cooldown counts from it, so"
        " it holds across operator restarts",
    ),
    Annotation(
        ROLLED_TEMPLATE_LABEL,
        "the operator",
        f"a {_WORKLOAD_KINDS_TEXT}, or an object of a kind a WorkloadMapping maps (its own metadata; a label,"
        " which `kubectl rollout undo` leaves as it is)",
        "8 hex digits",
        "the digest of its pod template as servicelink's last rollout left it, set in the same patch. A pod"
        " template that no longer matches it was changed since by its owner (`kubectl rollout undo`, an edit),"
        " which restarted its pods on the values of that moment: it is rolled again only when a value it reads"
        " changes. One that matches and carries an old config hash (rolled while it was opted out, or its kind"
        " not followed) is rolled onto the current values",
    ),
    Annotation(
        CONFIG_HASH_ANNOTATION,
        "the operator",
        "the pod template of each workload a ServiceLink rolls (a CronJob's: its jobTemplate's; a mapped kind's: where"
        " its WorkloadMapping's spec.template points)",
        "a hash such as `a191b442` for one servicelink ConfigMap; `name=hash` entries such as"
        " `app-service-config=ac90f122,common-config=5d0c2f7e` for several",
        "the hash of the values the pods read; changing it is the rollout",
    ),
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _explained(message: str) -> WrapValidator:
    """Replace pydantic's error for a value that breaks the field's constraints with ``message``.

    ``message`` may name the value as ``{value!r}``.
    """

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(message.format(value=value)) from None

    return WrapValidator(validate)


def _refuse_reserved_configmap(name: str) -> str:
    """Return ``name``; raise ``ValueError`` for a ConfigMap Kubernetes writes itself (the CRD refuses it too)."""
    if name in RESERVED_CONFIGMAP_NAMES:
        raise ValueError(_RESERVED_CONFIGMAP)
    return name


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


class Credentials(_Strict):
    """A username and a password, read from a Secret of this ServiceLink's namespace."""

    secret_name: Annotated[
        str,
        Field(
            alias="secretName",
            description="Name of the Secret, in this ServiceLink's namespace. Its owner shares it: the label"
            f" {SHARED_LABEL}=true (the operator sees no other Secret) and the annotation {READABLE_BY_ANNOTATION}"
            ' listing this ServiceLink\'s name, or "*". Until then the link is not resolved and the condition says'
            " which kubectl label and annotate commands share it.",
            min_length=1,
            max_length=253,
            pattern=DNS1123_SUBDOMAIN.pattern,
        ),
        _explained("credentials.secretName {value!r} must be a DNS-1123 subdomain"),
    ]
    username_key: Annotated[
        str,
        Field(
            alias="usernameKey",
            description='The key of the Secret\'s data that holds the username, for {username}; default "username".',
            min_length=1,
            max_length=253,
            pattern=SECRET_KEY.pattern,
        ),
        _explained("credentials.usernameKey {value!r} must be a Secret key: letters, digits, '-', '_' and '.'"),
    ] = "username"
    password_key: Annotated[
        str,
        Field(
            alias="passwordKey",
            description='The key of the Secret\'s data that holds the password, for {password}; default "password".',
            min_length=1,
            max_length=253,
            pattern=SECRET_KEY.pattern,
        ),
        _explained("credentials.passwordKey {value!r} must be a Secret key: letters, digits, '-', '_' and '.'"),
    ] = "password"


class Link(_Strict):
    """One key and the Service whose address it holds; with credentials, a key of the Secret spec.secretName."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_LINK_CREDENTIALS_RULE]})

    key: Annotated[
        str,
        Field(
            description="The ConfigMap key, usually the environment variable your code reads, such as"
            " AUTH_SERVICE_URL. Must match [A-Za-z_][A-Za-z0-9_]* and be unique in links.",
            min_length=1,
            max_length=253,
            pattern=KEY_PATTERN.pattern,
        ),
        _explained("key {value!r} must match [A-Za-z_][A-Za-z0-9_]* (an environment variable name), at most 253"),
    ]
    service: Annotated[
        str,
        Field(
            description="Name of the Service (a DNS-1035 label, as Service names are).",
            min_length=1,
            max_length=63,
            pattern=DNS1035_LABEL.pattern,
        ),
        _explained("service {value!r} must be a DNS-1035 label (lowercase, at most 63 characters)"),
    ]
    namespace: Annotated[
        str | None,
        Field(
            description="Namespace of the Service; default this ServiceLink's namespace. A Service in another"
            " namespace resolves only if its annotation servicelink.dev/expose-to lists this ServiceLink's"
            ' namespace (comma-separated) or is "*"; its host is then the FQDN'
            " <service>.<namespace>.svc.<cluster domain>.",
            min_length=1,
            max_length=63,
            pattern=DNS1123_LABEL.pattern,
        ),
        _explained("namespace {value!r} must be a DNS-1123 label"),
    ] = None
    port: Annotated[
        # Strict: a string of digits is not a number here, as it is not for the API server.
        Annotated[int, Field(strict=True, ge=1, le=65535)]
        | Annotated[str, Field(max_length=PORT_NAME_MAX, pattern=PORT_NAME.pattern)]
        | None,
        Field(
            description='The Service port, by number (1-65535) or by name (such as "http"); a name follows the'
            " port when it is renumbered. May be left out when the Service has exactly one port, or when the template"
            " does not use {port}.",
        ),
        _explained(
            "port {value!r} must be a number between 1 and 65535 or a port name"
            " (IANA service name: lowercase, at most 15)"
        ),
    ] = None
    scheme: Annotated[
        str,
        Field(
            description='The URL scheme for {scheme}; default "http".',
            min_length=1,
            max_length=32,
            pattern=SCHEME.pattern,
        ),
        _explained("scheme {value!r} must be a URI scheme such as http or https, at most 32 characters"),
    ] = "http"
    path: Annotated[
        str,
        Field(
            description='The path for {path}, such as /v1; default empty. Must start with "/" when set.',
            max_length=2048,
            pattern=PATH.pattern,
        ),
        _explained("path {value!r} must start with '/' and be one line of at most 2048 characters"),
    ] = ""
    template: Annotated[
        str,
        Field(
            description='How the value is rendered; default "{scheme}://{host}:{port}{path}", and'
            ' "{scheme}://{username}:{password}@{host}:{port}{path}" with credentials. Placeholders:'
            " {scheme}, {host} (the short Service name in this namespace, the FQDN in another, the externalName"
            " of an ExternalName Service), {port}, {path}, {service}, {namespace}, {fqdn} (always the full"
            " name); with credentials also {username} and {password}, percent-encoded as a URL's userinfo"
            " (RFC 3986: every byte but letters, digits and -._~ becomes %XX, so @ : / % in a password cannot"
            ' break the URL). "{host}" gives MONGODB_HOST=mongodb.',
            max_length=512,
            json_schema_extra={"x-kubernetes-validations": [_TEMPLATE_RULE]},
        ),
    ] = DEFAULT_TEMPLATE
    credentials: Credentials | None = Field(
        default=None,
        description="Take {username} and {password} from a Secret. The value is then written to the Secret"
        " spec.secretName, never to the ConfigMap, and shows nowhere else: not in status, Events or logs.",
    )

    @model_validator(mode="before")
    @classmethod
    def _credentials_template(cls, data: Any) -> Any:
        """A link with credentials and no template of its own gets the template with userinfo."""
        if isinstance(data, Mapping) and data.get("credentials") is not None and data.get("template") is None:
            return {**data, "template": CREDENTIALS_TEMPLATE}
        return data

    @model_validator(mode="after")
    def _credentials_used(self) -> Link:
        if self.credentials is None and set(template_placeholders(self.template)) & set(CREDENTIAL_PLACEHOLDERS):
            raise ValueError(_CREDENTIALS_NEEDED)
        return self

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        known = ", ".join("{" + p + "}" for p in PLACEHOLDER_NAMES)
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

    kind: Annotated[
        WorkloadKind,
        Field(description=_KIND, pattern=WORKLOAD_KIND.pattern, max_length=317),
        _explained(
            "kind {value!r} is neither a built-in kind (" + ", ".join(WORKLOAD_KINDS) + ") nor a mapped one written"
            " Kind.group (CloneSet.apps.kruise.io)"
        ),
    ]
    name: Annotated[str, Field(description="Name of the workload.", min_length=1, max_length=253)]


class LabelSelectorRequirement(_Strict):
    """One ``matchExpressions`` entry of a label selector."""

    key: Annotated[str, Field(description="The label key.")]
    operator: Annotated[
        Literal["In", "NotIn", "Exists", "DoesNotExist"], Field(description="In, NotIn, Exists or DoesNotExist.")
    ]
    values: list[str] = Field(default_factory=list, description="Values for In and NotIn.")


class LabelSelector(_Strict):
    """A standard Kubernetes label selector."""

    match_labels: dict[str, str] = Field(
        default_factory=dict, alias="matchLabels", description="Labels a workload must carry, all of them."
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list,
        alias="matchExpressions",
        description="Label requirements a workload must meet, all of them.",
    )


class Workloads(_Strict):
    """Which workloads are rolled when a value changes."""

    auto: bool = Field(
        default=True,
        description="Default true: every Deployment, StatefulSet, DaemonSet and CronJob in this namespace whose pod"
        " template (a CronJob's jobTemplate) reads the ConfigMap (envFrom, env valueFrom configMapKeyRef, volumes,"
        " projected volumes). A workload reading single keys is rolled only when one of those keys changes. A"
        " CronJob is not rolled: its pod template is annotated, so the Jobs it starts from then on read the"
        " current values; Jobs already running are left alone. An Argo Rollout (when the operator watches them) is"
        " rolled through its pod template, so its canary or blue-green steps run; one with spec.workloadRef has"
        " none, and the Deployment it references is the consumer. An object of a kind a WorkloadMapping maps is"
        " followed like a Deployment, through the pod template the mapping points at.",
    )
    names: list[WorkloadRef] = Field(
        default_factory=list,
        max_length=256,
        description="Also roll these workloads of this namespace, by kind and name. One whose pods do not read the"
        " ConfigMap is rolled only if its annotation servicelink.dev/rollable-by lists this ServiceLink's name,"
        ' or is "*".',
    )
    selector: LabelSelector | None = Field(
        default=None,
        description="Also roll the workloads of this namespace whose labels this selector matches; one that does not"
        " read the ConfigMap only with its consent, as for names.",
    )


def _links_schema(schema: dict[str, Any]) -> None:
    """Complete the CRD's schema of ``spec.links``: its bounds, a map keyed by key, each entry described."""
    schema.update(
        {"minItems": 1, "maxItems": MAX_LINKS, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["key"]}
    )
    schema["items"]["description"] = Link.__doc__


class RolloutWindow(_Strict):
    """A time when consumers may be rolled: an entry of ``spec.rolloutWindows``."""

    schedule: str = Field(
        description="When the window opens: a five-field cron schedule, minute hour day-of-month month weekday"
        ' ("0 2 * * *": every day at 02:00; "0 22 * * FRI": Fridays at 22:00), read in timeZone.',
        max_length=100,
    )
    duration: str = Field(
        description='How long it stays open once opened: hours, minutes and seconds such as "2h", "90m" or'
        ' "1h30m"; from 1s to 168h.',
        max_length=20,
    )
    time_zone: str = Field(
        default="UTC",
        alias="timeZone",
        description='The IANA time zone the schedule is read in, such as "Europe/Berlin". Default "UTC".',
        max_length=64,
    )

    @model_validator(mode="after")
    def _readable(self) -> RolloutWindow:
        self.window()
        return self

    def window(self) -> Window:
        """This entry as a ``schedule.Window``; raise ``ValueError`` naming what is wrong."""
        return parse_window(self.schedule, self.duration, self.time_zone)


class ServiceLinkSpec(_Strict):
    """Which ConfigMap (and Secret) holds which keys, and whom to roll when a value changes."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_SPEC_SECRET_RULE]})

    config_map_name: Annotated[
        str,
        Field(
            alias="configMapName",
            description="Name of the ConfigMap, in this ServiceLink's namespace, that holds the keys. Created (owned"
            " by this ServiceLink, deleted with it) if absent. One that exists already (from Helm, say) is written"
            " only if its owner shared it: its annotation servicelink.dev/writable-by lists this ServiceLink's"
            ' name, or is "*". Then only this ServiceLink\'s keys are written and every other key is left alone.'
            f" Never {_RESERVED_NAMES_TEXT}, which Kubernetes writes into every namespace itself.",
            min_length=1,
            max_length=253,
            pattern=DNS1123_SUBDOMAIN.pattern,
            json_schema_extra={"x-kubernetes-validations": [_RESERVED_CONFIGMAP_RULE]},
        ),
        _explained("configMapName {value!r} must be a DNS-1123 subdomain"),
        AfterValidator(_refuse_reserved_configmap),
    ]
    secret_name: Annotated[
        str | None,
        Field(
            alias="secretName",
            description="Name of the Secret, in this ServiceLink's namespace, that holds the keys of the links with"
            " credentials (and only those). Required when a link has credentials. Created (owned by this"
            " ServiceLink, deleted with it) if absent; one that exists already is written only if its annotation"
            ' servicelink.dev/writable-by lists this ServiceLink\'s name, or is "*", as for the ConfigMap.',
            min_length=1,
            max_length=253,
            pattern=DNS1123_SUBDOMAIN.pattern,
        ),
        _explained("secretName {value!r} must be a DNS-1123 subdomain"),
    ] = None
    links: list[Link] = Field(
        description="One entry per ConfigMap key (1 to 256). Each key holds the address of one Service, rendered"
        " through the template; keys are unique.",
        # The count is checked below, for a message that says what is allowed.
        json_schema_extra=_links_schema,
    )
    workloads: Workloads = Field(
        default_factory=Workloads,
        description="Which workloads are rolled when a value changes: their pod template annotation"
        " servicelink.dev/config-hash is set to the hash of the values they read (one configmap=hash entry per"
        " servicelink ConfigMap when they read several).",
    )
    rollout: Literal["Rolling", "None"] = Field(
        default="Rolling",
        description="Rolling (default): when a value changes, roll each consuming workload once. None: write the"
        " ConfigMap and roll nothing.",
        json_schema_extra={"default": "Rolling"},  # the one default the API server fills in too
    )
    cooldown_seconds: int = Field(
        default=0,
        alias="cooldownSeconds",
        ge=0,
        le=MAX_COOLDOWN_SECONDS,
        description="Default 0 (none). The least seconds between two rollouts of one consumer: a rollout due"
        f" sooner after its last one ({ROLLED_AT_ANNOTATION} on the workload) waits until then, and a change made"
        " meanwhile goes out in that same rollout. The ConfigMap is written at once. Meanwhile RolledOut is False"
        " with reason CoolingDown, and status.deferred lists the keys held back and when they are due. A workload's"
        f" own annotation {COOLDOWN_ANNOTATION} overrides it.",
    )
    rollout_windows: list[RolloutWindow] = Field(
        default_factory=list,
        alias="rolloutWindows",
        max_length=MAX_WINDOWS,
        description="Default none: consumers roll at any time. Otherwise they roll only while one of these windows"
        " is open; a rollout due outside them waits until the next one opens, and changes made meanwhile go out"
        " in that same rollout. The ConfigMap is written at once. Meanwhile RolledOut is False with reason"
        " OutsideWindow, and status.deferred lists the keys held back and when they are due. A workload's own"
        f" annotation {ROLLOUT_WINDOWS_ANNOTATION} overrides them.",
    )
    wait_for_endpoints: bool = Field(
        default=False,
        alias="waitForEndpoints",
        description="Default false. When true, a changed value is still written to the ConfigMap at once, but the"
        " consumers are rolled onto it only once the Service of every changed link has a ready endpoint (an"
        " ExternalName Service is never waited for); they roll as soon as one is ready. Meanwhile RolledOut is"
        " False with reason WaitingForEndpoints, and status.deferred lists the keys held back.",
    )

    def windows(self) -> list[Window]:
        """``rollout_windows`` as ``schedule.Window``s (each was read when the spec was)."""
        return [entry.window() for entry in self.rollout_windows]

    @model_validator(mode="after")
    def _links(self) -> ServiceLinkSpec:
        if not 1 <= len(self.links) <= MAX_LINKS:
            raise ValueError(f"links must hold 1 to {MAX_LINKS} entries, not {len(self.links)}")
        seen: set[str] = set()
        for link in self.links:
            if link.key in seen:
                raise ValueError(f"key {link.key!r} appears more than once in links")
            seen.add(link.key)
        if self.secret_name is None and any(link.credentials is not None for link in self.links):
            raise ValueError(_SECRET_NEEDED)
        return self

    @property
    def secret_keys(self) -> frozenset[str]:
        """The keys of the links with credentials: written to the Secret ``secret_name``, never to the ConfigMap."""
        return frozenset(link.key for link in self.links if link.credentials is not None)


_KEY = "The ConfigMap key."
_SERVICE = "The Service as namespace/name."
_WORKLOAD = "Name of the workload."


class Endpoints(_Strict):
    """Ready and total endpoints behind a Service, from its EndpointSlices."""

    ready: int = Field(description="Endpoints ready to serve.")
    total: int = Field(description="All endpoints.")


class CredentialsRead(_Strict):
    """Which keys of which Secret a value was built from: never their content."""

    secret_name: str = Field(alias="secretName", description="The Secret, in this ServiceLink's namespace.")
    keys: list[str] = Field(description="The keys of its data that were read.")
    resource_version: str = Field(alias="resourceVersion", description="The Secret's resourceVersion that was read.")


class LinkStatus(_Strict):
    """How one link resolved: an entry of ``status.links``."""

    key: str = Field(description=_KEY)
    service: str = Field(description=_SERVICE)
    resolved: bool = Field(description="Whether the Service and port were found and the value rendered.")
    endpoints: Endpoints | None = Field(
        default=None, description="Endpoints behind the Service, from its EndpointSlices."
    )
    reason: str | None = Field(
        default=None,
        description="Why the link did not resolve or was not written (ServiceNotFound, PortNotFound,"
        " CrossNamespaceForbidden, SecretsDisabled, SecretNotShared, SecretKeyNotFound, KeyConflict).",
    )
    message: str | None = Field(default=None, description="What is wrong and how to fix it.")
    credentials: CredentialsRead | None = Field(
        default=None,
        description="For a link with credentials: the Secret keys its value was built from. The value itself is"
        " written only to the Secret spec.secretName, never to status.",
    )


class RolledOut(_Strict):
    """A workload patched by the last rollout."""

    kind: WorkloadKind = Field(description=_KIND)
    name: str = Field(description=_WORKLOAD)
    hash: str = Field(
        description="The hash of the values it reads of this ConfigMap, as set in servicelink.dev/config-hash on"
        " its pod template."
    )


class SkippedWorkload(_Strict):
    """A workload this ServiceLink would roll but does not: an entry of ``status.skipped``."""

    kind: WorkloadKind = Field(description=_KIND)
    name: str = Field(description=_WORKLOAD)
    reason: str = Field(
        description="Why it is not rolled: WorkloadNotOptedIn (named or selected, does not read the ConfigMap, no"
        " servicelink.dev/rollable-by), WorkloadOptedOut (its annotation servicelink.dev/rollout is never) or"
        " KindIgnored (the operator's --ignore-kinds names its kind)."
    )
    message: str = Field(description="Why it was skipped, and the kubectl command that changes that.")


class DeferredKey(_Strict):
    """A key written whose rollout is held back: an entry of ``status.deferred``."""

    key: str = Field(description=_KEY)
    service: str = Field(description=_SERVICE)
    previous: str | None = Field(
        default=None,
        description="The value the consumers' pods still carry; absent when it was unset, or when the key is"
        " written to the Secret (spec.secretName): a Secret's value is never shown.",
    )
    reason: str = Field(
        default="WaitingForEndpoints",
        description="Why its rollout is held: WaitingForEndpoints (spec.waitForEndpoints, and its Service has no"
        " ready endpoint), CoolingDown (a consumer was rolled less than its cooldown ago), OutsideWindow (no rollout"
        " window of a consumer is open), WaitingForRolloutSlot (--max-rollouts-in-flight rollouts are in flight;"
        " a consumer rolls when a slot frees), WaitingForConfigMaps (a"
        " consumer also reads another servicelink ConfigMap about to be written: both go out in one patch) or"
        " RolloutFailed (the API server refused a patch). The key stays here until every consumer carries it, so a"
        " restart or a new leader still rolls them, once.",
    )
    due: str | None = Field(
        default=None,
        description="CoolingDown and OutsideWindow: when the first consumer held back is rolled (RFC 3339).",
    )


class StaleJob(_Strict):
    """A running Job whose pods started on values that changed since: an entry of ``status.staleJobs``."""

    name: str = Field(description="Name of the Job.")
    hash: str = Field(
        description="The config hash its pod template carries for this ConfigMap (servicelink.dev/config-hash, set"
        ' when a CronJob that servicelink annotated created it): the values it started on; "unknown" when it'
        " carries none."
    )
    keys: list[str] = Field(description="The keys it reads whose value changed while it ran.")


class Condition(_Strict):
    """A ``metav1.Condition``."""

    type: str = Field(
        description="The condition's type: a ServiceLink's Ready, Resolved, Synced or RolledOut; a WorkloadMapping's"
        " Ready."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="A CamelCase reason; the docs' field reference lists each condition's, the troubleshooting guide"
        " explains them."
    )
    message: str = Field(default="", description="Human-readable detail naming the object and the fix.")
    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        description="The spec generation this condition describes.",
        json_schema_extra={"format": "int64"},
    )
    last_transition_time: str | None = Field(
        default=None,
        alias="lastTransitionTime",
        description="When status last changed.",
        json_schema_extra={"format": "date-time"},
    )


class ServiceLinkStatus(_Strict):
    """What the operator found and wrote. Written only when something in it changed."""

    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        description="The spec generation this status describes.",
        json_schema_extra={"format": "int64"},
    )
    values: dict[str, str] = Field(default_factory=dict, description="The values written to the ConfigMap, key by key.")
    hash: str | None = Field(default=None, description="Short digest of values; changes exactly when a value changes.")
    link_summary: str | None = Field(
        default=None, alias="linkSummary", description="Links resolved / links in the spec (the LINKS column)."
    )
    endpoint_summary: str | None = Field(
        default=None,
        alias="endpointSummary",
        description="Links whose Service has at least one ready endpoint / links (the ENDPOINTS column).",
    )
    links: list[LinkStatus] = Field(default_factory=list, description="One entry per spec.links entry, in order.")
    rolled_out: list[RolledOut] = Field(
        default_factory=list,
        alias="rolledOut",
        description="The workloads the last rollout patched, with the hash they were given. A CronJob listed here"
        " starts its next Jobs on these values; it has no rollout, so RolledOut never waits for it.",
    )
    skipped: list[SkippedWorkload] = Field(
        default_factory=list,
        description="Workloads this ServiceLink does not roll, each with its reason: named or selected in"
        " spec.workloads without reading the ConfigMap or opting in with the annotation servicelink.dev/rollable-by"
        " (RolledOut is then False); opted out with the annotation servicelink.dev/rollout: never; or of a kind"
        " the operator ignores (--ignore-kinds).",
    )
    deferred: list[DeferredKey] = Field(
        default_factory=list,
        description="Keys written whose rollout is held back, each with the reason: until their Service has a ready"
        " endpoint (spec.waitForEndpoints), until another ServiceLink of a consumer writes its ConfigMap, or after"
        " a patch was refused. What the operator would otherwise hold only in memory: it rolls them after a"
        " restart or a leader hand-over too.",
    )
    stale_jobs: list[StaleJob] = Field(
        default_factory=list,
        alias="staleJobs",
        description="Jobs of this namespace, still running, whose pods read a key of the ConfigMap that changed"
        " after they started. A Job's pod template cannot change, so servicelink never patches, restarts or"
        " deletes one: it lists it here, with a StaleJobs Warning Event, until it finishes or is deleted. A Job"
        " created after the change (by hand, or by a CronJob carrying the current hash) reads the current values"
        " and is not listed.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (all below hold), Resolved (every Service and port found), Synced (the ConfigMap holds"
        " the values) and RolledOut (consumers carry the current hash and their rollouts are complete; a CronJob"
        " has none, so it counts once patched: False with RolloutInProgress while new pods are not available yet,"
        " RolloutStalled when a Deployment passed its progress deadline or an Argo Rollout is Degraded,"
        " WaitingForEndpoints while"
        " spec.waitForEndpoints holds the rollout back).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


def describe_spec_error(error: ValidationError) -> str:
    """Return each problem of a spec that failed its model, with the ``spec.`` field it is in."""
    return "; ".join(
        f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in error.errors()
    )


def parse_spec(spec: object) -> ServiceLinkSpec:
    """Validate a raw ``spec`` mapping; raise pydantic's ``ValidationError`` naming the field."""
    return ServiceLinkSpec.model_validate(spec)


# -- WorkloadMapping: a kind with a pod template that servicelink follows like its built-in ones ----------------

# A mapping's name, "<plural>.<group>": a lowercase plural, then a group of one dot at least (no core-group kinds).
# "[.]", not "\.": the pattern sits in a CEL string literal, where "\." is no escape.
MAPPING_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")
MAPPING_NAME_RULE = {
    "rule": f"self.metadata.name.matches('{MAPPING_NAME.pattern}')",
    "message": "metadata.name must be <plural>.<group> of the kind, such as clonesets.apps.kruise.io; kinds of the"
    " core group (no dot) cannot be mapped",
}
KIND_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
API_VERSION_NAME = re.compile(r"^v[0-9]+((alpha|beta)[0-9]+)?$")
# The Service Binding spec's restricted JSONPath: field names only, each after a dot.
TEMPLATE_PATH = re.compile(r"^(\.[A-Za-z][A-Za-z0-9_-]*)+$")

# The kinds servicelink follows without a mapping, and each by the name a WorkloadMapping of it would take.
BUILT_IN_RESOURCES: dict[str, WorkloadResource] = {
    kind: resource for table in (WORKLOAD_RESOURCES, REPORTED_RESOURCES) for kind, resource in table.items()
}
BUILT_IN_MAPPINGS: dict[str, str] = {f"{r.plural}.{r.group}": kind for kind, r in BUILT_IN_RESOURCES.items()}
# How to turn on an optional built-in kind, for the message that refuses a mapping of it.
OPTIONAL_KIND_SETTINGS: dict[str, str] = {"Rollout": "--argo-rollouts (the chart's argoRollouts.enabled)"}


class BuiltInKindError(ValueError):
    """A WorkloadMapping names a kind servicelink follows already (the mapping's reason BuiltInKind)."""


class WorkloadMappingSpec(_Strict):
    """Which kind servicelink follows, at which version, and where its pod template sits."""

    kind: Annotated[
        str,
        Field(
            description="The kind's name as its API serves it, such as CloneSet. A ServiceLink names it as"
            " Kind.group in spec.workloads.names: CloneSet.apps.kruise.io.",
            min_length=1,
            max_length=63,
            pattern=KIND_NAME.pattern,
        ),
        _explained("kind {value!r} must be a kind's name such as CloneSet: a capital letter, then letters and digits"),
    ]
    version: Annotated[
        str,
        Field(
            description="The served version the operator lists, watches and patches, such as v1alpha1 (kubectl"
            " api-resources shows it).",
            min_length=1,
            max_length=63,
            pattern=API_VERSION_NAME.pattern,
        ),
        _explained("version {value!r} must be an API version such as v1, v1beta2 or v1alpha1"),
    ]
    template: Annotated[
        str,
        Field(
            description="Where an object of the kind holds its pod template (metadata, and spec with containers and"
            " volumes), as dotted field names from the object's root: .spec.template for most kinds. servicelink"
            " reads the ConfigMaps the template uses and sets its annotation servicelink.dev/config-hash.",
            min_length=2,
            max_length=512,
            pattern=TEMPLATE_PATH.pattern,
        ),
        _explained("template {value!r} must be dotted field names such as .spec.template, no brackets or wildcards"),
    ]
    rolls: bool = Field(
        default=True,
        description="Default true: patching the pod template rolls the pods, and the ServiceLink's RolledOut waits"
        " for the rollout. False: the kind only starts new pods from its template (like a CronJob), so the"
        " patched template is what it starts next; nothing is waited for.",
    )


class WorkloadMappingStatus(_Strict):
    """What the operator found of the mapped kind. Written only when something in it changed."""

    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        description="The spec generation this status describes.",
        json_schema_extra={"format": "int64"},
    )
    workloads: int | None = Field(
        default=None, description="How many objects of the kind the operator follows now, in all namespaces it watches."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready: True (Watching) while the operator lists, watches and patches the kind; False with"
        " InvalidSpec (the spec passed an older CRD but not the operator's check), KindNotServed (the API serves"
        " no such plural and version in the group, or its kind is not spec.kind), Forbidden (the operator's"
        " ServiceAccount may not list, watch or patch it), BuiltInKind (servicelink follows it without a mapping)"
        ", TemplateNotFound (an object of the kind has no pod template where spec.template points) or"
        " WatchFailed (listing or watching it failed: the operator tries again); the message names the object"
        " and the fix.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


def mapped_kind_name(kind: str, group: str) -> str:
    """Return a mapped kind's identity, ``Kind.group`` (``CloneSet.apps.kruise.io``), as ``kubectl get`` takes it."""
    return f"{kind}.{group}"


def refuse_built_in(name: str) -> None:
    """Raise ``BuiltInKindError`` if the mapping ``name`` (``<plural>.<group>``) is a kind servicelink knows already."""
    kind = BUILT_IN_MAPPINGS.get(name)
    if kind is None:
        return
    if kind in REPORTED_RESOURCES:
        raise BuiltInKindError(
            f"{name} is the built-in kind {kind}: servicelink reports Jobs that run on stale values in a"
            " ServiceLink's status.staleJobs and never patches one (a Job's pod template cannot change);"
            " delete this WorkloadMapping"
        )
    setting = OPTIONAL_KIND_SETTINGS.get(kind)
    if setting is not None:
        raise BuiltInKindError(f"{name} is the built-in kind {kind}: enable it with {setting}, and delete this mapping")
    raise BuiltInKindError(f"{name} is the built-in kind {kind}: servicelink follows it already; delete this mapping")


def parse_mapping(name: str, spec: Mapping[str, Any]) -> WorkloadResource:
    """Return where the kind of the WorkloadMapping ``name`` is served and where its pod template sits.

    Raise ``BuiltInKindError`` for a kind servicelink knows already, ``ValueError`` naming the
    field and the fix for a name or spec the CRD would refuse.
    """
    if not MAPPING_NAME.fullmatch(name):
        raise ValueError(f"metadata.name {name!r}: {MAPPING_NAME_RULE['message']}")
    refuse_built_in(name)
    try:
        parsed = WorkloadMappingSpec.model_validate(spec)
    except ValidationError as error:
        raise ValueError(describe_spec_error(error)) from None
    plural, group = name.split(".", 1)
    template = tuple(parsed.template[1:].split("."))
    kind = mapped_kind_name(parsed.kind, group)
    return WorkloadResource(kind, group, parsed.version, plural, template, rolls=parsed.rolls)
