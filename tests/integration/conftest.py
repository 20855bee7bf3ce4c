"""One Ray cluster per test session (DESIGN.md): starting Ray costs ~4 s and ~1 GB on this machine.

Tests that need their own cluster (multi-node ``Cluster``) run in a separate pytest process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


# address="local": always a cluster of this session's own, never one another process left running.
RAY_INIT = {"address": "local", "num_cpus": 2, "include_dashboard": False, "namespace": "tests",
            "logging_level": "ERROR", "log_to_driver": False}


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    if not ray.is_initialized():
        ray.init(**RAY_INIT)
    yield
    ray.shutdown()


@pytest.fixture
def restart_ray() -> Callable[[], None]:
    """Stop the whole local cluster (every process: GCS, raylet, workers) and start a new one, as a
    user's `mmats down` + machine reboot + `mmats up` would; later tests use the new cluster."""
    import ray

    def restart() -> None:
        ray.shutdown()
        ray.init(**RAY_INIT)

    return restart
