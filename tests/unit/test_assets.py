"""Which helm the tests take: the version rule for a helm found on PATH, and the flags of our own build."""

from __future__ import annotations

import pytest

from servicelink.testing.assets import HELM_VERSION, _helm_ldflags, helm_version_fits


@pytest.mark.parametrize("version", ["v3.18.0", "v3.22.0", "v3.22.1", "3.30.2", "v3.19.0-rc.1", "v3.20.3+g1a2b3c4"])
def test_a_helm_3_from_3_18_on_fits(version: str) -> None:
    assert helm_version_fits(version)


@pytest.mark.parametrize("version", ["v3.17.3", "v2.17.0", "v4.0.0", "v4.1.0", "", "v3", "unknown"])
def test_older_helm_3_helm_2_helm_4_and_garbage_do_not(version: str) -> None:
    assert not helm_version_fits(version)


def test_the_version_we_build_fits() -> None:
    assert helm_version_fits(HELM_VERSION)


def test_our_build_reports_its_version_and_its_client_gos_kubernetes() -> None:
    flags = _helm_ldflags("v0.37.0")
    assert f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}" in flags
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37" in flags
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1" in flags
