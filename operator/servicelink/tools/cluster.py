"""The CLI's reads of a live cluster, with the credentials of the person running it (does I/O).

Apart from ``kube.py`` on purpose: ``kube.RBAC_RULES`` and ``manifests/``
grant the operator's ServiceAccount exactly ``kube.py``'s calls, and the CLI's
extra reads (ConfigMaps and Pods, for ``doctor`` and ``adopt``) are no business
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
    LISTED_KINDS,
    MAPPING_KIND,
    WORKLOAD_KINDS,
    ListedKind,
    WorkloadResource,
)
from servicelink.tools.manifests import InputError

ReadKind = ListedKind | Literal["ConfigMap", "Pod"]
_TIMEOUT = (5.0, 60.0)


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
