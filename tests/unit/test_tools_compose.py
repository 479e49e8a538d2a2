"""servicelink import compose: Services and ServiceLinks from a Compose file, what is left out reported."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from console import REPO, assert_golden, run

from servicelink.model import PORT_NAME, PORT_NAME_MAX, parse_spec
from servicelink.tools.commands import dump_yaml
from servicelink.tools.compose import WELL_KNOWN_PORTS, image_name, import_compose, parse_env_file

COMPOSE = REPO / "examples" / "compose" / "docker-compose.yml"
SEED_GATEWAY_CONFIG = {"AUTH_SERVICE_URL": "http://auth-service:3001", "APP_SERVICE_URL": "http://app-service:3002"}


def test_gallery_golden(capsys: pytest.CaptureFixture[str]) -> None:
    ran = run(capsys, "import", "compose", str(COMPOSE), "--namespace", "gallery")
    assert ran.code == 0
    assert_golden("import-compose-gallery.yaml", ran.out)
    assert_golden("import-compose-gallery.notes", ran.err)


def test_importing_the_gallery_gives_exactly_the_seeds_configmap_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    imported = run(capsys, "import", "compose", str(COMPOSE), "--namespace", "gallery").out
    monkeypatch.setattr("sys.stdin", io.StringIO(imported))
    rendered = run(capsys, "render", "-f", "-")
    assert rendered.code == 0
    data = {cm["metadata"]["name"]: cm["data"] for cm in yaml.safe_load_all(rendered.out)}
    assert data == {
        "gateway-service-config": SEED_GATEWAY_CONFIG,
        "app-service-config": {"MONGODB_HOST": "mongodb", "REDIS_URL": "redis://redis:6379"},
        "worker-service-config": {"APP_SERVICE_URL": "http://app-service:3002"},
    }
    assert rendered.out == (Path(__file__).parent / "golden" / "render-gallery.yaml").read_text()


def links_of(objects: list[dict[str, object]], name: str) -> list[object]:
    for body in objects:
        if body["kind"] == "ServiceLink" and body["metadata"] == {"name": name}:  # type: ignore[comparison-overlap]
            return body["spec"]["links"]  # type: ignore[index, no-any-return]
    raise AssertionError(f"no ServiceLink {name}")


def test_what_is_not_translated_is_reported_not_guessed() -> None:
    project = {
        "services": {
            "web": {
                "build": ".",
                "environment": [
                    "AUTH_URL=${AUTH_URL:-http://auth:3001}",
                    "LOCAL_URL=http://localhost:3001",
                    "FROM_HOST",
                    "DB=db:5432",
                    "OTHER=http://auth:9000/v1",
                    "PLAIN=hello",
                ],
                "ports": ["127.0.0.1:8080:80/tcp", "9000-9002"],
            },
            "auth": {"expose": [3001], "ports": [{"target": 53, "protocol": "udp"}]},
            "db": {"expose": ["5432"], "env_file": [{"path": "missing.env", "required": False}]},
        },
        "networks": {"default": None},
    }
    imported = import_compose(project, namespace=None, read_env_file=lambda path: None)
    assert imported.notes == [
        "web: port '9000-9002' not translated (a range or a form this import does not read)",
        "db: env_file missing.env absent (not required)",
        "web: OTHER uses port 9000 of auth, added to its Service",
        "web: AUTH_URL=${AUTH_URL:-http://auth:3001} is an interpolation, not guessed; left out",
        "web: LOCAL_URL=http://localhost:3001: points at localhost, the container itself; left out",
        "web: FROM_HOST takes its value from the host's environment; left out",
        "not translated (servicelink writes Services, ServiceLinks and Secrets of credentials only): build (web),"
        " top-level networks",
    ]
    auth = next(o for o in imported.objects if o["metadata"] == {"name": "auth"})
    assert auth["spec"]["ports"] == [
        {"name": "port-53", "port": 53, "targetPort": 53, "protocol": "UDP"},
        {"name": "port-3001", "port": 3001, "targetPort": 3001},
        {"name": "http", "port": 9000, "targetPort": 9000},
    ]
    assert links_of(imported.objects, "web") == [
        {"key": "DB", "service": "db", "template": "{host}:{port}"},
        {"key": "OTHER", "service": "auth", "port": "http", "path": "/v1"},
    ]


def test_env_file_and_environment_map_environment_wins() -> None:
    project = {
        "services": {
            "web": {"env_file": "web.env", "environment": {"B_URL": "http://api:80"}},
            "api": {"expose": ["80"]},
        }
    }
    env = {"web.env": "# comment\nexport A_URL='http://api:80/a'\nB_URL=http://api:80/b\n"}
    imported = import_compose(project, namespace="shop", read_env_file=env.get)
    assert imported.notes == []
    assert links_of([o | {"metadata": {"name": o["metadata"]["name"]}} for o in imported.objects], "web") == [
        {"key": "A_URL", "service": "api", "path": "/a"},
        {"key": "B_URL", "service": "api"},
    ]


PASSWORD = "pw-not-to-copy"


def test_a_password_equal_to_a_service_name_is_no_link() -> None:
    project = yaml.safe_load(
        """
        services:
          shop:
            image: shop:1
            ports: ["8000:8000"]
            environment:
              DB_HOST: db
              DB_USER: shop
              DB_NAME: shop
          db:
            image: postgres:16
            ports: ["5432"]
            environment:
              POSTGRES_USER: shop
              POSTGRES_PASSWORD: shop
              POSTGRES_DB: shop
              PGDATA: shop
        """
    )
    imported = import_compose(project, namespace=None, read_env_file=lambda path: None)
    servicelinks = [o["metadata"]["name"] for o in imported.objects if o["kind"] == "ServiceLink"]
    assert servicelinks == ["shop"]
    assert links_of(imported.objects, "shop") == [{"key": "DB_HOST", "service": "db", "template": "{host}"}]
    assert imported.notes == [
        "db: Secret db-credentials holds the username and password of its POSTGRES_USER and POSTGRES_PASSWORD"
        " (read by no ServiceLink)",
        "not translated (servicelink writes Services, ServiceLinks and Secrets of credentials only): image (shop, db)",
    ]


def test_a_url_with_credentials_links_a_secret_and_its_password_is_only_in_the_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = yaml.safe_load(
        f"""
        services:
          shop:
            environment:
              DATABASE_URL: postgres://dbuser:{PASSWORD}%40x@db:5432/shop
              CACHE_URL: redis://:{PASSWORD}@cache:6379/0
              REPLICA_URL: postgres://dbuser:{PASSWORD}${{SUFFIX}}@db:5432/shop
          worker:
            environment:
              DATABASE_URL: postgres://dbuser:{PASSWORD}%40x@db:5432/shop
              OTHER_URL: postgres://other:{PASSWORD}@db:5432/shop
          db:
            image: postgres:16
            environment:
              POSTGRES_USER: dbuser
              POSTGRES_PASSWORD: another-{PASSWORD}
          cache:
            expose: ["6379"]
        """
    )
    imported = import_compose(project, namespace="shop", read_env_file=lambda path: None)
    secrets = [o for o in imported.objects if o["kind"] == "Secret"]
    assert secrets == [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "db-credentials",
                "namespace": "shop",
                "labels": {"servicelink.dev/shared": "true"},
                "annotations": {"servicelink.dev/readable-by": "shop,worker"},
            },
            "type": "Opaque",
            "stringData": {"username": "dbuser", "password": f"{PASSWORD}@x"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "cache-credentials",
                "namespace": "shop",
                "labels": {"servicelink.dev/shared": "true"},
                "annotations": {"servicelink.dev/readable-by": "shop"},
            },
            "type": "Opaque",
            "stringData": {"username": "", "password": PASSWORD},
        },
    ]
    shop = next(o for o in imported.objects if o["kind"] == "ServiceLink" and o["metadata"]["name"] == "shop")
    assert shop["spec"] == {
        "configMapName": "shop-config",
        "secretName": "shop-secrets",
        "links": [
            {
                "key": "DATABASE_URL",
                "service": "db",
                "scheme": "postgres",
                "path": "/shop",
                "credentials": {"secretName": "db-credentials"},
            },
            {
                "key": "CACHE_URL",
                "service": "cache",
                "scheme": "redis",
                "path": "/0",
                "credentials": {"secretName": "cache-credentials"},
            },
        ],
    }
    assert imported.notes == [
        "db: no ports; used postgres's well-known port 5432",
        "shop: REPLICA_URL=postgres://***@db:5432/shop is an interpolation, not guessed; left out",
        "worker: OTHER_URL=postgres://***@db:5432/shop: carries other credentials than shop's DATABASE_URL, which"
        " Secret db-credentials holds; left out",
        "db: its POSTGRES_USER and POSTGRES_PASSWORD differ from the credentials of shop's DATABASE_URL; Secret"
        " db-credentials holds those",
        "db: Secret db-credentials holds the username and password of shop's DATABASE_URL (shared with ServiceLink"
        " shop, worker)",
        "cache: Secret cache-credentials holds the username and password of shop's CACHE_URL (shared with"
        " ServiceLink shop)",
        "not translated (servicelink writes Services, ServiceLinks and Secrets of credentials only): image (db)",
    ]
    others = [o for o in imported.objects if o["kind"] != "Secret"]
    leaked = PASSWORD in repr(others) or "dbuser" in repr(others) or PASSWORD in "".join(imported.notes)
    assert not leaked, "the user or password shows outside the Secret manifests"
    # servicelink render takes what the import writes as it is: every link resolves, the Secrets it emits
    # giving the credentials, and without --show-secrets no password is printed.
    monkeypatch.setattr("sys.stdin", io.StringIO(dump_yaml(imported.objects)))
    rendered = run(capsys, "render", "-f", "-")
    assert "InvalidSpec" not in rendered.err
    assert rendered.code == 0, rendered.err
    assert "DATABASE_URL  in Secret shop/worker-secrets (--show-secrets prints it)" in rendered.err
    for body in imported.objects:
        if body["kind"] == "ServiceLink":
            parse_spec(body["spec"])
    leaked = PASSWORD in rendered.out + rendered.err
    assert not leaked, "render shows the password"


def test_a_databases_own_credentials_and_a_password_file_make_a_secret() -> None:
    project = yaml.safe_load(
        """
        services:
          db:
            image: postgres:16
            environment:
              POSTGRES_USER: shop
              POSTGRES_PASSWORD_FILE: /run/secrets/db_password
            secrets: [db_password]
          mq:
            image: rabbitmq:3
            environment: ["RABBITMQ_DEFAULT_USER=app"]
        secrets:
          db_password:
            file: ./db_password.txt
          api_key:
            file: ./api_key.txt
          token:
            environment: TOKEN
        """
    )
    files = {"./db_password.txt": f"{PASSWORD}\n", "./api_key.txt": "key"}
    imported = import_compose(project, namespace=None, read_env_file=files.get)
    secrets = [o for o in imported.objects if o["kind"] == "Secret"]
    assert secrets == [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db-credentials", "labels": {"servicelink.dev/shared": "true"}},
            "type": "Opaque",
            "stringData": {"username": "shop", "password": PASSWORD},
        }
    ]
    assert imported.notes == [
        "db: no ports; used postgres's well-known port 5432",
        "mq: no ports; used rabbitmq's well-known port 5672",
        "top-level secret token: not a file: secret; not read",
        "db: Secret db-credentials holds the username and password of its POSTGRES_USER and POSTGRES_PASSWORD_FILE"
        " (read by no ServiceLink)",
        "top-level secret api_key: not translated (only a database's user or password file is read)",
        "not translated (servicelink writes Services, ServiceLinks and Secrets of credentials only): image (db, mq),"
        " secrets (db)",
    ]


def test_a_well_known_server_without_ports_gets_its_port() -> None:
    project = yaml.safe_load(
        """
        services:
          shop:
            environment:
              MYSQL_HOST: db
              CACHE_URL: redis://cache:6379/0
              QUEUE_URL: amqp://queue:5672
          db:
            image: mysql:8.4
          cache:
            image: docker.io/bitnami/redis:7.2@sha256:0123
          queue:
            image: rabbitmq:3-management
            expose: ["15672"]
          tool:
            image: busybox
        """
    )
    imported = import_compose(project, namespace=None, read_env_file=lambda path: None)
    services = {o["metadata"]["name"]: o["spec"]["ports"] for o in imported.objects if o["kind"] == "Service"}
    assert services == {
        "db": [{"name": "mysql", "port": 3306, "targetPort": 3306}],
        "cache": [{"name": "redis", "port": 6379, "targetPort": 6379}],
        # A service that lists a port is taken at its word; the port a value uses is added to it.
        "queue": [
            {"name": "amqp", "port": 5672, "targetPort": 5672},
            {"name": "port-15672", "port": 15672, "targetPort": 15672},
        ],
    }
    assert links_of(imported.objects, "shop") == [
        {"key": "MYSQL_HOST", "service": "db", "template": "{host}"},
        {"key": "CACHE_URL", "service": "cache", "scheme": "redis", "path": "/0"},
        {"key": "QUEUE_URL", "service": "queue", "port": "amqp", "scheme": "amqp"},
    ]
    assert imported.notes[:3] == [
        "db: no ports; used mysql's well-known port 3306",
        "cache: no ports; used redis's well-known port 6379",
        "shop: QUEUE_URL uses port 5672 of queue, added to its Service",
    ]


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("postgres", "postgres"),
        ("postgres:16-alpine", "postgres"),
        ("docker.io/library/postgres:16", "postgres"),
        ("registry.local:5000/team/Redis:7@sha256:ab", "redis"),
        ("confluentinc/cp-kafka:7.6.0", "cp-kafka"),
    ],
)
def test_image_name(image: str, name: str) -> None:
    assert image_name(image) == name


def test_well_known_port_names_are_valid_service_port_names() -> None:
    invalid = [n for _, n in WELL_KNOWN_PORTS.values() if len(n) > PORT_NAME_MAX or not PORT_NAME.fullmatch(n)]
    assert invalid == []


def test_the_docs_list_every_well_known_image_and_port() -> None:
    text = " ".join((REPO / "docs" / "how-to" / "import-compose.md").read_text().split())
    missing = [f"{image} {port}" for image, (port, _) in WELL_KNOWN_PORTS.items() if f" {image}" not in text]
    missing += [str(port) for port, _ in WELL_KNOWN_PORTS.values() if f"({port})" not in text]
    assert missing == []


def test_parse_env_file() -> None:
    assert parse_env_file('A=1\n\n# no\nB="two words"\nC\nD=x=y\n') == {"A": "1", "B": "two words", "D": "x=y"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("version: '2'\n", "no services: mapping (is this a Compose file?)"),
        ("services:\n  web: [\n", ":3:1: malformed YAML"),
        ("- a\n", "expected a Compose file (a mapping with services:)"),
    ],
)
def test_bad_compose_files_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "docker-compose.yml").write_text(content)
    ran = run(capsys, "import", "compose", str(tmp_path / "docker-compose.yml"))
    assert ran.code == 2
    assert message in ran.err
    assert ran.err.count("\n") == 1


def test_a_host_only_value_is_linked_without_a_port_to_a_service_of_several() -> None:
    project = {
        "services": {
            "app": {"image": "shop", "environment": {"DB_HOST": "db"}},
            "db": {"image": "example/db", "expose": [5432, 9187]},
        }
    }
    imported = import_compose(project, namespace=None, read_env_file=lambda path: None)
    assert links_of(imported.objects, "app") == [{"key": "DB_HOST", "service": "db", "template": "{host}"}]
