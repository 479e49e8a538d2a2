"""The only module that talks to the Kubernetes API through the ``kubernetes`` client (does I/O).

Every call returns plain dicts as the API serves them, or nothing: no call
builds the client's model objects, whose deserialisation costs more CPU than
the request itself. ``RBAC_RULES`` lists
exactly the verbs these calls need; ``manifests/`` grants those and a test keeps
the two in step.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from servicelink.messages import EVENT_MESSAGE_LIMIT, truncate
from servicelink.model import (
    FIELD_MANAGER,
    GROUP,
    KIND,
    MAPPING_KIND,
    MAPPING_PLURAL,
    PLURAL,
    REPORTED_RESOURCES,
    SHARED_LABEL,
    VERSION,
    WORKLOAD_KINDS,
    WORKLOAD_RESOURCES,
    ListedKind,
    WorkloadResource,
)
from servicelink.rollout import render_time
from servicelink.views import slim

# Re-exported so callers handle API errors without importing the client themselves.
ApiError = ApiException

# (apiGroup, resource, verbs): what this module calls, plus what kopf's watches and
# resource discovery need. manifests/clusterrole.yaml grants exactly these.
RBAC_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (GROUP, "servicelinks", ("list", "watch", "patch")),  # watch; patch: the finalizer
    (GROUP, "servicelinks/status", ("patch",)),
    (GROUP, MAPPING_PLURAL, ("list", "watch")),
    (GROUP, f"{MAPPING_PLURAL}/status", ("patch",)),
    # Whether the operator may list, watch and patch a mapped kind, asked before following it. Every
    # authenticated user may ask it (system:basic-user); listed here so the ClusterRole says all it uses.
    ("authorization.k8s.io", "selfsubjectaccessreviews", ("create",)),
    ("", "services", ("list", "watch")),
    ("discovery.k8s.io", "endpointslices", ("list", "watch")),
    ("", "configmaps", ("get", "create", "patch")),  # server-side apply; creating through it needs create
    *((r.group, r.plural, ("list", "watch", "patch")) for r in WORKLOAD_RESOURCES.values() if not r.optional),
    *((r.group, r.plural, ("list", "watch")) for r in REPORTED_RESOURCES.values()),  # Jobs: reported, never patched
    ("", "events", ("create", "patch")),  # patch: a repeated Event's count
    ("", "namespaces", ("list", "watch")),  # --namespace-selector; kopf: namespace patterns in --namespace
    ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch")),  # kopf: CRDs installed later
    ("coordination.k8s.io", "leases", ("get", "create", "update")),  # --leader-elect
)
# The same calls on the optional kinds (Argo Rollouts): granted by the chart only when its value enables them
# (argoRollouts.enabled), never in manifests/, so the default install keeps its least privilege.
OPTIONAL_RBAC_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = tuple(
    (r.group, r.plural, ("list", "watch", "patch")) for r in WORKLOAD_RESOURCES.values() if r.optional
)

# Reading the Secrets shared with servicelink (their label is the watch's selector, so no other Secret is sent):
# granted by the chart only when its value enables it (secrets.enabled), never in manifests/.
# get, create and patch: the Secret spec.secretName names, written by server-side apply as ConfigMaps are.
SECRET_RBAC_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "secrets", ("list", "watch", "get", "create", "patch")),
)
SHARED_SELECTOR = f"{SHARED_LABEL}=true"
# A watch ends after this long (the API server closes it), and is opened again from where it stopped.
WATCH_SECONDS = 240

# (connect, read) seconds for every call: a connection that goes silent must fail and be
# retried, not hold a worker forever. Lists of thousands of objects read within this too.
_TIMEOUT = (5.0, 15.0)
_LIST_TIMEOUT = (5.0, 120.0)
# Paths, not the client's generated API classes: those (CoreV1Api and the rest, every
# method a pydantic validate_call naming the models it serves) cost 27 MB of the
# operator's memory on import, measured beside Reloader (docs/explanation/performance.md).
# kind -> (API prefix, resource): lists are <prefix>/<resource> or <prefix>/namespaces/<ns>/<resource>.
_LISTERS: dict[ListedKind, tuple[str, str]] = {
    "ServiceLink": (f"/apis/{GROUP}/{VERSION}", PLURAL),
    "Service": ("/api/v1", "services"),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1", "endpointslices"),
    **{
        k: (f"/apis/{WORKLOAD_RESOURCES[k].group}/{WORKLOAD_RESOURCES[k].version}", WORKLOAD_RESOURCES[k].plural)
        for k in WORKLOAD_KINDS
    },
    **{kind: (f"/apis/{r.group}/{r.version}", r.plural) for kind, r in REPORTED_RESOURCES.items()},
}
_JSON = "application/json"
_MERGE_PATCH = "application/merge-patch+json"
# A repeated Event (same object, reason, type, message, source) within this many seconds of the
# last one raises that Event's count, as client-go's EventCorrelator does, rather than making a
# new object: a Service that flaps leaves one Event per distinct message, with its count. An hour
# is the API server's default --event-ttl: an older Event is most likely gone already.
EVENT_REPEAT_WINDOW = 3600.0
# The Events remembered for that, least recently seen dropped first (client-go keeps 4096 too).
EVENT_CACHE_SIZE = 4096
_INVOLVED_FIELDS = ("apiVersion", "kind", "namespace", "name", "uid")


@dataclass(frozen=True)
class Source:
    """One kind as it is listed and watched: ``<prefix>[/namespaces/<namespace>]/<plural>``, by a label selector."""

    prefix: str  # /api/v1, or /apis/<group>/<version>
    plural: str
    namespace: str | None = None  # None: every namespace
    selector: str | None = None  # applied by the API server: nothing else is sent

    @property
    def path(self) -> str:
        """The path of its list and watch."""
        where = "" if self.namespace is None else f"/namespaces/{self.namespace}"
        return f"{self.prefix}{where}/{self.plural}"

    def __str__(self) -> str:
        """``plural[.group] [in namespace] [labelled selector]``, as logs name it."""
        group = self.prefix.split("/")[2] if self.prefix.startswith("/apis/") else ""
        where = f" in {self.namespace}" if self.namespace else ""
        labelled = f" labelled {self.selector}" if self.selector else ""
        return f"{self.plural}{'.' + group if group else ''}{where}{labelled}"


def listed_source(kind: ListedKind, namespace: str | None) -> Source:
    """Where the objects of ``kind`` in ``namespace`` (None: all) are listed and watched."""
    return Source(*_LISTERS[kind], namespace)


def workload_source(resource: WorkloadResource, namespace: str | None) -> Source:
    """Where the workloads of the kind ``resource`` in ``namespace`` (None: all) are listed and watched."""
    return Source(f"/apis/{resource.group}/{resource.version}", resource.plural, namespace)


NAMESPACES = Source("/api/v1", "namespaces")  # cluster-scoped: their labels, for --namespace-selector


def shared_secrets_source(namespace: str | None) -> Source:
    """Where the Secrets labelled servicelink.dev/shared=true in ``namespace`` (None: all) are listed and watched."""
    return Source("/api/v1", "secrets", namespace, SHARED_SELECTOR)


class Watch:
    """One open watch: iterate it for each change as (type, object) until the API server ends it.

    A BOOKMARK carries only the resourceVersion to go on from. When the API
    server no longer has the version watched from, ``ApiError`` with status 410
    is raised: list again. ``close``, from any thread, ends the iteration.
    """

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self._closed = False

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        buffered = b""
        try:
            for chunk in self._response.stream(65536):
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    found = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        raise ApiException(status=int(found.get("code") or 500), reason=str(found.get("reason")))
                    yield str(event.get("type")), slim(found)
        except TransportError:
            if not self._closed:
                raise
        finally:
            self._response.release_conn()

    def close(self) -> None:
        """End the watch: its socket is shut, so a read blocked on it returns."""
        self._closed = True
        with contextlib.suppress(Exception):  # already closed by the API server, or never opened
            self._response.shutdown()


class Conflict(Exception):
    """A write lost a race (HTTP 409): the caller re-reads and tries again."""


@contextlib.contextmanager
def _conflict_raised() -> Iterator[None]:
    """Turn an HTTP 409 from the calls inside into ``Conflict``; other errors pass as they are."""
    try:
        yield
    except ApiException as error:
        if error.status == 409:
            raise Conflict(error.body) from error
        raise


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


def _send(
    api: kubernetes.client.ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, Any] | None = None,
    body: Mapping[str, Any] | None = None,
    content_type: str = _JSON,
    timeout: tuple[float, float] | float = _TIMEOUT,
) -> Any:
    """Make one request with the client's authentication; return the raw urllib3 response.

    Raises ``ApiException`` on any status outside 2xx, as the generated API classes do.
    """
    headers = {"Accept": _JSON} | ({"Content-Type": content_type} if body is not None else {})
    request = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
        header_params=headers,
        body=dict(body) if body is not None else None,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request, _request_timeout=timeout)
    if not 200 <= response.status <= 299:
        response.read()  # type: ignore[no-untyped-call]  # the client is untyped; this fills response.data
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    return response.response


def _read(api: kubernetes.client.ApiClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """Make one request and return the object it answers with, as the API serves it."""
    data: dict[str, Any] = json.loads(_send(api, method, path, **kwargs).data)
    return data


def _write(api: kubernetes.client.ApiClient, method: str, path: str, **kwargs: Any) -> None:
    """Make one request whose answer nobody reads.

    The body is still drained and the connection handed back to the pool:
    an unread raw response keeps it, and the next call opens a new one.
    """
    response = _send(api, method, path, **kwargs)
    response.drain_conn()
    response.release_conn()


def _read_or_none(api: kubernetes.client.ApiClient, path: str) -> dict[str, Any] | None:
    """GET ``path``, or None when the object does not exist (404)."""
    try:
        return _read(api, "GET", path)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _server_side_apply(body: Mapping[str, Any], plural: str, *, force: bool) -> tuple[str, str, dict[str, Any]]:
    """The method, path and arguments of a server-side apply of ``body`` as field manager ``servicelink``."""
    metadata = body["metadata"]
    return (
        "PATCH",
        f"/api/v1/namespaces/{metadata['namespace']}/{plural}/{metadata['name']}",
        {
            "query": {"fieldManager": FIELD_MANAGER, "force": force},
            "body": body,
            "content_type": "application/apply-patch+yaml",
        },
    )


def utc_now() -> str:
    """Return the time now as the API's timestamps are written, to the second (``2026-11-26T14:00:00Z``)."""
    return render_time(datetime.datetime.now(datetime.UTC))


