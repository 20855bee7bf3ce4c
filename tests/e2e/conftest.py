"""End-to-end fixtures: one Ray cluster and one Serve instance per session, one MMATS system per module.

A module gets a running system (generated bars replayed in paper, operator mode, persistence on) and
the control plane in front of it through the ``mmats_api`` fixture. A module can change the system
with a module-level ``E2E_SYSTEM = {...}`` dict (merged into the default config) and the number of
strategies with ``E2E_STRATEGIES = [...]``.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

SYMBOL = "SYNTH/USDT"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
NAMESPACE = "tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_strategies() -> list[dict[str, Any]]:
    return [
        {"id": "sma_fast", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 3, "slow": 12},
         "allocation": 0.4},
        {"id": "rsi_rev", "ref": "rsi_reversion", "symbols": [SYMBOL], "params": {"period": 14}, "allocation": 0.4},
    ]


def system_config(home: str, strategies: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    name = f"e2e{uuid.uuid4().hex[:8]}"
    cfg: dict[str, Any] = {
        "environment": "PAPER", "mode": "operator", "allow_operator": True, "initial_cash": 100_000.0,
        "system_name": name, "home": home,
        "feeds": [{"venue": "replay-crypto", "market": "crypto", "generated_symbols": [SYMBOL],
                   "generated_bars": 40_000, "pace": "speed", "speed": 60 * 25}],  # 25 bars/s
        "costs": {"commission": {"model": "percent", "taker_bps": 10.0}, "slippage": {"model": "fixed", "bps": 2.0}},
        "strategies": default_strategies() if strategies is None else strategies,
    }
    cfg.update(overrides)
    return cfg


class Api:
    """httpx against the running app, with and without the token."""

    def __init__(self, base_url: str, token: str, system: str, home: str) -> None:
        import httpx

        self.base_url = base_url
        self.token = token
        self.system = system
        self.home = home
        self.anon = httpx.Client(base_url=base_url, timeout=30)
        self.auth = httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {token}"})

    def get(self, path: str, **kw: Any) -> Any:
        return self.anon.get(path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.auth.post(path, **kw)

    def wait_for(self, predicate: Any, timeout: float = 60.0, every: float = 0.25, what: str = "condition") -> Any:
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")

    def close(self) -> None:
        self.anon.close()
        self.auth.close()


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=NAMESPACE,
                 logging_level="ERROR", log_to_driver=False)  # a cluster of its own, never a leftover one
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def serve_port(ray_session: None) -> Iterator[int]:
    import ray
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    if ray.is_initialized():  # another session fixture (tests/integration) may have shut Ray down first
        serve.shutdown()


def start_system(cfg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    import ray

    from actors.supervisor import SupervisorActor

    sup = SupervisorActor.options(name=f"{cfg['system_name']}_supervisor").remote(cfg)
    ray.get(sup.build.remote())
    ray.get(sup.start.remote())
    return sup, ray.get(sup.handles.remote())


def stop_system(sup: Any) -> None:
    import ray

    try:
        handles = ray.get(sup.handles.remote(), timeout=30)
        ray.get(sup.down.remote(), timeout=60)
    except Exception:
        handles = {}
    for h in [handles.get("gatekeeper"), handles.get("router"), handles.get("portfolio"),
              *handles.get("feeds", {}).values(), *handles.get("strategies", {}).values(), sup]:
        if h is not None:
            ray.kill(h)


@pytest.fixture(scope="module")
def mmats_api(request: pytest.FixtureRequest, serve_port: int) -> Iterator[Api]:
    from ray import serve

    from tests.conftest import require

    try:
        import httpx  # noqa: F401
    except ImportError:
        require(False, "httpx is not installed (pip install -e '.[dev]')")

    import serve_app

    home = tempfile.mkdtemp(prefix="mmats-e2e-")
    overrides = dict(getattr(request.module, "E2E_SYSTEM", {}))
    strategies = getattr(request.module, "E2E_STRATEGIES", None)
    cfg = system_config(home, strategies, **overrides)
    sup, _ = start_system(cfg)
    token = secrets.token_urlsafe(24)
    app = serve_app.make_app(f"{cfg['system_name']}_supervisor", NAMESPACE, serve_app.token_digest(token),
                             auth_all=False, poll_s=0.25)
    serve.run(app, name="mmats", route_prefix="/")
    api = Api(f"http://127.0.0.1:{serve_port}", token, cfg["system_name"], home)
    try:
        api.wait_for(lambda: api.get("/api/v1/ready").status_code == 200, 60, 0.5, "the app to be ready")
        yield api
    finally:
        api.close()
        serve.delete("mmats")
        stop_system(sup)
