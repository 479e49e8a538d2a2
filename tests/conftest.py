"""Shared fixtures: the real control plane and the operator, from servicelink.testing.fixtures; and the gate on
skips CI turns on (allowed_skips.py)."""

pytest_plugins = ["servicelink.testing.fixtures", "allowed_skips"]
