"""The running system accounts in its base currency: a yen-quoted pair valued with a feed's USD/JPY rate."""

from __future__ import annotations

from decimal import Decimal

import pytest
import ray

from tests.integration.test_runtime_ray import run_system, stop, system_config

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def test_yen_positions_are_valued_in_usd_with_the_feed_rate_and_configured_rates_apply() -> None:
    cfg = system_config([{"id": "fx", "ref": "sma_cross", "symbols": ["EUR/JPY"], "params": {"fast": 5, "slow": 20}}],
                        600)
    cfg["feeds"] = [{"venue": "fx", "market": "forex", "generated_symbols": ["EUR/JPY", "USD/JPY"],
                     "generated_bars": 600, "pace": "lockstep", "speed": 100_000}]
    cfg["costs"] = {"commission": {"model": "none"}, "slippage": {"model": "none"}}
    sup, handles = run_system(cfg)
    try:
        st = ray.get(handles["portfolio"].status.remote())
        last = ray.get(handles["feeds"]["fx"].last_prices.remote())
    finally:
        stop(sup, handles)
    assert st["currency"] == "USD" and st["fills"] > 0
    assert st["fx_rates"]["JPY"]["source"] == "feed USD/JPY (inverted)"
    rate = Decimal(st["fx_rates"]["JPY"]["rate"])
    usdjpy = Decimal(repr(last["USD/JPY"])).quantize(Decimal("0.001"))
    assert abs(rate - 1 / usdjpy) < Decimal("1e-20")  # the feed's last close, inverted
    held = {c: Decimal(v) for c, v in st["cash_by_currency"].items()}
    assert set(held) == {"USD", "JPY"} and held["USD"] == Decimal(100_000)  # yen trades move yen cash only
    value = sum((Decimal(p["quantity"]) * Decimal(p["last_price"]) for p in st["positions"]), Decimal(0))
    expected = held["USD"] + (held["JPY"] + value) * rate
    assert abs(Decimal(st["equity"]) - expected) < Decimal("1e-9")

    # The same yen pair with a configured rate instead of a feed: fx_rates is what values it.
    cfg2 = system_config([{"id": "fx", "ref": "sma_cross", "symbols": ["EUR/JPY"],
                           "params": {"fast": 5, "slow": 20}}], 300)
    cfg2["feeds"] = [{"venue": "fx", "market": "forex", "generated_symbols": ["EUR/JPY"], "generated_bars": 300,
                      "pace": "lockstep", "speed": 100_000}]
    cfg2["fx_rates"] = {"USD/JPY": 150.0}
    sup, handles = run_system(cfg2)
    try:
        st2 = ray.get(handles["portfolio"].status.remote())
    finally:
        stop(sup, handles)
    assert st2["fx_rates"]["JPY"]["source"] == "config USD/JPY (inverted)"
    held2 = {c: Decimal(v) for c, v in st2["cash_by_currency"].items()}
    value2 = sum((Decimal(p["quantity"]) * Decimal(p["last_price"]) for p in st2["positions"]), Decimal(0))
    expected2 = held2["USD"] + (held2.get("JPY", Decimal(0)) + value2) / 150
    assert abs(Decimal(st2["equity"]) - expected2) < Decimal("1e-9")
