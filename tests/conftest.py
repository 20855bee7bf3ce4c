"""Shared test rules. Under CI=true a missing service, browser or data file is a failure, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MMATS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def require(condition: bool, reason: str) -> None:
    """Skip on a user's machine, fail in CI: CI must exercise everything."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI=true and a test prerequisite is missing: {reason}")
        pytest.skip(reason)


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    require(path.is_file(), f"{path} not found (the real data lives in ../shared/data)")
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = reporter.stats.get("skipped", []) if reporter else []
        if skipped:
            print(f"\nCI=true: {len(skipped)} test(s) skipped; treating as failure")
            session.exitstatus = 1
