"""The running system rebalances capital between its strategies on bar time, and audits each change."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import ray

from tests.integration.test_runtime_ray import SYMBOL, run_system, stop, system_config

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def test_the_gatekeeper_rebalances_on_bar_time_and_audits_each_change(tmp_path: Path) -> None:
    strategies = [{"id": "quick", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 5, "slow": 20}},
                  {"id": "steady", "ref": "sma_cross", "symbols": [SYMBOL], "params": {"fast": 20, "slow": 60},
                   "allocation": 0.5}]
    cfg = system_config(strategies, 1500, home=str(tmp_path))  # 25 hours of 1-minute bars
    cfg["allocation"] = {"method": "inverse_vol", "weights": {"quick": 0.6, "steady": 0.4}, "rebalance_every": "2h",
                         "lookback": "6h", "sample_every": "10m", "min_history": 6, "max_weight": 0.8}
    sup, handles = run_system(cfg)
    try:
        status = ray.get(handles["gatekeeper"].allocation_status.remote())
        summary = ray.get(sup.status.remote())
        orders = ray.get(handles["router"].orders.remote())
    finally:
        stop(sup, handles)
    assert status["method"] == "inverse_vol"
    # a rebalance every 2 h of bar time from the first midnight-aligned boundary on: 12 in 25 hours
    assert status["rebalances"] == 12 and status["changes"] >= 1
    weights = status["weights"]
    assert weights != {"quick": 0.6, "steady": 0.4}
    assert math.isclose(sum(weights.values()), 1.0, abs_tol=1e-9) and max(weights.values()) <= 0.8 + 1e-12
    # what the signal path sizes with: each strategy's own allocation times its weight
    assert status["allocation"] == pytest.approx({"quick": weights["quick"], "steady": 0.5 * weights["steady"]})
    assert summary["allocation"]["weights"] == weights
    assert len({o["strategy_id"] for o in orders}) == 2

    from adapters.sql_store import make_storage
    from mmats.model import Environment

    storage = make_storage(Environment.PAPER, home=str(tmp_path))
    assert storage.verify_audit().ok
    changes = [r for r in storage.audit_records() if r.kind == "allocation"]
    assert len(changes) == status["changes"]
    first, last = changes[0].payload, changes[-1].payload
    assert first["previous"] == {"quick": 0.6, "steady": 0.4} and first["method"] == "inverse_vol"
    assert first["reason"] == "scheduled every 2h" and set(first["detail"]) == {"quick", "steady"}
    assert last["weights"] == pytest.approx(weights)
    # each record is journaled at the bar time it applies from, on the 2-hour grid
    assert all(r.ts_ns % (2 * 3600 * 10**9) < 60 * 10**9 for r in changes)
    assert [h["weights"] for h in status["history"]] == [r.payload["weights"] for r in changes][-20:]
