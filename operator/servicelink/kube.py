"""The only module that talks to the Kubernetes API through the ``kubernetes`` client (does I/O).

Every call returns plain dicts as the API serves them, or nothing: no call
builds the client's model objects, whose deserialisation costs more CPU than
the request itself. ``RBAC_RULES`` lists
exactly the verbs these calls need; ``manifests/`` grants those and a test keeps
the two in step.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from servicelink.model import FIELD_MANAGER, GROUP, KIND, PLURAL, VERSION, ListedKind, WorkloadKind

# Re-exported so callers handle API errors without importing the client themselves.
ApiError = ApiException

# (apiGroup, resource, verbs): what this module calls, plus what kopf's watches and
# resource discovery need. manifests/clusterrole.yaml grants exactly these.
RBAC_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (GROUP, "servicelinks", ("list", "watch", "patch")),  # watch; patch: the finalizer
    (GROUP, "servicelinks/status", ("patch",)),
    ("", "services", ("list", "watch")),
    ("discovery.k8s.io", "endpointslices", ("list", "watch")),
    ("", "configmaps", ("get", "create", "patch")),  # server-side apply; creating through it needs create
    ("apps", "deployments", ("list", "watch", "patch")),
    ("apps", "statefulsets", ("list", "watch", "patch")),
    ("apps", "daemonsets", ("list", "watch", "patch")),
    ("", "events", ("create",)),
    ("", "namespaces", ("list", "watch")),  # kopf: namespace patterns in --namespace
    ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch")),  # kopf: CRDs installed later
    ("coordination.k8s.io", "leases", ("get", "create", "update")),  # --leader-elect
)

_WORKLOAD_PATCHERS = {
    "Deployment": "patch_namespaced_deployment",
    "StatefulSet": "patch_namespaced_stateful_set",
    "DaemonSet": "patch_namespaced_daemon_set",
}
# (connect, read) seconds for every call: a connection that goes silent must fail and be
# retried, not hold a worker forever. Lists of thousands of objects read within this too.
_TIMEOUT = (5.0, 15.0)
_LIST_TIMEOUT = (5.0, 120.0)
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# kind -> (API attribute, method stem): list_<stem>_for_all_namespaces and list_namespaced_<stem>.
_LISTERS = {
    "Service": ("_core", "service"),
    "EndpointSlice": ("_discovery", "endpoint_slice"),
    "Deployment": ("_apps", "deployment"),
    "StatefulSet": ("_apps", "stateful_set"),
    "DaemonSet": ("_apps", "daemon_set"),
}


class Conflict(Exception):
    """A write lost a race (HTTP 409): the caller re-reads and tries again."""


# The API server could not be reached at all: refused, reset, timed out.
TransportError = (urllib3.exceptions.HTTPError, OSError)


def is_transient(error: ApiException) -> bool:
    """Return whether a failed call is worth retrying (conflicts, throttling, server errors)."""
    return error.status in (409, 429) or error.status is None or error.status >= 500


ConfigError = kubernetes.config.ConfigException


def load_client(*, kubeconfig: str | None = None, context: str | None = None) -> kubernetes.client.ApiClient:
    """Return an API client from the in-cluster service account, else from ``KUBECONFIG``.

    A ``kubeconfig`` or ``context`` given skips the service account. Raises
    ``ConfigError`` when no configuration, or no such context, is found.
    """
    configuration = kubernetes.client.Configuration()
    in_cluster = False
    if not (kubeconfig or context):
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            in_cluster = True
        except ConfigError:
            pass
    if not in_cluster:
        # Read KUBECONFIG now: the client reads it once, at import, which may predate it.
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig or os.environ.get("KUBECONFIG"), context=context, client_configuration=configuration
        )
    # Reconciles run in a thread pool; one connection per worker avoids
    # urllib3's "pool is full" churn under a burst.
    configuration.connection_pool_maxsize = 32
    return kubernetes.client.ApiClient(configuration)


def context_namespace(*, kubeconfig: str | None = None, context: str | None = None) -> str:
    """Return the namespace of the kubeconfig's context (the current one unless named), else ``default``."""
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig or os.environ.get("KUBECONFIG")
        )
    except ConfigError:
        return "default"  # in a pod: the caller names the namespace
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def _read(
    call: Callable[..., Any], *args: Any, timeout: tuple[float, float] = _TIMEOUT, **kwargs: Any
) -> dict[str, Any]:
    """Make one call and return the object it answers with, as the API serves it."""
    response = call(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
    data: dict[str, Any] = json.loads(response.data)
    return data


def _write(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Make one call whose answer nobody reads.

    The body is still drained and the connection handed back to the pool:
    an unread raw response keeps it, and the next call opens a new one.
    """
    response = call(*args, _preload_content=False, _request_timeout=_TIMEOUT, **kwargs)
    response.drain_conn()
    response.release_conn()


def _read_or_none(call: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
    """``_read``, or None when the object does not exist (404)."""
    try:
        return _read(call, *args)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def instance_name() -> str:
    """Name this replica: ``$POD_NAME`` in a pod, else the hostname. Needs no passwd entry."""
    return os.environ.get("POD_NAME") or socket.gethostname()


class Kube:
    """Typed, synchronous calls on one API client; safe to use from several threads."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._apps = kubernetes.client.AppsV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._discovery = kubernetes.client.DiscoveryV1Api(api_client)
        self._version = kubernetes.client.VersionApi(api_client)
        self._coordination = kubernetes.client.CoordinationV1Api(api_client)
        self._instance = instance_name()

    def get_lease(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the Lease, or None when it does not exist (404)."""
        return _read_or_none(self._coordination.read_namespaced_lease, name, namespace)

    def write_lease(self, *, body: Mapping[str, Any], create: bool) -> None:
        """Create the Lease, or replace it guarded by its resourceVersion; a lost race raises ``Conflict``."""
        metadata = body["metadata"]
        try:
            # The client serialises plain dicts as they are; no model object needed.
            if create:
                _write(self._coordination.create_namespaced_lease, metadata["namespace"], dict(body))
            else:
                _write(self._coordination.replace_namespaced_lease, metadata["name"], metadata["namespace"], dict(body))
        except ApiException as error:
            if error.status == 409:
                raise Conflict(error.body) from error
            raise

    def check_api(self) -> None:
        """Ask the API server for its version; raise when it does not answer within 3 seconds."""
        self._version.get_code(_request_timeout=3)

    def list_objects(self, *, kind: ListedKind, namespace: str | None) -> list[dict[str, Any]]:
        """Return every object of ``kind`` in ``namespace`` (None: all namespaces), paging 500 at a time."""
        if kind == "ServiceLink":
            if namespace is None:
                call = functools.partial(self._custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
            else:
                call = functools.partial(self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL)
        else:
            api, stem = _LISTERS[kind]
            target = getattr(self, api)
            if namespace is None:
                call = getattr(target, f"list_{stem}_for_all_namespaces")
            else:
                call = functools.partial(getattr(target, f"list_namespaced_{stem}"), namespace)
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = _read(call, limit=500, _continue=token, timeout=_LIST_TIMEOUT)
            for item in page.get("items") or ():
                # What the cache never reads, and a good part of each object's size.
                metadata = item.get("metadata") or {}
                metadata.pop("managedFields", None)
                (metadata.get("annotations") or {}).pop(_LAST_APPLIED, None)
                items.append(item)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def get_configmap(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the ConfigMap, or None when it does not exist (404)."""
        return _read_or_none(self._core.read_namespaced_config_map, name, namespace)

    def apply_configmap(self, *, body: Mapping[str, Any], force: bool) -> dict[str, Any]:
        """Server-side apply ``body`` as field manager ``servicelink``; return the ConfigMap as stored.

        ``force`` takes over keys another manager changed since we wrote them.
        Raises ``Conflict`` on a 409 (a foreign owner, or a lost race).
        """
        metadata = body["metadata"]
        try:
            return _read(
                self._core.patch_namespaced_config_map,
                metadata["name"],
                metadata["namespace"],
                dict(body),
                field_manager=FIELD_MANAGER,
                force=force,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as error:
            if error.status == 409:
                raise Conflict(error.body) from error
            raise

    def patch_servicelink_status(self, *, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Replace the status of a ServiceLink by merge patch; a 404 (deleted meanwhile) is ignored."""
        try:
            _write(
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": dict(status)},
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            if error.status != 404:
                raise

    def set_servicelink_finalizers(
        self, *, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> None:
        """Set ``metadata.finalizers``, guarded by ``resource_version``.

        A 404 (already gone) is ignored; a 409 raises ``Conflict``.
        """
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        try:
            _write(
                self._custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            if error.status == 409:
                raise Conflict(error.body) from error
            if error.status != 404:
                raise

    def set_workload_config_hash(
        self, *, kind: WorkloadKind, namespace: str, name: str, annotation: str, value: str, resource_version: str
    ) -> bool:
        """Set one pod-template annotation, guarded by ``resource_version`` if given; its controller rolls the pods.

        Returns False when the workload no longer exists (404); a 409 raises ``Conflict``.
        """
        patch: dict[str, Any] = {"spec": {"template": {"metadata": {"annotations": {annotation: value}}}}}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        try:
            _write(
                getattr(self._apps, _WORKLOAD_PATCHERS[kind]),
                name,
                namespace,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            if error.status == 409:
                raise Conflict(error.body) from error
            if error.status == 404:
                return False
            raise
        return True

    def create_event(
        self,
        *,
        involved: Mapping[str, str],
        reason: str,
        message: str,
        warning: bool = False,
    ) -> None:
        """Record a core/v1 Event on ``involved`` (apiVersion, kind, namespace, name, uid).

        Events are best effort: a refused Event is not worth failing a reconcile for.
        """
        now = _now()
        body = {
            "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
            "involvedObject": dict(involved),
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": f"{GROUP}/operator",
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            # The client serialises plain dicts as they are; no model object needed.
            _write(self._core.create_namespaced_event, involved["namespace"], body)
        except ApiException as error:
            if error.status not in (403, 404, 409, 422):
                raise


def servicelink_reference(*, namespace: str, name: str, uid: str) -> dict[str, str]:
    """Return the ``involvedObject`` of a ServiceLink for an Event."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "namespace": namespace, "name": name, "uid": uid}
