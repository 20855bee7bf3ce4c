"""Margin settings in the paper runtime on a real Ray cluster: funding paid by the paper venue reaches the
account's portfolio and the audit journal; the account status shows the margin in use."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import ray

from tests.integration.test_runtime_ray import run_system, stop, system_config

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

PERP = "SYNTH-PERP"  # a crypto symbol ending in PERP: a perpetual swap (quoted in USDT)


def test_paper_perpetual_pays_funding_and_reports_margin(tmp_path: Path) -> None:
    from adapters.sql_store import make_storage
    from mmats.model import Environment, MarketType, default_instrument
    from mmats.portfolio import Portfolio

    cfg = system_config([{"id": "trend", "ref": "sma_cross", "symbols": [PERP], "params": {"fast": 5, "slow": 20}}],
                        1500, home=str(tmp_path))
    cfg["feeds"][0]["generated_symbols"] = [PERP]
    cfg["instruments"] = {PERP: {"leverage": 5, "funding": {"rate": 0.001, "interval_h": 1}}}
    sup, handles = run_system(cfg)
    try:
        status = ray.get(handles["portfolio"].status.remote())
    finally:
        stop(sup, handles)
    storage = make_storage(Environment.PAPER, home=str(tmp_path))
    records = storage.audit_records()
    funding = [r.payload for r in records if r.kind == "funding"]
    assert len(funding) >= 3, "an hourly rate over 25 hours of minute bars, long part of the time"
    # a long pays a positive rate: every payment is -quantity x price x 0.001
    for f in funding:
        assert float(f["amount"]) == pytest.approx(-float(f["quantity"]) * float(f["price"]) * 0.001, abs=1e-6)
    assert all(float(f["quantity"]) > 0 for f in funding)  # sma_cross without allow_short is long or flat
    margin = status["margin"]
    assert set(margin) == {"used", "available", "utilisation"}
    open_qty = sum(float(p["quantity"]) for p in status["positions"] if p["symbol"] == PERP)
    if open_qty:  # margin in use is 1/5 of the open position's value
        price = next(float(p["last_price"]) for p in status["positions"] if p["symbol"] == PERP)
        assert float(margin["used"]) == pytest.approx(open_qty * price / 5, rel=1e-6)
    # the funding is in the account: its realized P&L is that of its fills plus the funding
    fills_only = Portfolio(Decimal(100_000), "USDT")  # the account is in USD, USDT pegged at 1
    fills_only.register(default_instrument(PERP, MarketType.CRYPTO))
    for fill in storage.list_fills():
        fills_only.apply_fill(fill)
    paid = sum(float(f["amount"]) for f in funding)
    assert paid < 0
    assert float(status["realized_pnl"]) == pytest.approx(float(fills_only.realized_pnl) + paid, abs=1e-6)