def instance_name() -> str:
    """Name this replica: ``$POD_NAME`` in a pod, else the hostname. Needs no passwd entry."""
    return os.environ.get("POD_NAME") or socket.gethostname()


@dataclass(frozen=True)
class _Recorded:
    """An Event this process wrote: its name, its count, and when it was last seen (monotonic seconds)."""

    name: str
    count: int
    seen: float


class _RecentEvents:
    """The Events recorded lately, by what makes two of them the same; bounded, least recently seen dropped."""

    def __init__(self, *, size: int = EVENT_CACHE_SIZE, window: float = EVENT_REPEAT_WINDOW) -> None:
        self._size = size
        self._window = window
        self._entries: OrderedDict[tuple[str, ...], _Recorded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...], *, now: float) -> _Recorded | None:
        """Return the Event recorded under ``key`` within the window, else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now - entry.seen > self._window:
                return None
            return entry

    def put(self, key: tuple[str, ...], entry: _Recorded) -> None:
        """Remember ``entry`` as the latest Event under ``key``."""
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


class Kube:
    """Typed, synchronous calls on one API client; safe to use from several threads."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._api = api_client
        self._instance = instance_name()
        self._events = _RecentEvents()

    def get_lease(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the Lease, or None when it does not exist (404)."""
        return _read_or_none(self._api, f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")

    def write_lease(self, *, body: Mapping[str, Any], create: bool) -> None:
        """Create the Lease, or replace it guarded by its resourceVersion; a lost race raises ``Conflict``."""
        metadata = body["metadata"]
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{metadata['namespace']}/leases"
        with _conflict_raised():
            if create:
                _write(self._api, "POST", leases, body=body)
            else:
                _write(self._api, "PUT", f"{leases}/{metadata['name']}", body=body)

    def check_api(self) -> None:
        """Ask the API server for its version; raise when it does not answer within 3 seconds."""
        _read(self._api, "GET", "/version/", timeout=3)

    def list_objects(self, *, kind: ListedKind, namespace: str | None) -> list[dict[str, Any]]:
        """Return every object of ``kind`` in ``namespace`` (None: all namespaces), paging 500 at a time."""
        return self.list_source(listed_source(kind, namespace))[0]

    def list_workloads(self, *, resource: WorkloadResource, namespace: str | None) -> list[dict[str, Any]]:
        """Return every workload of the kind ``resource`` in ``namespace`` (None: all), paging 500 at a time.

        A kind the API server does not serve (its CRD missing) raises ``ApiError`` with status 404.
        """
        return self.list_source(workload_source(resource, namespace))[0]

    def list_source(self, source: Source) -> tuple[list[dict[str, Any]], str]:
        """Return the objects of ``source``, paging 500 at a time, and the resourceVersion to watch from."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page, token, version = self.list_page(source, token)
            items.extend(page)
            if not token:
                return items, version

    def list_page(self, source: Source, token: str | None) -> tuple[list[dict[str, Any]], str | None, str]:
        """Return one page of up to 500 objects of ``source``, from the ``continue`` token (None: the first), the
        token of the next page (None after the last) and the list's resourceVersion. A token the API server
        has forgotten raises ``ApiError`` with status 410: list again from the first page."""
        query = {"limit": 500, "continue": token, "labelSelector": source.selector}
        page = _read(self._api, "GET", source.path, query=query, timeout=_LIST_TIMEOUT)
        metadata = page.get("metadata") or {}
        items = [slim(item) for item in page.get("items") or ()]
        return items, metadata.get("continue") or None, str(metadata.get("resourceVersion", ""))

    def watch_source(
        self, source: Source, *, resource_version: str, seconds: int = WATCH_SECONDS, inactivity: float = 70.0
    ) -> Watch:
        """Open a watch of ``source`` from ``resource_version``, for ``seconds``, with bookmarks; a read waits
        ``inactivity`` seconds at most (bookmarks come about every minute)."""
        query = {
            "watch": "true",
            "labelSelector": source.selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": seconds,
        }
        return Watch(_send(self._api, "GET", source.path, query=query, timeout=(_TIMEOUT[0], inactivity)))

    def list_mappings(self) -> list[dict[str, Any]]:
        """Return every WorkloadMapping (cluster-scoped), paging 500 at a time."""
        return self.list_source(Source(f"/apis/{GROUP}/{VERSION}", MAPPING_PLURAL))[0]

    def patch_mapping_status(self, *, name: str, status: Mapping[str, Any]) -> None:
        """Replace the status of a WorkloadMapping by merge patch; a 404 (deleted meanwhile) is ignored."""
        try:
            _write(
                self._api,
                "PATCH",
                f"/apis/{GROUP}/{VERSION}/{MAPPING_PLURAL}/{name}/status",
                body={"status": dict(status)},
                content_type=_MERGE_PATCH,
            )
        except ApiException as error:
            if error.status != 404:
                raise

    def served_kind(self, *, group: str, version: str, plural: str) -> str | None:
        """Return the kind the API server serves as ``plural`` in ``group``/``version``; None when it serves no
        such plural, or no such group and version (404)."""
        found = _read_or_none(self._api, f"/apis/{group}/{version}")
        for resource in (found or {}).get("resources") or ():
            if resource.get("name") == plural:
                return str(resource.get("kind") or "") or None
        return None

    def may(self, *, group: str, plural: str, verb: str) -> bool:
        """Ask the API server whether this client may ``verb`` ``plural`` of ``group`` in every namespace."""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"group": group, "resource": plural, "verb": verb}},
        }
        answer = _read(self._api, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review)
        return bool((answer.get("status") or {}).get("allowed"))

    def get_configmap(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the ConfigMap, or None when it does not exist (404)."""
        return _read_or_none(self._api, f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    def apply_configmap(self, *, body: Mapping[str, Any], force: bool) -> dict[str, Any]:
        """Server-side apply ``body`` as field manager ``servicelink``; return the ConfigMap as stored.

        ``force`` takes over keys another manager changed since we wrote them.
        Raises ``Conflict`` on a 409 (a foreign owner, or a lost race).
        """
        method, path, kwargs = _server_side_apply(body, "configmaps", force=force)
        with _conflict_raised():
            return _read(self._api, method, path, **kwargs)

    def get_secret(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the Secret a ServiceLink writes (its spec.secretName), or None when it does not exist (404)."""
        return _read_or_none(self._api, f"/api/v1/namespaces/{namespace}/secrets/{name}")

    def apply_secret(self, *, body: Mapping[str, Any], force: bool) -> None:
        """Server-side apply ``body`` to a Secret as field manager ``servicelink``, as ``apply_configmap`` does.

        Nothing of the answer is kept: it holds the values. Raises ``Conflict`` on a 409.
        """
        method, path, kwargs = _server_side_apply(body, "secrets", force=force)
        with _conflict_raised():
            _write(self._api, method, path, **kwargs)

    def patch_servicelink_status(self, *, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Replace the status of a ServiceLink by merge patch; a 404 (deleted meanwhile) is ignored."""
        try:
            _write(
                self._api,
                "PATCH",
                f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status",
                body={"status": dict(status)},
                content_type=_MERGE_PATCH,
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
            with _conflict_raised():
                _write(
                    self._api,
                    "PATCH",
                    f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}",
                    body=patch,
                    content_type=_MERGE_PATCH,
                )
        except ApiException as error:
            if error.status != 404:
                raise

    def set_workload_config_hash(
        self,
        *,
        resource: WorkloadResource,
        namespace: str,
        name: str,
        annotation: str,
        value: str,
        resource_version: str,
        stamp: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        in_place: bool = False,
        restart_at: str | None = None,
    ) -> bool:
        """Set one pod-template annotation, guarded by ``resource_version`` if given; its controller rolls the pods.

        ``stamp`` and ``labels``: annotations and labels set on the workload's own metadata in the same patch.
        ``in_place``: a workload restarted, not given a new template (an Argo Rollout, or the Deployment whose
        template Rollouts run): the annotation goes on its own metadata; ``restart_at`` also sets an Argo
        Rollout's ``spec.restartAt``, which makes its controller restart its pods, with no new revision.

        A CronJob's pod template is its jobTemplate's: its next Jobs run it. An Argo
        Rollout's is its inline ``spec.template``: a new template is what makes Argo
        Rollouts start a new revision and run its canary or blue-green steps.
        Returns False when the workload no longer exists (404); a 409 raises ``Conflict``.
        """
        patch: dict[str, Any] = {"metadata": {"annotations": {annotation: value}}}
        if restart_at is not None:
            patch["spec"] = {"restartAt": restart_at}
        if not in_place:
            for key in reversed(resource.template):
                patch = {key: patch}
        metadata = patch.setdefault("metadata", {})
        if stamp:
            metadata["annotations"] = {**metadata.get("annotations", {}), **stamp}
        if labels:
            metadata["labels"] = dict(labels)
        if resource_version:
            metadata["resourceVersion"] = resource_version
        if not metadata:
            del patch["metadata"]
        with _conflict_raised():
            return self._merge_patch_workload(resource, namespace=namespace, name=name, patch=patch)

    def restart_rollout(self, *, namespace: str, name: str, at: str) -> bool:
        """Set an Argo Rollout's ``spec.restartAt``: its controller restarts its pods, with no new revision.
        Returns False when it no longer exists."""
        patch = {"spec": {"restartAt": at}}
        return self._merge_patch_workload(WORKLOAD_RESOURCES["Rollout"], namespace=namespace, name=name, patch=patch)

    def _merge_patch_workload(
        self, resource: WorkloadResource, *, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> bool:
        """Merge-patch a workload as servicelink's field manager; False when it no longer exists (404)."""
        try:
            _write(
                self._api,
                "PATCH",
                f"/apis/{resource.group}/{resource.version}/namespaces/{namespace}/{resource.plural}/{name}",
                query={"fieldManager": FIELD_MANAGER},
                body=patch,
                content_type=_MERGE_PATCH,
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def record_event(
        self,
        *,
        involved: Mapping[str, str],
        reason: str,
        message: str,
        warning: bool = False,
    ) -> None:
        """Record a core/v1 Event on ``involved`` (apiVersion, kind, namespace, name, uid).

        The same Event again within ``EVENT_REPEAT_WINDOW`` patches the one recorded
        (count and lastTimestamp): one API call either way. If that Event is gone
        (404), a new one is created. Events are best effort: a refused Event is not
        worth failing a reconcile for.
        """
        # A cluster-scoped object's Events go to the default namespace, as a Node's do; kubectl describe finds them.
        namespace = involved.get("namespace") or "default"
        kind = "Warning" if warning else "Normal"
        message = truncate(message, EVENT_MESSAGE_LIMIT)
        key = (*(involved.get(f, "") for f in _INVOLVED_FIELDS), reason, kind, message)
        now, seen = utc_now(), time.monotonic()
        previous = self._events.get(key, now=seen)
        try:
            if previous is not None and self._count_event(namespace, previous.name, previous.count + 1, now):
                self._events.put(key, _Recorded(previous.name, previous.count + 1, seen))
                return
            # Named here, as client-go names them, so the name is known without reading the answer.
            name = f"{involved['name']}.{time.time_ns():x}"
            body = {
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": dict(involved),
                "reason": reason,
                "message": message,
                "type": kind,
                "source": {"component": FIELD_MANAGER},
                "reportingComponent": f"{GROUP}/operator",
                "reportingInstance": self._instance,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            _write(self._api, "POST", f"/api/v1/namespaces/{namespace}/events", body=body)
            self._events.put(key, _Recorded(name, 1, seen))
        except ApiException as error:
            if error.status not in (403, 404, 409, 422):
                raise

    def _count_event(self, namespace: str, name: str, count: int, now: str) -> bool:
        """Set a recorded Event's count and lastTimestamp.

        Returns False when it is gone (404), or when patching Events is not granted
        (403, RBAC from before Events were counted): the caller creates one instead.
        """
        try:
            _write(
                self._api,
                "PATCH",
                f"/api/v1/namespaces/{namespace}/events/{name}",
                body={"count": count, "lastTimestamp": now},
                content_type=_MERGE_PATCH,
            )
        except ApiException as error:
            if error.status in (403, 404):
                return False
            raise
        return True


def mapping_reference(*, name: str, uid: str) -> dict[str, str]:
    """Return the ``involvedObject`` of a WorkloadMapping (cluster-scoped: no namespace) for an Event."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": MAPPING_KIND, "name": name, "uid": uid}


def servicelink_reference(*, namespace: str, name: str, uid: str) -> dict[str, str]:
    """Return the ``involvedObject`` of a ServiceLink for an Event."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "namespace": namespace, "name": name, "uid": uid}
