"""Every test here runs against a real API server: mark them so. The fixtures more than one file here uses."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from widgets import served_widgets

from servicelink.testing.fixtures import Cluster

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def widgets(cluster: Cluster, crd: Path) -> Iterator[None]:
    """The test kind Widget served (widgets.served_widgets); it and every WorkloadMapping deleted afterwards."""
    with served_widgets(cluster):
        yield
