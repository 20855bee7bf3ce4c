"""Every LIVE setting reaches what it governs: config -> the router's LiveExecution, a real adapter, its guard.

The router actor builds its venues with ``open_live_execution`` from the specs the supervisor derives from
the config (``live_venue_specs``); this runs the same two functions in-process against a fake OANDA, so
each setting is checked where it acts, not just parsed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from actors.router import open_live_execution
from actors.supervisor import live_venue_specs
from adapters.secrets import SecretStore
from adapters.venues import open_venue
from mmats.errors import ConfigError
from mmats.execution.venue import VenueError
from mmats.model import Environment
from mmats.system_config import SystemConfig
from tests.fixtures.fake_oanda import FakeOanda

TOKEN, ACCOUNT = "oanda-wiring-token-0001", "001-001-2222222-001"


@pytest.fixture()
def fake() -> Iterator[FakeOanda]:
    with FakeOanda(TOKEN, ACCOUNT, {"EUR_USD": "1.10000"}) as venue:
        yield venue


def config(fake: FakeOanda, home: Path, **venue: object) -> SystemConfig:
    return SystemConfig.model_validate({
        "environment": "LIVE", "home": str(home), "dry_run": True,
        "feeds": [{"venue": "oanda", "source": "oanda", "market": "forex", "account_id": ACCOUNT,
                   "api_base": fake.base_url, "symbols": ["EUR_USD"]}],
        "venues": [{"name": "fx", "kind": "oanda", "account_id": ACCOUNT, "symbols": ["EUR_USD"],
                    "api_base": fake.base_url, **venue}],
        "live": {"reconcile_every_s": 7, "unknown_grace_s": 3},
        "strategies": [{"id": "s", "ref": "sma_cross", "symbols": ["EUR_USD"]}],
    })


def test_each_live_setting_reaches_the_guard_the_adapter_and_the_rules(fake: FakeOanda, tmp_path: Path) -> None:
    cfg = config(fake, tmp_path, timeout_s=0.3, breaker={"failures": 2, "open_s": 9}, outside_hours="queue")
    spec = live_venue_specs(cfg)
    assert spec is not None
    with pytest.raises(ConfigError, match=r"no LIVE secret 'fx.token'.*--environment LIVE"):
        open_live_execution(spec, {}, Decimal(1000))
    SecretStore(tmp_path, Environment.LIVE).set("fx.token", TOKEN)
    instruments = open_venue(spec["venues"][0]).instruments(["EUR_USD"])  # as the supervisor reads them
    live = open_live_execution(spec, instruments, Decimal(1000))
    fx = live.venues["fx"]
    assert (fx.guard.breaker.failures_to_open, fx.guard.breaker.open_s) == (2, 9)
    assert fx.guard.bucket.rate == 50.0  # OANDA's default bucket; ccxt venues use ccxt's own limiter
    assert (live.settings.reconcile_every_s, live.settings.unknown_grace_s, live.settings.dry_run) == (7, 3, True)
    assert live.settings.outside_hours == {"fx": "queue"}
    fake.hang_next("/v3/accounts", 2.0, act=False)  # timeout_s: the adapter gives up after 0.3 s, not 2
    t0 = time.perf_counter()
    with pytest.raises(VenueError):
        fx.guard.call(fx.client.balances, retry=False)
    assert time.perf_counter() - t0 < 1.5


def test_a_configured_rate_limit_replaces_the_default(fake: FakeOanda, tmp_path: Path) -> None:
    spec = live_venue_specs(config(fake, tmp_path, rate_limit_per_s=2))
    assert spec is not None and spec["venues"][0]["rate_per_s"] == 2
