"""Translate a Docker Compose project into Services and ServiceLinks, reporting what it does not translate (pure)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from servicelink.model import (
    API_VERSION,
    DNS1035_LABEL,
    KEY_PATTERN,
    KIND,
    PORT_NAME,
    PORT_NAME_MAX,
    READABLE_BY_ANNOTATION,
    SHARED_LABEL,
)
from servicelink.tools.address import (
    Address,
    credentials_secret_name,
    hide_credentials,
    link_fields,
    propose_link,
    read_address,
    read_userinfo,
    values_secret_name,
)
from servicelink.views import ObjectKey, ServiceView

# What the import reads; every other key of a Compose service is reported as not translated (image too, though
# a port-less service's image may give it a well-known port: no workload is written from it).
READ_KEYS = frozenset({"environment", "env_file", "ports", "expose"})
# Top-level keys with nothing to translate into Kubernetes objects, or read here (secrets).
PROJECT_KEYS = frozenset({"services", "version", "name", "secrets"})
# The variables a database image takes its user and password from, as (user, password): such a service's
# credentials go to a Secret manifest. Either may be given as <VARIABLE>_FILE=/run/secrets/<name>, the path
# where Compose mounts its top-level secret <name>; a secret with file: is then read.
DATABASE_CREDENTIALS: tuple[tuple[str, str], ...] = (
    ("POSTGRES_USER", "POSTGRES_PASSWORD"),
    ("MYSQL_USER", "MYSQL_PASSWORD"),
    ("MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"),
    ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"),
)
SECRETS_MOUNT = "/run/secrets/"
# The port a well-known server's image listens on, by image name without registry, owner, tag or digest, with
# the Service port's name: a service of such an image that lists no ports: or expose: still gets a Service.
WELL_KNOWN_PORTS: Mapping[str, tuple[int, str]] = {
    "postgres": (5432, "postgres"),
    "postgresql": (5432, "postgres"),  # bitnami/postgresql
    "postgis": (5432, "postgres"),  # postgis/postgis
    "mysql": (3306, "mysql"),
    "mariadb": (3306, "mysql"),
    "redis": (6379, "redis"),
    "valkey": (6379, "redis"),  # valkey/valkey
    "mongo": (27017, "mongodb"),
    "mongodb": (27017, "mongodb"),  # bitnami/mongodb
    "rabbitmq": (5672, "amqp"),
    "memcached": (11211, "memcached"),
    "elasticsearch": (9200, "http"),
    "opensearch": (9200, "http"),  # opensearchproject/opensearch
    "nats": (4222, "nats"),
    "kafka": (9092, "kafka"),  # apache/kafka, bitnami/kafka
    "cp-kafka": (9092, "kafka"),  # confluentinc/cp-kafka
    "zookeeper": (2181, "zookeeper"),
}
_PORT = re.compile(
    r"^(?:(?:\[[^\]]*\]|[^:]*):)?(?:(?P<published>[\d\-]*):)?(?P<target>\d+(?:-\d+)?)(?:/(?P<proto>\w+))?$"
)


class ComposeError(ValueError):
    """The file is not a Compose project this import can read."""


@dataclass
class ComposeImport:
    """The objects to apply, and notes on what was left out and why."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_env_file(text: str) -> dict[str, str]:
    """Return the variables of a Compose ``env_file``: ``KEY=VALUE`` lines, ``#`` comments, optional quotes."""
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[key.strip()] = value
    return found


def _environment(
    name: str, service: Mapping[str, Any], read_env_file: Callable[[str], str | None], notes: list[str]
) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    files = service.get("env_file") or []
    for entry in [files] if isinstance(files, str | Mapping) else files:
        path = entry if isinstance(entry, str) else str(entry.get("path", ""))
        text = read_env_file(path)
        if text is None:
            required = not isinstance(entry, Mapping) or entry.get("required", True)
            notes.append(f"{name}: env_file {path} {'not found' if required else 'absent (not required)'}")
            continue
        env.update(parse_env_file(text))
    raw = service.get("environment") or {}
    if isinstance(raw, Mapping):
        env.update({str(k): None if v is None else str(v) for k, v in raw.items()})
    else:
        for item in raw:
            key, sep, value = str(item).partition("=")
            env[key] = value if sep else None
    return env


