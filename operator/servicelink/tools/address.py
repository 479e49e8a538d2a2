"""Read service addresses in configuration values, and propose the link that renders each one exactly (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servicelink.model import CREDENTIALS_TEMPLATE, DEFAULT_TEMPLATE, Link
from servicelink.resolve import escape_userinfo, resolve_link
from servicelink.views import ObjectKey, SecretView, ServiceView

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
CARRIES_USER_ONLY = "carries a user and no password: not linked (a link's credentials are a username and a password)"
NOT_ESCAPED = (
    "its user or password is not percent-encoded as servicelink writes it (RFC 3986: every byte but letters,"
    " digits and -._~ as %XX), so no link renders it byte for byte; encode it in the value first"
)


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


def _percent_decode(text: str) -> str:
    """``text`` with each ``%XX`` read as a byte of UTF-8, as ``urllib.parse.unquote`` does (not imported: a pure
    module imports no network library)."""
    decoded = re.sub(rb"%([0-9A-Fa-f]{2})", lambda match: bytes([int(match[1], 16)]), text.encode())
    return decoded.decode(errors="replace")


def read_userinfo(value: str) -> tuple[str, str | None] | None:
    """Return the user and password (None when there is none) of a value's ``user[:pass]@``, percent-decoded as a
    URL's reader decodes them; None when the value carries none.

    Only for a Secret's data, or to check a link: neither may show anywhere else.
    """
    match = _URL.match(value) or _AUTHORITY.match(value)
    if match is None or not match["userinfo"]:
        return None
    user, colon, password = match["userinfo"][:-1].partition(":")
    return _percent_decode(user), _percent_decode(password) if colon else None


def credentials_secret_name(service: str) -> str:
    """The Secret a proposed link reads the credentials for Service ``service`` from: ``<service>-credentials``."""
    return f"{service}-credentials"


def values_secret_name(configmap: str) -> str:
    """The Secret a proposed ServiceLink writes its credentialed values to (``spec.secretName``), beside ConfigMap
    ``configmap``: ``shop-config`` -> ``shop-secrets``, ``settings`` -> ``settings-secrets``."""
    return f"{configmap.removesuffix('-config')}-secrets"


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
    credentials: bool = False,
) -> Link | str:
    """Return a link whose rendered value equals ``value`` byte for byte, or why there is none.

    The link is checked by resolving it as the operator would; a link that
    would render anything else is never returned. A value carrying credentials
    gets none, unless ``credentials`` asks for a link that reads them from the
    Secret ``credentials_secret_name(service)`` (keys ``username`` and
    ``password``): a ServiceLink never holds a password, and no reason shows one.
    """
    address = read_address(key, value)
    if isinstance(address, str):
        return address
    if address.local:
        return f"points at {address.host}, the container itself"
    found = service_of(address.host, namespace=namespace, cluster_domain=cluster_domain)
    if found is None or found[0] not in services:
        return f"{address.host} is not a Service"
    userinfo = read_userinfo(value) if address.credentials else None
    if address.credentials and not credentials:
        return CARRIES_CREDENTIALS
    if userinfo is not None and userinfo[1] is None:
        return CARRIES_USER_ONLY
    (target_ns, name), host_form = found
    service = services[(target_ns, name)]
    if target_ns != namespace:
        # {host} is the FQDN across namespaces, so the default template fits; a short name is spelled out.
        host_form = {"{fqdn}": "{host}", "{host}": "{service}"}.get(host_form, host_form)
    authority = ("{username}:{password}@" if userinfo is not None else "") + host_form
    if address.scheme is not None:
        template = f"{{scheme}}://{authority}" + (":{port}" if address.port is not None else "") + "{path}"
    else:
        template = authority + (":{port}" if address.port is not None else "")
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
    secrets: dict[str, SecretView] = {}
    if userinfo is not None:
        secret = credentials_secret_name(name)
        fields["credentials"] = {"secretName": secret}
        # The link is checked against the value's own user and password, held only here.
        data = {"username": userinfo[0], "password": userinfo[1] or ""}
        secrets[secret] = SecretView(namespace, secret, "", frozenset({"*"}), data)
    if template != (CREDENTIALS_TEMPLATE if userinfo is not None else DEFAULT_TEMPLATE):
        fields["template"] = template
    try:
        link = Link.model_validate(fields)
    except ValueError as error:
        return f"no valid link: {error}"
    result = resolve_link(
        link, namespace=namespace, services=services, endpoints={}, cluster_domain=cluster_domain, secrets=secrets
    )
    if userinfo is None and result.value != value:
        return f"the closest link renders {result.value or result.message!r}, not the value"
    if userinfo is not None and result.secret_value != value:
        if result.secret_value is None:
            return f"the closest link renders {result.message!r}, not the value"
        return NOT_ESCAPED if result.secret_value == _escaped(value) else "the closest link renders another value"
    return link


def _escaped(value: str) -> str:
    """``value`` with its user and password percent-encoded as the operator writes them."""
    userinfo = read_userinfo(value)
    if userinfo is None or userinfo[1] is None:
        return value
    match = _URL.match(value) or _AUTHORITY.match(value)
    assert match is not None
    encoded = f"{escape_userinfo(userinfo[0])}:{escape_userinfo(userinfo[1])}@"
    return value[: match.start("userinfo")] + encoded + value[match.end("userinfo") :]


def link_fields(link: Link) -> dict[str, Any]:
    """The link as a user writes it: fields left at their defaults left out, the template of a link with
    credentials too when it is the default one with userinfo."""
    fields = link.model_dump(exclude_defaults=True, by_alias=True)
    if link.credentials is not None and link.template == CREDENTIALS_TEMPLATE:
        del fields["template"]
    return fields
