"""Read service addresses in configuration values, and propose the link that renders each one exactly (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servicelink.model import DEFAULT_TEMPLATE, Link
from servicelink.resolve import resolve_link
from servicelink.views import ObjectKey, ServiceView

# ``user[:pass]@`` ends at the last ``@`` before the path, as urllib reads it: a raw ``@`` in a password
# stays in the credentials. The group only tells that credentials are there; nothing keeps them.
_USERINFO = r"(?P<userinfo>[^/?#\s]*@)?"
_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://"
    + _USERINFO
    + r"(?P<host>[A-Za-z0-9][A-Za-z0-9.\-]*)(?::(?P<port>\d{1,5}))?(?P<path>/\S*)?$"
)
_AUTHORITY = re.compile("^" + _USERINFO + r"(?P<host>[A-Za-z0-9][A-Za-z0-9.\-]*)(?::(?P<port>\d{1,5}))?$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)*$")
# Greedy to the last "@", across spaces too: over-hiding a path's "@" is harmless, showing a password is not.
_CREDENTIALS = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)?.*@", re.DOTALL)
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::1"})
# A variable whose name ends so holds an address even as a bare host (``DB_HOST=db``); matched case-insensitively.
ADDRESS_KEY_SUFFIXES = ("HOST", "HOSTNAME", "URL", "URI", "ADDR", "ADDRESS", "ENDPOINT", "SERVER")
# A variable whose name ends so holds a credential or a database name, never an address, whatever its value:
# ``POSTGRES_PASSWORD=shop`` beside a service named shop is a password. "_DB" keeps ``MONGODB`` an address key's
# stem; "KEY" and "PASS" also catch ``MONKEY`` and ``BYPASS``, a link missed rather than a secret copied.
CREDENTIAL_KEY_SUFFIXES = (
    "USER",
    "USERNAME",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PWD",
    "SECRET",
    "TOKEN",
    "KEY",
    "_DB",
    "DBNAME",
    "DB_NAME",
    "DATABASE",
    "DATABASE_NAME",
)
CARRIES_CREDENTIALS = "carries credentials: not linked (a ServiceLink would need them from a Secret)"


@dataclass(frozen=True)
class Address:
    """A value read as ``scheme://[user[:pass]@]host[:port][/path]``, ``[user[:pass]@]host[:port]``, or a bare
    ``host``. ``credentials`` says the value carries ``user[:pass]@``; the user and password are never kept."""

    host: str
    scheme: str | None = None
    port: int | None = None
    path: str = ""
    credentials: bool = False

    @property
    def local(self) -> bool:
        """Whether it points at the container itself."""
        return self.host in LOCAL_HOSTS

    @property
    def bare(self) -> bool:
        """Whether it is a lone host, shaped like any word: only its variable's name makes it an address."""
        return self.scheme is None and self.port is None and not self.credentials


def parse_address(value: str) -> Address | None:
    """Return the address ``value`` holds, or None when it is not shaped like one.

    A bare host is any DNS name; whether it names a Service is for the caller to say.
    """
    if match := _URL.match(value):
        port = match["port"]
        return Address(
            match["host"], match["scheme"], int(port) if port else None, match["path"] or "", bool(match["userinfo"])
        )
    if (match := _AUTHORITY.match(value)) and (match["userinfo"] or match["port"]):
        port = match["port"]
        return Address(match["host"], None, int(port) if port else None, credentials=bool(match["userinfo"]))
    if _HOST.match(value):
        return Address(value)
    return None


def is_credential_key(key: str) -> bool:
    """Whether a variable of this name holds a credential or a database name, which is never linked."""
    return key.upper().endswith(CREDENTIAL_KEY_SUFFIXES)


