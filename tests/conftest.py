"""Shared fixtures: the real control plane and the operator, from servicelink.testing.fixtures."""

pytest_plugins = ["servicelink.testing.fixtures"]
