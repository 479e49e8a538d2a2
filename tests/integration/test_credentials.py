"""URLs with credentials: a Service's address and a Secret's username and password, written to a Secret, rolled
once on a rotation or a port change, and shown nowhere else."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from objects import (
    condition,
    deployment,
    events,
    service,
    servicelink,
    servicelinks_only,
    set_port,
    sl,
    template_hash,
    wait_condition,
    wait_until_acted,
)

from servicelink.resolve import escape_userinfo
from servicelink.testing.fixtures import Cluster, OperatorProcess, start_operator_process, wait_for

PASSWORD = "s3cr@t:/%25 é"
ROTATED = "n3w/p@ss:%word"
DB_URL = {"key": "DATABASE_URL", "service": "db", "scheme": "postgres", "path": "/shop"}
TO_SECRET = {"secretName": "shop-secrets"}


@pytest.fixture
def secrets_operator(kubeconfig_env: Path, crd: Path, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator with Secret access turned on, logging at debug level."""
    process = start_operator_process(
        kubeconfig_env, tmp_path / "operator.log", verbose=True, SERVICELINK_SECRETS="true"
    )
    yield process
    process.stop()
    print(f"\n[servicelink] operator log {process.log_path}:\n{process.log()[-20000:]}", file=sys.stderr)


