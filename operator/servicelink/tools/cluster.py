"""The CLI's reads of a live cluster, and ``leave``'s writes, with the credentials of the person running it (does I/O).

Apart from ``kube.py`` on purpose: ``kube.RBAC_RULES`` and ``manifests/``
grant the operator's ServiceAccount exactly ``kube.py``'s calls, and the CLI's
extra reads (ConfigMaps and Pods, for ``doctor`` and ``adopt``) and writes (for ``leave``) are no business
of the operator's. The kinds the operator watches are read through ``kube.Kube``; WorkloadMappings
through the client's ``CustomObjectsApi``, as the user reads them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, Literal

import kubernetes

from servicelink import kube
from servicelink.model import (
    CORE_WORKLOAD_KINDS,
    GROUP,
    LISTED_KINDS,
    MAPPING_KIND,
    PLURAL,
    VERSION,
    WORKLOAD_KINDS,
    ListedKind,
    WorkloadResource,
)
from servicelink.tools.leave import Release, WrittenKind
from servicelink.tools.manifests import InputError

ReadKind = ListedKind | Literal["ConfigMap", "Pod"]
_TIMEOUT = (5.0, 60.0)
_MERGE_PATCH = "application/merge-patch+json"


class Cluster:
    """Lists objects of one cluster as plain dicts, each with its ``kind`` set."""

    def __init__(self, *, kubeconfig: str | None, context: str | None) -> None:
        """Load the kubeconfig; raise ``InputError`` with one line when there is none or no such context."""
        try:
            client = kube.load_client(kubeconfig=kubeconfig, context=context)
        except kube.ConfigError as error:
            where = kubeconfig or "$KUBECONFIG or ~/.kube/config"
            raise InputError(f"no usable kubeconfig ({where}): {error}") from None
        self._kube = kube.Kube(client)
        self._core = kubernetes.client.CoreV1Api(client)
        self._custom = kubernetes.client.CustomObjectsApi(client)
        self.default_namespace = kube.context_namespace(kubeconfig=kubeconfig, context=context)

    def _list_core(self, kind: ReadKind, namespace: str | None) -> list[dict[str, Any]]:
        # Called by name, not built with getattr, so grep and mypy see the client calls the CLI makes.
        # With _preload_content=False each returns the raw response, not the model its stub names.
        core, preload = self._core, False
        response: Any
        if namespace is None:
            if kind == "ConfigMap":
                response = core.list_config_map_for_all_namespaces(_preload_content=preload, _request_timeout=_TIMEOUT)
            else:
                response = core.list_pod_for_all_namespaces(_preload_content=preload, _request_timeout=_TIMEOUT)
        elif kind == "ConfigMap":
            response = core.list_namespaced_config_map(namespace, _preload_content=preload, _request_timeout=_TIMEOUT)
        else:
            response = core.list_namespaced_pod(namespace, _preload_content=preload, _request_timeout=_TIMEOUT)
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items

    def read(self, kind: ReadKind, namespace: str | None) -> list[dict[str, Any]]:
        """Every object of ``kind`` in ``namespace`` (None: all namespaces).

        Without the ServiceLink CRD, no ServiceLinks (and a note on stderr); without Argo Rollouts' CRD,
        no Rollouts (silently: most clusters have none);
        raises ``InputError`` with one line when the API server refuses or cannot be reached.
        """
        try:
            if kind in LISTED_KINDS:
                items = self._kube.list_objects(kind=kind, namespace=namespace)
            else:
                items = self._list_core(kind, namespace)
        except kube.ApiError as error:
            if kind == "ServiceLink" and error.status == 404:
                print("note: the ServiceLink CRD is not installed; no ServiceLinks read", file=sys.stderr)
                return []
            if error.status == 404 and kind in WORKLOAD_KINDS and kind not in CORE_WORKLOAD_KINDS:
                return []
            where = f"namespace {namespace}" if namespace else "all namespaces"
            raise InputError(f"cannot list {kind}s in {where}: HTTP {error.status} {error.reason}") from None
        except kube.TransportError as error:
            raise InputError(f"cannot reach the API server: {error}") from None
        return [{**item, "kind": kind} for item in items]

    def read_all(self, kinds: Iterable[ReadKind], namespace: str | None) -> list[dict[str, Any]]:
        """Every object of each of ``kinds``."""
        return [item for kind in kinds for item in self.read(kind, namespace)]

    def read_mappings(self) -> list[dict[str, Any]]:
        """Every WorkloadMapping (cluster-scoped), each with its ``kind`` set.

        None without their CRD (an install older than them), nor when listing them is forbidden (a note on
        stderr: only the built-in kinds are read); raises ``InputError`` with one line on any other failure.
        """
        try:
            items = self._kube.list_mappings()
        except kube.ApiError as error:
            if error.status == 404:
                return []
            if error.status == 403:
                print("note: listing WorkloadMappings is forbidden; no mapped kind read", file=sys.stderr)
                return []
            raise InputError(f"cannot list WorkloadMappings: HTTP {error.status} {error.reason}") from None
        except kube.TransportError as error:
            raise InputError(f"cannot reach the API server: {error}") from None
        return [{**item, "kind": MAPPING_KIND} for item in items]

    def read_mapped(self, resource: WorkloadResource, namespace: str | None) -> list[dict[str, Any]]:
        """Every object of the mapped kind ``resource`` in ``namespace`` (None: all), each with ``kind`` set to
        its name ``Kind.group``.

        None when the API server does not serve the kind or listing it is forbidden (a note on stderr names the
        mapping and why); raises ``InputError`` with one line when the API server cannot be reached.
        """
        mapping = f"WorkloadMapping {resource.plural}.{resource.group}"
        try:
            items = self._kube.list_workloads(resource=resource, namespace=namespace)
        except kube.ApiError as error:
            if error.status == 404:
                what = f"{resource.plural} in {resource.group}/{resource.version}"
                print(f"note: {mapping}: the API server serves no {what}; none read", file=sys.stderr)
                return []
            if error.status == 403:
                print(f"note: {mapping}: listing {resource.kind} is forbidden; none read", file=sys.stderr)
                return []
            where = f"namespace {namespace}" if namespace else "all namespaces"
            raise InputError(f"cannot list {resource.kind} in {where}: HTTP {error.status} {error.reason}") from None
        except kube.TransportError as error:
            raise InputError(f"cannot reach the API server: {error}") from None
        return [{**item, "kind": resource.kind} for item in items]

    def get_written(self, kind: WrittenKind, *, namespace: str, name: str) -> dict[str, Any] | None:
        """The ConfigMap or Secret a ServiceLink writes, with ``kind`` set; None when it does not exist (404).

        Raises ``InputError`` with one line when the API server refuses or cannot be reached.
        """
        try:
            if kind == "ConfigMap":
                body = self._kube.get_configmap(namespace=namespace, name=name)
            else:
                body = self._kube.get_secret(namespace=namespace, name=name)
        except kube.ApiError as error:
            raise InputError(f"cannot read {kind} {namespace}/{name}: HTTP {error.status} {error.reason}") from None
        except kube.TransportError as error:
            raise InputError(f"cannot reach the API server: {error}") from None
        return None if body is None else {**body, "kind": kind}

    def _patch_core(
        self, kind: str, *, namespace: str, name: str, body: dict[str, Any], field_manager: str, dry_run: str | None
    ) -> None:
        """One PATCH of a ConfigMap or Secret; the answer is not read (a Secret's holds its values)."""
        # With _preload_content=False each returns the raw response, not the model its stub names.
        core = self._core
        patch = core.patch_namespaced_config_map if kind == "ConfigMap" else core.patch_namespaced_secret
        response: Any = patch(
            name,
            namespace,
            body,
            field_manager=field_manager,
            dry_run=dry_run,
            _content_type=_MERGE_PATCH,
            _preload_content=False,
            _request_timeout=_TIMEOUT,
        )
        response.release_conn()

    def leave(self, *, release: Release, manager: str, dry_run: bool) -> None:
        """Make ``release``'s change in one merge patch as field manager ``manager``, on the version read only
        (a 409 if it changed since). With ``dry_run`` the API server checks it and persists nothing.

        Raises ``InputError`` with one line on a failure.
        """
        try:
            self._patch_core(
                release.kind,
                namespace=release.namespace,
                name=release.name,
                body=release.patch(),
                field_manager=manager,
                dry_run="All" if dry_run else None,
            )
        except kube.ApiError as error:
            where = f"{release.kind} {release.namespace}/{release.name}"
            raise InputError(f"cannot change {where}: HTTP {error.status} {error.reason}") from None
        except kube.TransportError as error:
            raise InputError(f"cannot reach the API server: {error}") from None

    def set_finalizers(
        self, *, namespace: str, name: str, finalizers: list[str], resource_version: str, dry_run: bool
    ) -> None:
        """Set a ServiceLink's ``metadata.finalizers`` on the version read (a 409 if it changed since).

        A 404 (deleted meanwhile) is ignored; raises ``InputError`` with one line on any other failure.
        """
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        response: Any
        try:
            response = self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type=_MERGE_PATCH,
                _preload_content=False,
                _request_timeout=_TIMEOUT,
                dry_run="All" if dry_run else None,
            )
            response.release_conn()
        except kube.ApiError as error:
            if error.status != 404:
                raise InputError(
                    f"cannot change ServiceLink {namespace}/{name}: HTTP {error.status} {error.reason}"
                ) from None
        except kube.TransportError as error:
            raise InputError(f"cannot reach the API server: {error}") from None