def read_address(key: str, value: str) -> Address | str:
    """Return the address variable ``key`` holds, or why it holds none.

    A value is an address when it is shaped like one (``host:port``, ``scheme://…``, ``user@host``), or when
    it is a bare host and ``key`` ends as an address's name does (ADDRESS_KEY_SUFFIXES). A credential's key
    (CREDENTIAL_KEY_SUFFIXES) holds no address, whatever its value.
    """
    if is_credential_key(key):
        return "a credential or database name: never linked"
    address = parse_address(value)
    if address is None or (address.bare and not key.upper().endswith(ADDRESS_KEY_SUFFIXES)):
        return "not a service address"
    return address


def hide_credentials(value: str) -> str:
    """Return ``value`` fit to show: ``user[:pass]@`` replaced by ``***@``."""
    return _CREDENTIALS.sub(lambda match: f"{match['scheme'] or ''}***@", value, count=1)


def service_of(host: str, *, namespace: str, cluster_domain: str) -> tuple[ObjectKey, str] | None:
    """Return the Service a host names as cluster DNS reads it from ``namespace``, and the placeholder form used.

    ``auth`` (this namespace), ``auth.ns``, ``auth.ns.svc``, ``auth.ns.svc.<cluster domain>``.
    """
    parts = host.split(".")
    if len(parts) == 1:
        return (namespace, host), "{host}"
    if len(parts) == 2:
        return (parts[1], parts[0]), "{service}.{namespace}"
    if len(parts) == 3 and parts[2] == "svc":
        return (parts[1], parts[0]), "{service}.{namespace}.svc"
    if parts[2:] == ["svc", *cluster_domain.split(".")]:
        return (parts[1], parts[0]), "{fqdn}"
    return None


def _port_field(address: Address, service: ServiceView) -> int | str | None:
    """The link's ``port``: left out where the Service has one port, so a renumbering follows; else its name."""
    if address.port is None or service.type == "ExternalName":
        return address.port
    matching = [p for p in service.ports if p.port == address.port]
    if len(service.ports) == 1 and matching:
        return None
    if matching and matching[0].name:
        return matching[0].name
    return address.port


def propose_link(
    key: str,
    value: str,
    *,
    namespace: str,
    services: Mapping[ObjectKey, ServiceView],
    cluster_domain: str,
) -> Link | str:
    """Return a link whose rendered value equals ``value`` byte for byte, or why there is none.

    The link is checked by resolving it as the operator would; a link that
    would render anything else is never returned. A value carrying credentials
    gets none: a ServiceLink must not hold a password.
    """
    address = read_address(key, value)
    if isinstance(address, str):
        return address
    if address.local:
        return f"points at {address.host}, the container itself"
    found = service_of(address.host, namespace=namespace, cluster_domain=cluster_domain)
    if found is None or found[0] not in services:
        return f"{address.host} is not a Service"
    if address.credentials:
        return CARRIES_CREDENTIALS
    (target_ns, name), host_form = found
    service = services[(target_ns, name)]
    if target_ns != namespace:
        # {host} is the FQDN across namespaces, so the default template fits; a short name is spelled out.
        host_form = {"{fqdn}": "{host}", "{host}": "{service}"}.get(host_form, host_form)
    if address.scheme is not None:
        template = f"{{scheme}}://{host_form}" + (":{port}" if address.port is not None else "") + "{path}"
    else:
        template = host_form + (":{port}" if address.port is not None else "")
    fields: dict[str, Any] = {"key": key, "service": name}
    if target_ns != namespace:
        fields["namespace"] = target_ns
    port = _port_field(address, service)
    if port is not None:
        fields["port"] = port
    if address.scheme not in (None, "http"):
        fields["scheme"] = address.scheme
    if address.path:
        fields["path"] = address.path
    if template != DEFAULT_TEMPLATE:
        fields["template"] = template
    try:
        link = Link.model_validate(fields)
    except ValueError as error:
        return f"no valid link: {error}"
    result = resolve_link(link, namespace=namespace, services=services, endpoints={}, cluster_domain=cluster_domain)
    if result.value != value:
        return f"the closest link renders {result.value or result.message!r}, not the value"
    return link


def link_fields(link: Link) -> dict[str, Any]:
    """The link as a user writes it: fields left at their defaults left out."""
    return link.model_dump(exclude_defaults=True)
