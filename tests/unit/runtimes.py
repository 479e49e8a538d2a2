"""A Runtime for unit tests: real settings and cache, the kube and queue the test hands in, no reconciler."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from servicelink.cache import Cache
from servicelink.kube import Kube
from servicelink.reconcile import Reconciler
from servicelink.runtime import Runtime
from servicelink.settings import Settings
from servicelink.workqueue import WorkQueue


def bare_runtime(settings: Settings, *, kube: Any, executor: ThreadPoolExecutor, queue: Any = None) -> Runtime:
    """A Runtime over ``kube`` (a stand-in with the calls the test makes) and ``queue`` (None: none)."""
    return Runtime(
        settings=settings,
        queue=cast(WorkQueue, queue),
        cache=Cache(),
        reconciler=cast(Reconciler, None),
        kube=cast(Kube, kube),
        executor=executor,
    )