def _read_secrets(
    project: Mapping[str, Any], read_env_file: Callable[[str], str | None], notes: list[str]
) -> dict[str, str]:
    """The text of each top-level secret with ``file:``, by name, without its final newline (as a password file
    is written); a secret of another source (environment, external) is noted and not read."""
    found: dict[str, str] = {}
    declared = project.get("secrets") or {}
    for name, entry in declared.items() if isinstance(declared, Mapping) else ():
        path = entry.get("file") if isinstance(entry, Mapping) else None
        if not isinstance(path, str):
            notes.append(f"top-level secret {name}: not a file: secret; not read")
            continue
        text = read_env_file(path)
        if text is None:
            notes.append(f"top-level secret {name}: file {path} not found")
            continue
        found[str(name)] = text.removesuffix("\n").removesuffix("\r")
    return found


@dataclass(frozen=True)
class _Given:
    """The user and password a database service is given, the variables they came from, and the secrets read."""

    user: str
    password: str = field(repr=False)
    variables: tuple[str, str]
    secrets: frozenset[str]


def _database_credentials(env: Mapping[str, str | None], secrets: Mapping[str, str]) -> _Given | None:
    """The user and password a database service is given (DATABASE_CREDENTIALS); None without a pair of them."""

    def read(variable: str) -> tuple[str, str, str | None] | None:
        if env.get(variable):
            return str(env[variable]), variable, None
        secret = (env.get(f"{variable}_FILE") or "").removeprefix(SECRETS_MOUNT)
        if secret in secrets:
            return secrets[secret], f"{variable}_FILE", secret
        return None

    for user_variable, password_variable in DATABASE_CREDENTIALS:
        user, password = read(user_variable), read(password_variable)
        if user is not None and password is not None:
            read_secrets = frozenset(name for name in (user[2], password[2]) if name is not None)
            return _Given(user[0], password[0], (user[1], password[1]), read_secrets)
    return None


def render_shared_secret(
    *, name: str, namespace: str | None, data: Mapping[str, str], readers: list[str]
) -> dict[str, Any]:
    """A Secret of ``data`` (as ``stringData``), shared with the ServiceLinks ``readers`` as servicelink's consent
    rule asks: the label lets the operator see it, the annotation names who may read it."""
    metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    metadata["labels"] = {SHARED_LABEL: "true"}
    if readers:
        metadata["annotations"] = {READABLE_BY_ANNOTATION: ",".join(sorted(readers))}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque", "stringData": dict(data)}


def _container_ports(name: str, service: Mapping[str, Any], notes: list[str]) -> dict[int, str]:
    """The ports other containers reach this one on (Compose's ``target``), with their protocol."""
    ports: dict[int, str] = {}
    for entry in [*(service.get("ports") or ()), *(service.get("expose") or ())]:
        if isinstance(entry, Mapping):
            target, proto = entry.get("target"), str(entry.get("protocol") or "tcp")
        else:
            match = _PORT.match(str(entry))
            target = match["target"] if match else None
            proto = (match["proto"] if match else None) or "tcp"
        if target is None or not str(target).isdigit():
            notes.append(f"{name}: port {entry!r} not translated (a range or a form this import does not read)")
            continue
        ports[int(target)] = proto.upper()
    return ports


def image_name(image: str) -> str:
    """The name of an image without registry, owner, tag or digest: ``docker.io/bitnami/redis:7.2`` -> ``redis``."""
    return image.rpartition("/")[2].partition("@")[0].partition(":")[0].lower()


