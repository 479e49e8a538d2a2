"""Resolve ServiceLink links against Services into URLs, or into named problems (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from servicelink import conditions
from servicelink.model import EXPOSE_TO_ANNOTATION, Link, ServiceLinkSpec, template_placeholders
from servicelink.views import Endpoints, ObjectKey, ServiceView


@dataclass(frozen=True)
class LinkResult:
    """How one link resolved: a value, or a reason and message saying why not."""

    key: str
    service: str  # "namespace/name"
    value: str | None
    reason: str
    message: str
    endpoints: Endpoints | None = None
    keeps_last_value: bool = True  # False where nothing about the Service may be written

    @property
    def resolved(self) -> bool:
        """Whether the link produced a value from the Service as it is now."""
        return self.value is not None


def service_fqdn(name: str, namespace: str, cluster_domain: str) -> str:
    """Return ``name.namespace.svc.<cluster domain>``."""
    return f"{name}.{namespace}.svc.{cluster_domain}"


def _pick_port(link: Link, service: ServiceView) -> int | str | None:
    """Return the port number, or an error message listing the Service's ports."""
    listed = ", ".join(p.describe() for p in service.ports) or "none"
    if link.port is None:
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
) -> LinkResult:
    """Resolve one link of a ServiceLink in ``namespace``."""
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
    value = link.template.format(
        scheme=link.scheme,
        host=host,
        port="" if port is None else port,
        path=link.path,
        service=service.name,
        namespace=service.namespace,
        fqdn=fqdn,
    )
    return LinkResult(key=link.key, service=ref, value=value, reason=conditions.RESOLVED, message="", endpoints=slices)


def resolve_links(
    spec: ServiceLinkSpec,
    *,
    namespace: str,
    services: Mapping[ObjectKey, ServiceView],
    endpoints: Mapping[ObjectKey, Endpoints],
    cluster_domain: str,
) -> list[LinkResult]:
    """Resolve every link of ``spec``, in order."""
    return [
        resolve_link(link, namespace=namespace, services=services, endpoints=endpoints, cluster_domain=cluster_domain)
        for link in spec.links
    ]
