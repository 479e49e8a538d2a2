"""Resolve ServiceLink links against Services into URLs, or into named problems (pure)."""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from servicelink import conditions
from servicelink.model import (
    EXPOSE_TO_ANNOTATION,
    READABLE_BY_ANNOTATION,
    SHARED_LABEL,
    Credentials,
    Link,
    ServiceLinkSpec,
    template_placeholders,
)
from servicelink.views import Endpoints, ObjectKey, SecretView, ServiceView

# Unreserved characters of RFC 3986: the only ones a URL's userinfo carries as they are.
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


@dataclass(frozen=True)
class SecretUse:
    """Which keys of which Secret a value was built from, at which resourceVersion: never their content."""

    secret: str  # the Secret's name, in the ServiceLink's namespace
    keys: tuple[str, ...]
    resource_version: str


@dataclass(frozen=True)
class LinkResult:
    """How one link resolved: a value, or a reason and message saying why not.

    A link with credentials has a ``secret_value``, the value to write to the
    Secret; its ``value`` is then ``digest_secret_value`` of it, which changes
    when it changes and tells nothing of it. Only the Secret's write reads
    ``secret_value``, and no repr shows it.
    """

    key: str
    service: str  # "namespace/name"
    value: str | None
    reason: str
    message: str
    endpoints: Endpoints | None = None
    keeps_last_value: bool = True  # False where nothing about the Service may be written
    credentials: SecretUse | None = None
    secret_value: str | None = field(default=None, repr=False, compare=False)

    @property
    def resolved(self) -> bool:
        """Whether the link produced a value from the Service as it is now."""
        return self.value is not None


def escape_userinfo(text: str) -> str:
    """Percent-encode ``text`` for a URL's userinfo (RFC 3986): every UTF-8 byte but the unreserved ones as %XX."""
    return "".join(chr(byte) if chr(byte) in _UNRESERVED else f"%{byte:02X}" for byte in text.encode())


def digest_secret_value(value: str, *, salt: str) -> str:
    """Return a digest of a value built from Secret data: it changes when the value does, and reveals nothing of it.

    ``salt`` (the ServiceLink's namespace and name) keys it, so equal values of two ServiceLinks give different
    digests.
    """
    return "sha256:" + hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()[:16]


def describe_sharing(*, secret: str, namespace: str, servicelink: str) -> str:
    """Return the commands that share Secret ``secret`` with ServiceLink ``servicelink``."""
    return (
        f"kubectl label secret {secret} -n {namespace} {SHARED_LABEL}=true; "
        f"kubectl annotate secret {secret} -n {namespace} {READABLE_BY_ANNOTATION}={servicelink}"
    )


def read_credentials(
    credentials: Credentials,
    *,
    key: str,
    namespace: str,
    servicelink: str,
    secrets: Mapping[str, SecretView] | None,
) -> tuple[dict[str, str], SecretUse] | tuple[str, str]:
    """Return the escaped username and password of a link's Secret and what was read; else a reason and message.

    ``secrets`` holds the Secrets of ``namespace`` shared with servicelink by their label, by name; None when
    this install reads no Secret. A Secret the label does not share is not seen at all, so the message is the
    same whether it exists or not.
    """
    where = f"links[key={key}].credentials"
    name = credentials.secret_name
    if secrets is None:
        return conditions.SECRETS_DISABLED, (
            f"{where} needs Secret access, which this servicelink install does not have; turn it on"
            " (the chart's secrets.enabled=true, or the manifests' secrets overlay)"
        )
    secret = secrets.get(name)
    if secret is None or not ("*" in secret.readable_by or servicelink in secret.readable_by):
        return conditions.SECRET_NOT_SHARED, (
            f"Secret {namespace}/{name} ({where}) is not shared with ServiceLink {namespace}/{servicelink}; its"
            f" owner shares it with: {describe_sharing(secret=name, namespace=namespace, servicelink=servicelink)}"
        )
    wanted = (credentials.username_key, credentials.password_key)
    missing = [k for k in wanted if k not in secret.data]
    if missing:
        return conditions.SECRET_KEY_NOT_FOUND, (
            f"Secret {namespace}/{name} has no key {', '.join(missing)} (keys: {', '.join(sorted(secret.data))}); "
            f"fix {where}.usernameKey or .passwordKey, or add the key to the Secret"
        )
    parts = {
        "username": escape_userinfo(secret.data[credentials.username_key]),
        "password": escape_userinfo(secret.data[credentials.password_key]),
    }
    return parts, SecretUse(secret=name, keys=wanted, resource_version=secret.resource_version)


def service_fqdn(name: str, namespace: str, cluster_domain: str) -> str:
    """Return ``name.namespace.svc.<cluster domain>``."""
    return f"{name}.{namespace}.svc.{cluster_domain}"


