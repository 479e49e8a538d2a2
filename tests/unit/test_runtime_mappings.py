"""How soon a WorkloadMapping whose kind is not followed yet is checked again by the mappings' queue, and that
none is read when they are off."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runtimes import bare_runtime

from servicelink.runtime import MAPPING_RECHECK_FIRST, MAPPING_RECHECK_MAX, recheck_delay
from servicelink.settings import Settings


def test_a_mapping_not_followed_yet_is_checked_after_two_seconds_then_twice_as_late_up_to_a_minute() -> None:
    assert recheck_delay(None) == MAPPING_RECHECK_FIRST == 2.0
    assert [recheck_delay(d) for d in (2.0, 4.0, 32.0, 60.0)] == [4.0, 8.0, 60.0, 60.0]
    assert MAPPING_RECHECK_MAX == 60.0


def test_with_workload_mappings_off_relist_reads_no_workload_mapping() -> None:
    """--workload-mappings=false: the operator reads nothing cluster-scoped, the chart's rbac.namespaced grants none."""

    class OnlyNamespaced:
        def __init__(self) -> None:
            self.listed: list[tuple[str, str | None]] = []

        def list_mappings(self) -> list[dict[str, Any]]:
            raise AssertionError("listed the WorkloadMappings")

        def list_objects(self, *, kind: str, namespace: str | None) -> list[dict[str, Any]]:
            self.listed.append((kind, namespace))
            return []

    kube = OnlyNamespaced()
    settings = Settings(namespaces=("gallery", "shop"), workload_mappings=False)
    with ThreadPoolExecutor(2) as executor:
        runtime = bare_runtime(settings, kube=kube, executor=executor)
        assert asyncio.run(runtime.relist()) == []
    assert sorted(kube.listed) == [("ServiceLink", "gallery"), ("ServiceLink", "shop")]