def credentials(name: str, namespace: str, password: str, *, readable_by: str | None = "shop") -> dict[str, Any]:
    """A Secret holding a username and password, shared with ServiceLink ``readable_by`` (None: not shared)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if readable_by is not None:
        metadata["labels"] = {"servicelink.dev/shared": "true"}
        metadata["annotations"] = {"servicelink.dev/readable-by": readable_by}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "stringData": {"username": "app", "password": password},
    }


def secret_data(cluster: Cluster, namespace: str, name: str) -> dict[str, str] | None:
    secret = cluster.get("secret", name, "-n", namespace)
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def password_written(cluster: Cluster, namespace: str) -> str | None:
    """The password in the DATABASE_URL of the written Secret, decoded; None while there is none."""
    url = (secret_data(cluster, namespace, "shop-secrets") or {}).get("DATABASE_URL")
    return None if url is None else unquote(urlsplit(url).password or "")


def reader(name: str, namespace: str) -> dict[str, Any]:
    """A Deployment that reads DATABASE_URL from the written Secret (secretKeyRef), and nothing else."""
    body = deployment(name, namespace)
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "shop-secrets", "key": "DATABASE_URL"}}}
    ]
    return body


def metrics(process: OperatorProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{process.metrics_port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def generation(cluster: Cluster, namespace: str, name: str) -> int:
    return int(cluster.get("deployment", name, "-n", namespace)["metadata"]["generation"])


def test_a_url_with_credentials_is_written_to_the_secret_rolled_once_and_shown_nowhere_else(
    cluster: Cluster, namespace: str, secrets_operator: OperatorProcess, kubeconfig_env: Path
) -> None:
    cluster.apply(
        [
            service("db", namespace, 5432),
            service("api", namespace, 80),
            credentials("pg", namespace, PASSWORD),
            reader("reads-url", namespace),
            deployment("reads-configmap", namespace, env_from="shop-config"),
            servicelink(
                "shop",
                namespace,
                "shop-config",
                {"key": "API_URL", "service": "api"},
                {**DB_URL, "credentials": {"secretName": "pg"}},
                secretName="shop-secrets",
            ),
        ]
    )
    wait_condition(cluster, namespace, "shop", "Synced", "True")
    written = wait_for(lambda: secret_data(cluster, namespace, "shop-secrets"), what="the written Secret")
    url = urlsplit(written["DATABASE_URL"])
    assert (url.scheme, url.hostname, url.port, url.path) == ("postgres", "db", 5432, "/shop")
    assert (unquote(url.username or ""), unquote(url.password or "")) == ("app", PASSWORD)
    assert list(written) == ["DATABASE_URL"]
    assert cluster.get("configmap", "shop-config", "-n", namespace)["data"] == {"API_URL": "http://api:80"}
    owner = cluster.get("secret", "shop-secrets", "-n", namespace)["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("ServiceLink", "shop")
    entry = next(e for e in sl(cluster, namespace, "shop")["status"]["links"] if e["key"] == "DATABASE_URL")
    assert entry["credentials"]["secretName"] == "pg"
    assert entry["credentials"]["keys"] == ["username", "password"]

    # A new ServiceLink's Secret is created: the pods waiting for it start with it, nothing rolls.
    assert template_hash(cluster, namespace, "reads-url") is None
    first = generation(cluster, namespace, "reads-url")

    # Rotation: the reader of the Secret rolls once; the reader of the ConfigMap alone does not.
    before_configmap_reader = generation(cluster, namespace, "reads-configmap")
    cluster.apply(credentials("pg", namespace, ROTATED))
    wait_for(
        lambda: (
            unquote(urlsplit((secret_data(cluster, namespace, "shop-secrets") or {})["DATABASE_URL"]).password or "")
            == ROTATED
        ),
        what="the rotated password in the written Secret",
    )
    wait_for(lambda: generation(cluster, namespace, "reads-url") == first + 1, what="one rollout of the reader")
    wait_until_acted(cluster, namespace, "shop", "db")  # a second rollout would show by now
    assert generation(cluster, namespace, "reads-url") == first + 1
    rotated_hash = template_hash(cluster, namespace, "reads-url")
    assert rotated_hash is not None

    # A port change rolls it once more; later reconciles roll nothing.
    set_port(cluster, namespace, "db", 6432)
    wait_for(lambda: generation(cluster, namespace, "reads-url") == first + 2, what="one rollout on the port change")
    wait_until_acted(cluster, namespace, "shop", "db")
    assert generation(cluster, namespace, "reads-url") == first + 2
    assert generation(cluster, namespace, "reads-configmap") == before_configmap_reader

    # Nothing leaks: status, Events, the operator's debug log, every ConfigMap of the namespace.
    changed = [e["message"] for e in events(cluster, namespace, "ValueChanged")]
    assert any("DATABASE_URL: changed (in the Secret)" in m for m in changed), changed
    everywhere = [
        json.dumps(sl(cluster, namespace, "shop")),
        json.dumps(events(cluster, namespace)),
        json.dumps(cluster.get("configmaps", "-n", namespace)),
        json.dumps(cluster.get("deployments", "-n", namespace)),
        secrets_operator.log(),
        metrics(secrets_operator),
    ]
    for secret in (PASSWORD, ROTATED):
        for form in {secret, escape_userinfo(secret), base64.b64encode(secret.encode()).decode()}:
            assert not any(form in text for text in everywhere), "a password shows outside the Secret"

    # A restart finds every value as it left it: nothing written, nothing rolled.
    written_version = cluster.get("secret", "shop-secrets", "-n", namespace)["metadata"]["resourceVersion"]
    stopping = time.monotonic()
    secrets_operator.stop()
    assert time.monotonic() - stopping < 10, "the Secret watch held the operator's exit"
    again = start_operator_process(kubeconfig_env, secrets_operator.log_path, verbose=True, SERVICELINK_SECRETS="true")
    try:
        wait_until_acted(cluster, namespace, "shop", "db")  # a reconcile of the new process
        assert generation(cluster, namespace, "reads-url") == first + 2
        assert cluster.get("secret", "shop-secrets", "-n", namespace)["metadata"]["resourceVersion"] == written_version
    finally:
        again.stop()


def test_a_secret_not_shared_is_reported_and_nothing_is_written(
    cluster: Cluster, namespace: str, secrets_operator: OperatorProcess
) -> None:
    cluster.apply(
        [
            service("db", namespace, 5432),
            credentials("pg", namespace, PASSWORD, readable_by=None),
            servicelink(
                "shop",
                namespace,
                "shop-config",
                {**DB_URL, "credentials": {"secretName": "pg"}},
                secretName="shop-secrets",
            ),
        ]
    )
    found = wait_condition(cluster, namespace, "shop", "Resolved", "False", "SecretNotShared")
    assert f"kubectl label secret pg -n {namespace} servicelink.dev/shared=true" in found["message"]
    assert f"kubectl annotate secret pg -n {namespace} servicelink.dev/readable-by=shop" in found["message"]
    assert cluster.get("secret", "shop-secrets", "-n", namespace) is None  # nothing to write: not even created

    # Shared once its owner gives consent: the watch sees it, the value is written.
    cluster.apply(credentials("pg", namespace, PASSWORD))
    wait_for(lambda: password_written(cluster, namespace) == PASSWORD, what="the value in the Secret")
    assert condition(sl(cluster, namespace, "shop"), "Resolved")["status"] == "True"


def test_a_user_limited_to_servicelinks_can_neither_read_a_secret_nor_put_it_in_a_configmap(
    cluster: Cluster, namespace: str, secrets_operator: OperatorProcess
) -> None:
    mallory = "mallory@example.com"
    cluster.apply(
        [
            service("db", namespace, 5432),
            credentials("pg", namespace, PASSWORD),  # shared with the ServiceLink shop alone
            *servicelinks_only(
                namespace,
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": mallory},
                verbs=("get", "list", "create", "update", "patch"),
            ),
        ]
    )

    def as_mallory(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl(*args, f"--as={mallory}", input=input, check=False)

    assert as_mallory("auth", "can-i", "get", "secrets", "-n", namespace).stdout.strip() == "no"

    # Another ServiceLink's Secret: not shared with this one, so not read.
    steal = servicelink("steal", namespace, "steal-config", {**DB_URL, "credentials": {"secretName": "pg"}})
    steal["spec"]["secretName"] = "steal-secrets"
    assert as_mallory("apply", "-f", "-", input=json.dumps(steal)).returncode == 0
    refused = wait_condition(cluster, namespace, "steal", "Resolved", "False", "SecretNotShared")
    assert "servicelink.dev/readable-by=steal" in refused["message"]
    assert cluster.get("secret", "steal-secrets", "-n", namespace) is None

    # Secret data into a ConfigMap she may read: refused by the API server, before the operator sees it.
    for spec in (
        {"links": [{**DB_URL, "credentials": {"secretName": "pg"}}]},  # no spec.secretName
        {"links": [{**DB_URL, "template": "{scheme}://{username}:{password}@{host}"}]},  # no credentials
    ):
        body = servicelink("leak", namespace, "leak-config")
        body["spec"].update(spec)
        done = as_mallory("apply", "-f", "-", input=json.dumps(body))
        assert done.returncode != 0
        assert "spec" in done.stderr
    assert cluster.get("servicelink", "leak", "-n", namespace) is None

    everywhere = [
        json.dumps(cluster.get("servicelinks", "-n", namespace)),
        json.dumps(events(cluster, namespace)),
        json.dumps(cluster.get("configmaps", "-n", namespace)),
        secrets_operator.log(),
    ]
    assert not any(PASSWORD in text or escape_userinfo(PASSWORD) in text for text in everywhere)


def test_a_shared_secret_gets_our_key_and_loses_only_it_when_the_servicelink_goes(
    cluster: Cluster, namespace: str, secrets_operator: OperatorProcess
) -> None:
    theirs = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "shop-secrets",
            "namespace": namespace,
            "annotations": {"servicelink.dev/writable-by": "shop"},
        },
        "stringData": {"API_TOKEN": "t0ken"},
    }
    cluster.apply([service("db", namespace, 5432), credentials("pg", namespace, PASSWORD), theirs])
    cluster.apply(
        servicelink("shop", namespace, "shop-config", {**DB_URL, "credentials": {"secretName": "pg"}}, **TO_SECRET)
    )
    wait_for(lambda: password_written(cluster, namespace) == PASSWORD, what="our key in their Secret")
    assert (secret_data(cluster, namespace, "shop-secrets") or {})["API_TOKEN"] == "t0ken"
    assert not cluster.get("secret", "shop-secrets", "-n", namespace)["metadata"].get("ownerReferences")

    cluster.kubectl("delete", "servicelink", "shop", "-n", namespace, "--wait=true", "--timeout=60s")
    assert secret_data(cluster, namespace, "shop-secrets") == {"API_TOKEN": "t0ken"}