def _pick_port(link: Link, service: ServiceView) -> int | str | None:
    """Return the port number, None when none is needed or there is none, or an error message listing the ports."""
    listed = ", ".join(p.describe() for p in service.ports) or "none"
    if link.port is None:
        if "port" not in template_placeholders(link.template):
            return None  # "{host}" needs no port, however many the Service has
        if len(service.ports) == 1:
            return service.ports[0].port
        if not service.ports and service.type == "ExternalName":
            return None
        return (
            f"Service {service.namespace}/{service.name} has {len(service.ports)} ports ({listed}); "
            f"set links[key={link.key}].port to one of them"
        )
    if isinstance(link.port, int):
        if service.type == "ExternalName" or any(p.port == link.port for p in service.ports):
            return link.port
        return (
            f"Service {service.namespace}/{service.name} has no port {link.port} (ports: {listed}); "
            f"fix links[key={link.key}].port"
        )
    for port in service.ports:
        if port.name == link.port:
            return port.port
    return (
        f"Service {service.namespace}/{service.name} has no port named {link.port!r} (ports: {listed}); "
        f"fix links[key={link.key}].port"
    )


def resolve_link(
    link: Link,
    *,
    namespace: str,
    services: Mapping[ObjectKey, ServiceView],
    endpoints: Mapping[ObjectKey, Endpoints],
    cluster_domain: str,
    servicelink: str = "",
    salt: str = "",
    secrets: Mapping[str, SecretView] | None = None,
) -> LinkResult:
    """Resolve one link of ServiceLink ``servicelink`` in ``namespace``; ``salt`` keys the digest of a value
    built from a Secret (``digest_secret_value``).

    A link with credentials also needs its Secret among ``secrets`` (see ``read_credentials``).
    """
    target_ns = link.namespace or namespace
    ref = f"{target_ns}/{link.service}"
    service = services.get((target_ns, link.service))
    if target_ns != namespace and (service is None or not service.allows(namespace)):
        # One message whether the Service is absent or closed: a link must not
        # reveal that a Service exists in a namespace that has not opened to it.
        return LinkResult(
            key=link.key,
            service=ref,
            value=None,
            reason=conditions.CROSS_NAMESPACE_FORBIDDEN,
            message=(
                f"Service {ref} does not exist or does not list namespace {namespace!r} in its "
                f"{EXPOSE_TO_ANNOTATION} annotation"
            ),
            keeps_last_value=False,
        )
    if service is None:
        return LinkResult(
            key=link.key,
            service=ref,
            value=None,
            reason=conditions.SERVICE_NOT_FOUND,
            message=f"Service {ref} not found (links[key={link.key}].service)",
        )
    slices = endpoints.get((target_ns, link.service))
    port = _pick_port(link, service)
    if isinstance(port, str):
        return LinkResult(
            key=link.key, service=ref, value=None, reason=conditions.PORT_NOT_FOUND, message=port, endpoints=slices
        )
    fqdn = service_fqdn(service.name, service.namespace, cluster_domain)
    if service.type == "ExternalName" and service.external_name:
        host = service.external_name
    else:
        host = service.name if target_ns == namespace else fqdn
    if port is None and "port" in template_placeholders(link.template):
        return LinkResult(
            key=link.key,
            service=ref,
            value=None,
            reason=conditions.PORT_NOT_FOUND,
            message=(
                f"Service {ref} has no ports and links[key={link.key}].template uses {{port}}; "
                "set links[].port or drop {port} from the template"
            ),
        )
    parts: dict[str, str] = {}
    used: SecretUse | None = None
    if link.credentials is not None:
        read = read_credentials(
            link.credentials, key=link.key, namespace=namespace, servicelink=servicelink, secrets=secrets
        )
        if isinstance(read[1], str):
            reason, message = read
            assert isinstance(reason, str)
            return LinkResult(key=link.key, service=ref, value=None, reason=reason, message=message, endpoints=slices)
        parts, used = read
    value = link.template.format(
        scheme=link.scheme,
        host=host,
        port="" if port is None else port,
        path=link.path,
        service=service.name,
        namespace=service.namespace,
        fqdn=fqdn,
        **parts,
    )
    if used is None:
        return LinkResult(
            key=link.key, service=ref, value=value, reason=conditions.RESOLVED, message="", endpoints=slices
        )
    return LinkResult(
        key=link.key,
        service=ref,
        value=digest_secret_value(value, salt=salt),
        reason=conditions.RESOLVED,
        message="",
        endpoints=slices,
        credentials=used,
        secret_value=value,
    )


def resolve_links(
    spec: ServiceLinkSpec,
    *,
    namespace: str,
    services: Mapping[ObjectKey, ServiceView],
    endpoints: Mapping[ObjectKey, Endpoints],
    cluster_domain: str,
    servicelink: str = "",
    salt: str = "",
    secrets: Mapping[str, SecretView] | None = None,
) -> list[LinkResult]:
    """Resolve every link of ``spec``, in order (``resolve_link``)."""
    return [
        resolve_link(
            link,
            namespace=namespace,
            services=services,
            endpoints=endpoints,
            cluster_domain=cluster_domain,
            servicelink=servicelink,
            salt=salt,
            secrets=secrets,
        )
        for link in spec.links
    ]