def _port_name(number: int, candidates: list[str], taken: set[str]) -> str:
    for candidate in candidates:
        if len(candidate) <= PORT_NAME_MAX and PORT_NAME.fullmatch(candidate) and candidate not in taken:
            return candidate
    return f"port-{number}"


def import_compose(
    project: Mapping[str, Any], *, namespace: str | None, read_env_file: Callable[[str], str | None]
) -> ComposeImport:
    """Return a Service per Compose service with ports, and a ServiceLink per service whose environment
    points at another one; ``read_env_file`` returns an env file's text, or None when it does not exist.

    Each link is checked to render its value byte for byte; values that are
    interpolations (``${AUTH_URL:-http://auth:3001}``), point at localhost, or
    cannot be rendered exactly are reported and left out. A URL with
    credentials to service ``db`` gets a link that reads them from the Secret
    ``db-credentials``, and its ServiceLink writes it to the Secret
    ``<service>-secrets``; ``db-credentials`` is written as a Secret manifest,
    holding the URL's user and password, else those of ``db``'s own
    environment (DATABASE_CREDENTIALS). No note shows a user or password. Raises
    ``ComposeError`` when ``project`` has no ``services`` mapping.
    """
    services = project.get("services")
    if not isinstance(services, Mapping) or not services:
        raise ComposeError("no services: mapping (is this a Compose file?)")
    result = ComposeImport()
    notes = result.notes
    ignored: defaultdict[str, list[str]] = defaultdict(list)
    envs: dict[str, dict[str, str | None]] = {}
    ports: dict[str, dict[int, str]] = {}
    well_known: dict[str, tuple[int, str]] = {}  # service -> the well-known port it was given, and its name
    for name, service in services.items():
        service = service or {}
        if not DNS1035_LABEL.fullmatch(str(name)) or len(str(name)) > 63:
            notes.append(f"{name}: not a valid Service name (DNS-1035 label); left out")
            continue
        for key in service:
            if key not in READ_KEYS:
                ignored[str(key)].append(str(name))
        envs[name] = _environment(name, service, read_env_file, notes)
        ports[name] = _container_ports(name, service, notes)
        image = image_name(str(service.get("image") or ""))
        if not service.get("ports") and not service.get("expose") and image in WELL_KNOWN_PORTS:
            number = WELL_KNOWN_PORTS[image][0]
            notes.append(f"{name}: no ports; used {image}'s well-known port {number}")
            ports[name][number] = "TCP"
            well_known[name] = WELL_KNOWN_PORTS[image]

    # A port another service's value uses must be on the Service, as any port is reachable in Compose.
    schemes: defaultdict[tuple[str, int], set[str]] = defaultdict(set)
    for name, env in envs.items():
        for key, value in env.items():
            address = read_address(key, value or "")
            if (
                isinstance(address, Address)
                and address.host in ports
                and address.host != name
                and address.port is not None
            ):
                if address.port not in ports[address.host]:
                    notes.append(f"{name}: {key} uses port {address.port} of {address.host}, added to its Service")
                    ports[address.host][address.port] = "TCP"
                if address.scheme:
                    schemes[(address.host, address.port)].add(address.scheme)

    secret_files = _read_secrets(project, read_env_file, notes)
    ns_meta = {"namespace": namespace} if namespace else {}
    views: dict[ObjectKey, ServiceView] = {}
    for name, numbers in ports.items():
        if not numbers:
            continue
        taken: set[str] = set()
        spec_ports = []
        for number, proto in sorted(numbers.items()):
            candidates = sorted(schemes[(name, number)])
            if name in well_known and well_known[name][0] == number:
                candidates.append(well_known[name][1])
            port_name = _port_name(number, candidates, taken)
            taken.add(port_name)
            spec_ports.append(
                {
                    "name": port_name,
                    "port": number,
                    "targetPort": number,
                    **({"protocol": proto} if proto != "TCP" else {}),
                }
            )
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, **ns_meta},
            "spec": {"type": "ClusterIP", "selector": {"app": name}, "ports": spec_ports},
        }
        result.objects.append(body)
        views[(namespace or "", name)] = ServiceView.from_body(
            {**body, "metadata": {"name": name, "namespace": namespace or ""}}
        )

    # Service -> the user and password of the links to it, the first link that carried them, and its readers.
    credentials: dict[str, tuple[tuple[str, str], str, list[str]]] = {}
    servicelinks: list[dict[str, Any]] = []
    for name, env in envs.items():
        links: list[dict[str, Any]] = []
        for key, value in env.items():
            if value is None:
                notes.append(f"{name}: {key} takes its value from the host's environment; left out")
                continue
            shown = f"{key}={hide_credentials(value)}"
            if "$" in value:
                notes.append(f"{name}: {shown} is an interpolation, not guessed; left out")
                continue
            address = read_address(key, value)
            if isinstance(address, str) or (not address.local and address.host not in envs):
                continue  # not an address of a Compose service: plain configuration
            if address.host == name:
                notes.append(f"{name}: {shown} points at the service itself; left out")
                continue
            if not KEY_PATTERN.fullmatch(key):
                notes.append(f"{name}: {key} is not a valid ConfigMap key for an environment variable; left out")
                continue
            proposed = propose_link(
                key, value, namespace=namespace or "", services=views, cluster_domain="cluster.local", credentials=True
            )
            if isinstance(proposed, str):
                notes.append(f"{name}: {shown}: {proposed}; left out")
                continue
            userinfo = read_userinfo(value)
            if proposed.credentials is not None and userinfo is not None:
                pair = (userinfo[0], userinfo[1] or "")
                first = credentials.setdefault(proposed.service, (pair, f"{name}'s {key}", []))
                if first[0] != pair:
                    notes.append(
                        f"{name}: {shown}: carries other credentials than {first[1]}, which Secret "
                        f"{proposed.credentials.secret_name} holds; left out"
                    )
                    continue
                if name not in first[2]:
                    first[2].append(name)
            links.append(link_fields(proposed))
        if links:
            spec: dict[str, Any] = {"configMapName": f"{name}-config"}
            if any("credentials" in link for link in links):
                spec["secretName"] = values_secret_name(spec["configMapName"])
            spec["links"] = links
            servicelinks.append(
                {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, **ns_meta}, "spec": spec}
            )
    secrets_read: set[str] = set()
    for name, env in envs.items():
        own = _database_credentials(env, secret_files)
        secret = credentials_secret_name(name)
        given = f"its {' and '.join(own.variables)}" if own is not None else ""
        if name in credentials:
            (user, password), source, readers = credentials[name]
            if own is not None and (own.user, own.password) != (user, password):
                notes.append(f"{name}: {given} differ from the credentials of {source}; Secret {secret} holds those")
        elif own is not None:
            user, password, source, readers = own.user, own.password, given, []
        else:
            continue
        secrets_read |= own.secrets if own is not None else set()
        data = {"username": user, "password": password}
        result.objects.append(render_shared_secret(name=secret, namespace=namespace, data=data, readers=readers))
        shared = f"shared with ServiceLink {', '.join(sorted(readers))}" if readers else "read by no ServiceLink"
        notes.append(f"{name}: Secret {secret} holds the username and password of {source} ({shared})")
    for secret in sorted(set(secret_files) - secrets_read):
        notes.append(f"top-level secret {secret}: not translated (only a database's user or password file is read)")
    result.objects.extend(servicelinks)
    for key in project:
        if key not in PROJECT_KEYS:
            ignored[f"top-level {key}"] = []
    if ignored:
        keys = ", ".join(f"{key} ({', '.join(names)})" if names else key for key, names in sorted(ignored.items()))
        notes.append(
            f"not translated (servicelink writes Services, ServiceLinks and Secrets of credentials only): {keys}"
        )
    return result
