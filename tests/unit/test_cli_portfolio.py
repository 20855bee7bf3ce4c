"""``mmats backtest --config system.yaml`` and portfolio sweeps (the research functions, without Ray)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmats.engine.portfolio_backtest import PortfolioData, load_portfolio_data
from mmats.errors import ConfigError
from mmats.research.experiments import (
    data_fingerprint,
    evaluate_many,
    parse_grid,
    plan_runs,
    slice_loaded,
    walkforward_windows,
)
from mmats.system_config import load_system_config
from mmats_cli.main import main
from tests.conftest import shared_file


def system_yaml(tmp_path: Path) -> Path:
    cfg = {
        "initial_cash": 50_000,
        "feeds": [{"venue": "fx", "market": "forex", "files": {"EURUSD": str(shared_file("forex_EURUSD_1h.parquet"))}},
                  {"venue": "stocks", "market": "stock", "files": {"SPY": str(shared_file("stock_SPY_1h.parquet"))}}],
        "strategies": [
            {"id": "trend", "ref": "sma_cross", "symbols": ["EURUSD"], "params": {"fast": 10, "slow": 40},
             "allocation": 0.4},
            {"id": "revert", "ref": "rsi_reversion", "symbols": ["SPY"], "params": {"oversold": 35, "exit": 55},
             "allocation": 0.4},
        ],
        "costs": {"commission": {"model": "percent", "taker_bps": 2.0}, "slippage": {"model": "fixed", "bps": 1.0}},
    }
    path = tmp_path / "system.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_backtest_of_a_system_config_writes_result_and_report(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = system_yaml(tmp_path)
    out, report = tmp_path / "out" / "pf.json", tmp_path / "out" / "pf.html"
    code = main(["backtest", "--config", str(path), "--start", "2016-01-01", "--end", "2017-01-01",
                 "--json", str(out), "--report", str(report), "--equity-every", "5"])
    text = capsys.readouterr().out
    assert code == 0
    assert "portfolio of 2 strategies on 2 symbols" in text and "trend" in text and "revert" in text
    doc = json.loads(out.read_text())
    assert doc["mmats_result_version"] == 1
    assert doc["config"]["resolved"]["kind"] == "portfolio"
    assert doc["summary"]["first_bar"] >= "2016-01-01" and doc["summary"]["last_bar"] < "2017-01-01"
    assert doc["summary"]["reconciled"] is True
    by_strategy = doc["attribution"]["by_strategy"]
    assert set(by_strategy) == {"trend", "revert"} and all(r["trades"] > 0 for r in by_strategy.values())
    assert set(doc["attribution"]["by_market"]) == {"forex", "stock"}
    assert abs(sum(r["realized_pnl"] for r in by_strategy.values()) - doc["summary"]["realized_pnl"]) < 0.02
    assert len(doc["equity"]) < doc["summary"]["timestamps"]  # --equity-every thins the curve
    html = report.read_text()
    assert "Attribution" in html and "portfolio: trend, revert" in html and "Win rate" in html
    # the result is a backtest result: `mmats montecarlo` reads it
    assert main(["montecarlo", "--result", str(out), "--runs", "50", "--method", "blocks", "--parallel", "no",
                 "--quiet", "--json", str(tmp_path / "mc.json")]) == 0


def test_one_strategy_flags_next_to_a_system_config_are_refused(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = system_yaml(tmp_path)
    assert main(["backtest", "--config", str(path), "--fees", "10bps", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --fees:") and "system config" in err[0]
    assert main(["backtest", "--config", str(path), "--start", "2030-01-01", "--quiet"]) == 2
    assert "fewer than 2 bars between 2030-01-01" in capsys.readouterr().err


def portfolio(tmp_path: Path) -> tuple[dict[str, Any], PortfolioData]:
    cfg = load_system_config(str(system_yaml(tmp_path)), env={})
    return cfg.model_dump(mode="json"), load_portfolio_data(cfg, "2016-01-01", "2016-07-01")


def test_a_sweep_varies_one_strategy_of_the_portfolio(tmp_path: Path) -> None:
    base, data = portfolio(tmp_path)
    axes = parse_grid(["trend.fast=5,10", "revert.allocation=0.2,0.6"], ["trend", "revert"])
    sets = [{"trend.fast": f, "revert.allocation": a} for f in axes[0].values for a in axes[1].values]
    specs = plan_runs(base, sets, data_fingerprint(data.bars))
    assert len({s.key for s in specs}) == 4 and all(s.config is not None for s in specs)
    fast = {s.params["trend.fast"]: s for s in specs if s.params["revert.allocation"] == 0.2}
    assert fast[5].config.strategies[0].params["fast"] == 5  # type: ignore[union-attr]
    records = evaluate_many(specs, data)
    assert all(r["status"] == "ok" for r in records)
    assert len({r["final_equity"] for r in records}) == 4  # every point changed the portfolio's result
    with pytest.raises(ConfigError, match="neither a strategy of the config"):
        parse_grid(["nope.fast=5"], ["trend", "revert"])
    with pytest.raises(ConfigError, match="feeds' bars are loaded once"):
        parse_grid(["feeds.pace=max"], ["trend", "revert"])
    bad = plan_runs(base, [{"revert.allocation": 99}], "x")[0]
    assert bad.config is None and "allocation" in str(bad.error)


def test_walkforward_windows_cut_every_symbol_at_the_same_times(tmp_path: Path) -> None:
    _, data = portfolio(tmp_path)
    windows = walkforward_windows(len(data.bars), 3, 0.7)
    w = windows[1]
    part = slice_loaded(data, w.test_start, w.test_end)
    lo, hi = data.timeline[w.test_start], data.timeline[w.test_end]
    for sym, a in part.series.items():
        assert len(a) > 0 and a.ts_ns[0] >= lo and a.ts_ns[-1] < hi, sym
    assert len(part) == w.test_end - w.test_start
