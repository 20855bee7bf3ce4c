"""The official metric definitions, checked by hand, against an independent implementation, and as
properties. The hand-worked numbers use plain ``math`` so a reader can redo them on paper."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmats.errors import ValidationError
from mmats.model import MarketType
from mmats.research.metrics import (
    METRIC_KEYS,
    TradeRecord,
    benchmark_metrics,
    buy_and_hold_equity,
    compute_metrics,
    drawdown_series,
    json_safe,
    periods_per_year,
)

DAY_NS = 86_400 * 1_000_000_000


def days(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) * DAY_NS


def trade(pnl: float, entry_price: float = 100.0, qty: float = 1.0, dur_s: int = 3600, side: str = "LONG"
          ) -> TradeRecord:
    return TradeRecord("BTC/USDT", side, qty, 0, entry_price, dur_s * 1_000_000_000, entry_price, pnl, 0.0)


# ----------------------------------------------------------------------------------- hand-worked cases


def test_hand_calculated_four_point_curve() -> None:
    m = compute_metrics(np.array([100.0, 110.0, 99.0, 120.0]), days(4), [], 252)
    r = [110 / 100 - 1, 99 / 110 - 1, 120 / 99 - 1]  # 0.1, -0.1, 0.2121...
    mean = sum(r) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 2)
    downside = math.sqrt((0.1**2) / 3)  # only -0.1 is below 0, averaged over all 3 returns
    assert list(m) == list(METRIC_KEYS)
    assert m["total_return"] == pytest.approx(0.2)
    assert m["sharpe"] == pytest.approx(mean / std * math.sqrt(252))
    assert m["sharpe"] == pytest.approx(7.0992, abs=1e-4)  # on paper: 0.070707 / 0.158110 * 15.8745
    assert m["sortino"] == pytest.approx(mean / downside * math.sqrt(252))
    assert m["max_drawdown"] == pytest.approx(99 / 110 - 1)  # -10 %
    assert m["avg_drawdown"] == pytest.approx(-0.1)  # one episode
    assert m["cagr"] == pytest.approx(1.2 ** (365.25 / 3) - 1, rel=1e-9)


def test_avg_drawdown_is_mean_of_episode_troughs() -> None:
    eq = np.array([100.0, 90.0, 95.0, 100.0, 80.0, 85.0, 120.0, 110.0])
    m = compute_metrics(eq, days(len(eq)), [], 365)
    troughs = [90 / 100 - 1, 80 / 100 - 1, 110 / 120 - 1]  # the last episode is still open
    assert m["avg_drawdown"] == pytest.approx(sum(troughs) / 3)
    assert m["max_drawdown"] == pytest.approx(-0.2)


def test_cagr_over_exactly_one_and_two_years() -> None:
    year_ns = int(365.25 * DAY_NS)
    m = compute_metrics(np.array([100.0, 150.0]), np.array([0, year_ns]), [], 1)
    assert m["cagr"] == pytest.approx(0.5)
    m = compute_metrics(np.array([100.0, 121.0]), np.array([0, 2 * year_ns]), [], 1)
    assert m["cagr"] == pytest.approx(0.1)


def test_trade_statistics() -> None:
    trades = [trade(10.0, dur_s=60), trade(-5.0, dur_s=120), trade(20.0, entry_price=200.0, dur_s=180),
              trade(-15.0, qty=2.0, dur_s=240), trade(0.0, dur_s=300)]
    m = compute_metrics(np.array([100.0, 101.0]), days(2), trades, 365)
    assert m["num_trades"] == 5
    assert m["win_rate"] == pytest.approx(2 / 5)  # a zero-pnl trade is not a win
    assert m["profit_factor"] == pytest.approx(30 / 20)
    assert m["avg_trade_duration_s"] == pytest.approx(180)
    assert m["best_trade"] == pytest.approx(0.10)  # 10 / (100 * 1) beats 20 / (200 * 1)
    assert m["worst_trade"] == pytest.approx(-0.075)  # -15 / (100 * 2)


def test_all_wins_gives_infinite_profit_factor_and_json_null() -> None:
    m = compute_metrics(np.array([100.0, 110.0]), days(2), [trade(5.0), trade(5.0)], 365)
    assert m["win_rate"] == 1.0
    assert m["profit_factor"] == math.inf
    safe = json_safe(m)
    assert safe["profit_factor"] is None
    assert safe["num_trades"] == 2 and isinstance(safe["num_trades"], int)
    json.dumps(safe, allow_nan=False)


def test_all_losses_gives_zero_profit_factor() -> None:
    m = compute_metrics(np.array([100.0, 90.0]), days(2), [trade(-5.0), trade(-5.0)], 365)
    assert m["win_rate"] == 0.0 and m["profit_factor"] == 0.0


# ----------------------------------------------------------------------------------------- edge cases


def test_flat_equity_is_all_zero() -> None:
    m = compute_metrics(np.full(50, 1000.0), days(50), [], 252)
    assert all(v == 0.0 for v in m.values()), m


def test_single_point() -> None:
    m = compute_metrics(np.array([1000.0]), days(1), [], 252)
    assert all(v == 0.0 for v in m.values()), m


def test_constant_growth_has_no_sharpe_blowup() -> None:
    eq = 100.0 * 1.001 ** np.arange(100)  # std of returns is float noise only
    m = compute_metrics(eq, days(100), [], 365)
    assert m["sharpe"] == 0.0 and m["sortino"] == 0.0
    assert m["max_drawdown"] == 0.0 and m["avg_drawdown"] == 0.0


def test_no_downside_gives_zero_sortino_but_sharpe() -> None:
    m = compute_metrics(np.array([100.0, 101.0, 103.0, 104.0]), days(4), [], 365)
    assert m["sortino"] == 0.0 and m["sharpe"] > 0


def test_ruin_ends_the_return_series() -> None:
    m = compute_metrics(np.array([100.0, 50.0, 0.0, 0.0, 0.0]), days(5), [], 365)
    assert m["total_return"] == -1.0 and m["cagr"] == -1.0 and m["max_drawdown"] == -1.0
    assert math.isfinite(m["sharpe"]) and math.isfinite(m["sortino"])


def test_zero_span_cagr_and_overflow() -> None:
    assert compute_metrics(np.array([100.0, 200.0]), np.array([5, 5]), [], 1)["cagr"] == 0.0
    huge = compute_metrics(np.array([100.0, 1e6]), np.array([0, 60 * 10**9]), [], 1)["cagr"]
    assert huge == math.inf and json_safe({"cagr": huge})["cagr"] is None


@pytest.mark.parametrize(
    ("equity", "ts"),
    [(np.array([]), np.array([], dtype=np.int64)), (np.array([0.0, 1.0]), days(2)),
     (np.array([1.0, np.nan]), days(2)), (np.array([1.0, 2.0]), days(3))],
)
def test_bad_input_is_a_clear_error(equity: np.ndarray, ts: np.ndarray) -> None:
    with pytest.raises(ValidationError, match="compute_metrics"):
        compute_metrics(equity, ts, [], 252)


def test_periods_per_year() -> None:
    assert periods_per_year(86400, MarketType.CRYPTO) == 365
    assert periods_per_year(3600, MarketType.CRYPTO) == 8760
    assert periods_per_year(86400, MarketType.FOREX) == 260
    assert periods_per_year(3600, "forex") == 6240
    assert periods_per_year(86400, MarketType.STOCK) == 252
    assert periods_per_year(3600, MarketType.STOCK) == pytest.approx(1638)
    assert periods_per_year(60, MarketType.STOCK) == pytest.approx(252 * 390)
    assert periods_per_year(8 * 3600, MarketType.STOCK) == 252  # longer than the session: one per day
    assert periods_per_year(7 * 86400, MarketType.STOCK) == pytest.approx(52.18, abs=0.01)
    with pytest.raises(ValidationError):
        periods_per_year(0, MarketType.CRYPTO)
    with pytest.raises(ValidationError):
        periods_per_year(60, "bonds")


def test_drawdown_series() -> None:
    dd = drawdown_series(np.array([100.0, 120.0, 90.0, 130.0]))
    np.testing.assert_allclose(dd, [0.0, 0.0, -0.25, 0.0])
    assert drawdown_series(np.array([])).size == 0


def test_buy_and_hold_pays_the_entry_fee() -> None:
    close = np.array([100.0, 110.0, 121.0])
    eq = buy_and_hold_equity(close, 1000.0, fee_rate=0.001)
    assert eq[0] == 1000.0
    qty = 1000.0 / (100.0 * 1.001)
    np.testing.assert_allclose(eq[1:], qty * close[1:])
    m = benchmark_metrics(close, days(3), 1000.0, 365, fee_rate=0.001, symbol="X")
    assert m["total_return"] == pytest.approx(1.21 / 1.001 - 1)
    assert m["num_trades"] == 1 and m["win_rate"] == 1.0
    assert m["avg_trade_duration_s"] == 2 * 86400
    no_fee = benchmark_metrics(close, days(3), 1000.0, 365)
    assert no_fee["total_return"] == pytest.approx(0.21) and no_fee["best_trade"] == pytest.approx(0.21)
    with pytest.raises(ValidationError):
        buy_and_hold_equity(np.array([0.0, 1.0]), 1000.0)


# ------------------------------------------------------------------------- independent implementation


def reference(equity: list[float], ts_s: list[float], trades: list[TradeRecord], ppy: float) -> dict[str, float]:
    """Loop-by-loop restatement of docs/result-schema.md, sharing no code with mmats.research.metrics.

    (empyrical/quantstats are not installed; if they ever are, ``test_agrees_with_empyrical`` runs too.)
    """
    r = [equity[i] / equity[i - 1] - 1 for i in range(1, len(equity))]
    out: dict[str, float] = {"total_return": equity[-1] / equity[0] - 1}
    years = (ts_s[-1] - ts_s[0]) / (365.25 * 86400)
    try:
        out["cagr"] = (equity[-1] / equity[0]) ** (1 / years) - 1 if years > 0 else 0.0
    except OverflowError:
        out["cagr"] = math.inf
    if len(r) >= 2:
        mean = sum(r) / len(r)
        var = sum((x - mean) ** 2 for x in r) / (len(r) - 1)
        out["sharpe"] = mean / math.sqrt(var) * math.sqrt(ppy) if var > 1e-24 else 0.0
        down = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / len(r))
        out["sortino"] = mean / down * math.sqrt(ppy) if down > 1e-12 else 0.0
    else:
        out["sharpe"] = out["sortino"] = 0.0
    peak, worst, troughs, in_dd = equity[0], 0.0, [], False
    for v in equity:
        if v > peak:
            peak = v
        d = v / peak - 1
        worst = min(worst, d)
        if d < -1e-12:
            if not in_dd:
                troughs.append(d)
                in_dd = True
            troughs[-1] = min(troughs[-1], d)
        else:
            in_dd = False
    out["max_drawdown"] = worst
    out["avg_drawdown"] = sum(troughs) / len(troughs) if troughs else 0.0
    wins = [t.pnl for t in trades if t.pnl > 0]
    losses = [t.pnl for t in trades if t.pnl < 0]
    n = len(trades)
    out["win_rate"] = len(wins) / n if n else 0.0
    out["profit_factor"] = sum(wins) / -sum(losses) if losses else (math.inf if wins else 0.0)
    out["num_trades"] = n
    out["avg_trade_duration_s"] = sum((t.exit_ns - t.entry_ns) / 1e9 for t in trades) / n if n else 0.0
    rets = [t.pnl / (t.entry_price * t.quantity) for t in trades]
    out["best_trade"] = max(rets) if rets else 0.0
    out["worst_trade"] = min(rets) if rets else 0.0
    return out


returns_st = st.lists(st.floats(min_value=-0.5, max_value=0.5, allow_nan=False), min_size=0, max_size=60)
trades_st = st.lists(
    st.builds(trade, pnl=st.floats(min_value=-1e4, max_value=1e4, allow_nan=False),
              entry_price=st.floats(min_value=0.01, max_value=1e5), qty=st.floats(min_value=1e-3, max_value=1e3),
              dur_s=st.integers(min_value=0, max_value=10**7)),
    max_size=20,
)


def _curve(rets: list[float]) -> list[float]:
    eq = [1000.0]
    for x in rets:
        eq.append(eq[-1] * (1 + x))
    return eq


@settings(max_examples=150, deadline=None)
@given(rets=returns_st, trades=trades_st, step_h=st.integers(min_value=1, max_value=48))
def test_agrees_with_reference(rets: list[float], trades: list[TradeRecord], step_h: int) -> None:
    eq = _curve(rets)
    ts = [i * step_h * 3600.0 for i in range(len(eq))]
    ts_ns = np.array([int(t) * 1_000_000_000 for t in ts], dtype=np.int64)
    got = compute_metrics(np.array(eq), ts_ns, trades, 8760)
    want = reference(eq, ts, trades, 8760)
    for k in METRIC_KEYS:
        if k == "cagr" and (math.isinf(got[k]) or abs(want[k]) > 1e12):
            continue  # astronomically large over a few hours: both overflow differently
        assert got[k] == pytest.approx(want[k], rel=1e-7, abs=1e-9), k


def test_agrees_with_empyrical() -> None:
    empyrical = pytest.importorskip("empyrical")
    rng = np.random.default_rng(7)
    r = rng.normal(0.0005, 0.01, 500)
    eq = 1000.0 * np.concatenate(([1.0], np.cumprod(1 + r)))
    m = compute_metrics(eq, days(len(eq)), [], 252)
    assert m["sharpe"] == pytest.approx(empyrical.sharpe_ratio(r, annualization=252), rel=1e-9)
    assert m["sortino"] == pytest.approx(empyrical.sortino_ratio(r, annualization=252), rel=1e-9)
    assert m["max_drawdown"] == pytest.approx(empyrical.max_drawdown(r), rel=1e-9)


# ------------------------------------------------------------------------------------------ properties


@given(rets=st.lists(st.floats(min_value=-0.99, max_value=2.0, allow_nan=False), min_size=1, max_size=200))
def test_max_drawdown_bounded_and_total_return_compounds(rets: list[float]) -> None:
    eq = np.array(_curve(rets))
    m = compute_metrics(eq, days(len(eq)), [], 365)
    assert -1.0 <= m["max_drawdown"] <= 0.0
    assert m["max_drawdown"] <= m["avg_drawdown"] <= 0.0
    assert m["total_return"] == pytest.approx(math.prod(1 + x for x in rets) - 1, rel=1e-9, abs=1e-12)
    dd = drawdown_series(eq)
    assert dd.min() == pytest.approx(m["max_drawdown"]) and (dd <= 0).all()


def test_a_million_points() -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    eq = 10_000 * np.cumprod(1 + rng.normal(0, 1e-3, n))
    ts = np.arange(n, dtype=np.int64) * 60_000_000_000
    compute_metrics(eq[:1000], ts[:1000], [], 525_600)
    m = compute_metrics(eq, ts, [trade(1.0)] * 1000, 525_600)  # its speed: bench/report_time.py
    assert m["num_trades"] == 1000


def test_agrees_with_quantstats() -> None:
    qs = pytest.importorskip("quantstats")
    import pandas as pd

    rng = np.random.default_rng(11)
    r = rng.normal(0.0003, 0.012, 400)
    eq = 1000.0 * np.concatenate(([1.0], np.cumprod(1 + r)))
    m = compute_metrics(eq, days(len(eq)), [], 252)
    rets = pd.Series(r, index=pd.date_range("2022-01-03", periods=len(r), freq="D"))
    assert m["sharpe"] == pytest.approx(qs.stats.sharpe(rets, periods=252), rel=1e-9)
    assert m["sortino"] == pytest.approx(qs.stats.sortino(rets, periods=252), rel=1e-9)
