"""Propose ServiceLinks for hand-written ConfigMaps, keeping every value byte for byte (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from servicelink.cache import Cache
from servicelink.consent import judge_configmap_write, render_consent_command
from servicelink.model import API_VERSION, FIELD_MANAGER, KIND, WRITABLE_BY_ANNOTATION, parse_name_list
from servicelink.render import managed_keys, render_configmap
from servicelink.resolve import describe_sharing
from servicelink.tools.address import link_fields, propose_link, values_secret_name


@dataclass
class Adoption:
    """What adopting one ConfigMap takes: the ServiceLink, the keys to hand over, and what stays by hand."""

    namespace: str
    configmap: str
    servicelink: dict[str, Any] | None
    handover: dict[str, Any] | None  # the apply body that makes servicelink own the adopted keys, values unchanged
    share: str | None = None  # the kubectl annotate that lets the ServiceLink write the ConfigMap, unless it may
    owners: dict[str, list[str]] = field(default_factory=dict)  # adopted key -> other field managers owning it
    left: list[tuple[str, str]] = field(default_factory=list)  # (key, why) of values left alone
    # Adopted keys whose value carries credentials -> the Secret its link reads them from. Such a key is written
    # to the Secret spec.secretName, not to the ConfigMap, so it is not handed over.
    credentials: dict[str, str] = field(default_factory=dict)
    create_secrets: list[str] = field(default_factory=list)  # the commands that create and share those Secrets


def render_secret_commands(*, secret: str, namespace: str, servicelink: str) -> str:
    """Return the commands that create Secret ``secret`` with placeholders for the username and password, and share
    it with ServiceLink ``servicelink``: adopt never prints a credential, so its reader types them in."""
    create = (
        f"kubectl create secret generic {secret} -n {namespace}"
        " --from-literal=username='<the username>' --from-literal=password='<the password>'"
    )
    return f"{create}; {describe_sharing(secret=secret, namespace=namespace, servicelink=servicelink)}"


def adopt_configmap(configmap: Mapping[str, Any], *, world: Cache, cluster_domain: str) -> Adoption:
    """Return the ServiceLink whose links render each explainable value of ``configmap`` exactly.

    Keys a ServiceLink already writes are left alone. A value with credentials
    (``postgres://app:…@db:5432/app``) gets a link that reads them from the
    Secret ``<service>-credentials``, and goes to the Secret ``spec.secretName``
    (``values_secret_name``); no password is kept. The hand-over body,
    applied server-side as field manager ``servicelink``, moves the adopted
    keys to servicelink with the values they have; so the operator finds them
    already its own and equal, writes nothing, and rolls nothing. ``share`` is
    the consent the ConfigMap's owner gives first, unless it is already given.
    """
    metadata = configmap.get("metadata") or {}
    namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
    claimed = {key: claim.name for claim in world.claims(namespace, name) for key in claim.keys}
    services = {key: view for key in world.service_keys() if (view := world.service(key)) is not None}
    adoption = Adoption(namespace=namespace, configmap=name, servicelink=None, handover=None)
    links: list[dict[str, Any]] = []
    values: dict[str, str] = {}
    for key, value in sorted((configmap.get("data") or {}).items()):
        if key in claimed:
            adoption.left.append((key, f"already written by ServiceLink {claimed[key]}"))
            continue
        proposed = propose_link(
            key, str(value), namespace=namespace, services=services, cluster_domain=cluster_domain, credentials=True
        )
        if isinstance(proposed, str):
            adoption.left.append((key, proposed))
            continue
        links.append(link_fields(proposed))
        if proposed.credentials is not None:
            adoption.credentials[key] = proposed.credentials.secret_name
        else:
            values[key] = str(value)
    if not links:
        return adoption
    owners = managed_keys(configmap, manager=FIELD_MANAGER)
    adoption.owners = {key: sorted(owners.get(key, set()) - {FIELD_MANAGER}) for key in values}
    spec: dict[str, Any] = {"configMapName": name}
    if adoption.credentials:
        spec["secretName"] = values_secret_name(name)
        adoption.create_secrets = [
            render_secret_commands(secret=secret, namespace=namespace, servicelink=name)
            for secret in sorted(set(adoption.credentials.values()))
        ]
    spec["links"] = links
    adoption.servicelink = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    if values:
        adoption.handover = render_configmap(name=name, namespace=namespace, data=values, owner=None)
    if judge_configmap_write(configmap, servicelink=name, uid="") is not None:
        adoption.share = render_consent_command(
            resource="configmap",
            name=name,
            namespace=namespace,
            annotation=WRITABLE_BY_ANNOTATION,
            granted=parse_name_list((metadata.get("annotations") or {}).get(WRITABLE_BY_ANNOTATION)),
            servicelink=name,
        )
    return adoption
