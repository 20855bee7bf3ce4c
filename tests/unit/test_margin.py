"""Margin and instrument kinds: funding, liquidation, forex closeout, short selling, margin utilisation.

Every expected number is computed by hand in the test from the formulas in mmats/margin.py's docstring.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from mmats.errors import ConfigError, DataError, ValidationError
from mmats.execution.simulated import PercentCommission
from mmats.margin import (
    ConstantFunding,
    FundingPayment,
    FundingSeries,
    Liquidation,
    MarginBook,
    book_event,
    liquidation_price,
    load_funding_series,
)
from mmats.model import (
    AccountState,
    Fill,
    Instrument,
    InstrumentKind,
    MarketType,
    PositionSnapshot,
    Side,
    SignalAction,
    TradeSignal,
    datetime_to_ns,
    default_instrument,
)
from mmats.portfolio import Portfolio
from mmats.risk.decision import DecisionStatus, OrderIntent
from mmats.risk.gatekeeper import RiskGatekeeper
from mmats.risk.minimal import MinimalRiskGate

H = 3600 * 1_000_000_000
T0 = datetime_to_ns(datetime(2022, 1, 3, tzinfo=UTC))  # a Monday, 00:00 UTC: a funding time


def perp(leverage: float = 10.0, maintenance: float | None = 0.005) -> Instrument:
    return replace(default_instrument("BTC/USD:USD", MarketType.CRYPTO), leverage=leverage,
                   initial_margin=None, maintenance_margin=maintenance)


def fx(leverage: float = 50.0) -> Instrument:
    return replace(default_instrument("EUR/USD", MarketType.FOREX), leverage=leverage, initial_margin=None)


def book_with(inst: Instrument, cash: str, qty: str, price: str, **kw: object) -> tuple[Portfolio, MarginBook]:
    pf = Portfolio(Decimal(cash), "USD")
    pf.register(inst)
    q = Decimal(qty)
    side = Side.BUY if q > 0 else Side.SELL
    pf.apply_fill(Fill("open", inst.symbol, side, abs(q), Decimal(price), Decimal(0), T0 - H, strategy_id="s1"))
    return pf, MarginBook(pf, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ kinds


def test_default_kinds_and_their_terms() -> None:
    assert default_instrument("BTC/USDT", MarketType.CRYPTO).kind is InstrumentKind.SPOT
    assert default_instrument("BTCPERP", MarketType.CRYPTO).kind is InstrumentKind.PERPETUAL
    swap = default_instrument("BTC/USDT:USDT", MarketType.CRYPTO)
    assert swap.kind is InstrumentKind.PERPETUAL and swap.quote_currency == "USDT"
    stock = default_instrument("AAPL", MarketType.STOCK)
    assert stock.kind is InstrumentKind.STOCK and stock.shortable is False
    eur = fx(30)
    assert eur.initial_margin == pytest.approx(1 / 30) and eur.margin_closeout == 0.5
    assert eur.maintenance_rate == pytest.approx(0.5 / 30)
    p = perp(20, None)
    assert p.initial_margin == pytest.approx(0.05) and p.maintenance_margin == pytest.approx(0.025)


@pytest.mark.parametrize("changes,message", [
    ({"leverage": 5.0}, "leverage is for kinds perpetual and forex"),
    ({"shortable": True}, "spot is never shortable"),
    ({"maintenance_margin": 0.01}, "maintenance_margin is for kind perpetual"),
    ({"kind": InstrumentKind.FOREX}, "kind forex is not traded in market crypto"),
])
def test_terms_that_cannot_apply_to_the_kind_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        replace(default_instrument("BTC/USDT", MarketType.CRYPTO), **changes)  # type: ignore[arg-type]


def test_initial_margin_cannot_allow_more_than_the_leverage() -> None:
    with pytest.raises(ValidationError, match="allows more than leverage 10"):
        replace(perp(10), initial_margin=0.05)
    with pytest.raises(ValidationError, match="must be below the initial margin"):
        replace(perp(10), maintenance_margin=0.2)


# ---------------------------------------------------------------------------------------- funding


def test_funding_series_long_pays_and_short_receives_at_the_data_funding_times() -> None:
    times = (T0, T0 + 8 * H, T0 + 16 * H)
    rates = (0.0001, -0.0002, 0.0003)
    series = FundingSeries(times, rates, "test")
    pf, book = book_with(perp(), "10000", "0.5", "40000", funding={"BTC/USD:USD": series})
    paid: list[FundingPayment] = []
    opens = {}
    for k in range(20):  # hourly bars from T0, open = 40000 + 10 k
        ts = T0 + k * H
        opens[ts] = 40000.0 + 10 * k
        ev = book.on_bar("BTC/USD:USD", ts, opens[ts], opens[ts] + 5, opens[ts] - 5, opens[ts] + 1, "s1")
        paid += [e for e in ev if isinstance(e, FundingPayment)]
    assert [e.ts_ns for e in paid] == [T0, T0 + 8 * H, T0 + 16 * H]
    # long 0.5: pays 0.5 x open x rate when the rate is positive, receives when it is negative
    expected = [-0.5 * opens[t] * r for t, r in zip(times, rates, strict=True)]
    assert [float(e.amount) for e in paid] == pytest.approx(expected, abs=0.005)
    assert paid[0].amount < 0 < paid[1].amount
    assert pf.cash == Decimal("10000") - Decimal("20000") + sum((e.amount for e in paid), Decimal(0))
    tot = book.totals["BTC/USD:USD"]
    assert tot.payments == 3 and tot.funding_paid == -(paid[0].amount + paid[2].amount)

    # the same series for a short: it receives what the long paid
    _pf2, book2 = book_with(perp(), "10000", "-0.5", "40000", funding={"BTC/USD:USD": series})
    got = [e for k in range(20) for e in book2.on_bar("BTC/USD:USD", T0 + k * H, opens[T0 + k * H],
                                                        opens[T0 + k * H] + 5, opens[T0 + k * H] - 5,
                                                        opens[T0 + k * H] + 1)]
    assert [float(e.amount) for e in got if isinstance(e, FundingPayment)] == pytest.approx(
        [-x for x in expected], abs=0.005)


def test_constant_funding_every_8h_from_midnight_and_not_while_flat() -> None:
    src = ConstantFunding(0.0001, 8)
    assert src.next_funding(T0 + 1) == (T0 + 8 * H, 0.0001)
    assert src.next_funding(T0) == (T0, 0.0001)
    pf = Portfolio(Decimal(10000), "USD")
    pf.register(perp())
    book = MarginBook(pf, {"BTC/USD:USD": src})
    # flat through the first two funding times, then long 1 from 10:00: only 16:00 is paid
    for k in range(10):
        assert book.on_bar("BTC/USD:USD", T0 + k * H, 100.0, 101.0, 99.0, 100.0) == []
    pf.apply_fill(Fill("o", "BTC/USD:USD", Side.BUY, Decimal(1), Decimal(100), Decimal(0), T0 + 10 * H))
    events = [e for k in range(10, 20) for e in book.on_bar("BTC/USD:USD", T0 + k * H, 100.0, 101.0, 99.0, 100.0)]
    assert [(e.ts_ns, e.amount) for e in events if isinstance(e, FundingPayment)] == [(T0 + 16 * H, Decimal("-0.01"))]


def test_funding_only_for_perpetuals_and_bad_files_are_refused(tmp_path: Path) -> None:
    pf = Portfolio(Decimal(1000), "USD")
    pf.register(default_instrument("BTC/USDT", MarketType.CRYPTO))
    with pytest.raises(ConfigError, match="only perpetual swaps pay funding"):
        MarginBook(pf, {"BTC/USDT": ConstantFunding(0.0001)})
    with pytest.raises(ConfigError, match="divide a day"):
        ConstantFunding(0.0001, 7)
    good = tmp_path / "funding.csv"
    good.write_text("fundingTime,fundingRate\n1641168000000,0.0001\n1641196800000,-0.00005\n")
    s = load_funding_series(good)
    assert s.times_ns == (T0, T0 + 8 * H) and s.rates == (0.0001, -0.00005)
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,price\n2022-01-03,1\n")
    with pytest.raises(DataError, match="rate column"):
        load_funding_series(bad)


# ------------------------------------------------------------------------------------ liquidation


def test_long_perpetual_liquidated_at_the_hand_computed_price() -> None:
    # 1,000 of equity, long 0.1 BTC at 40,000 (notional 4,000: 4x), maintenance margin 0.5 %.
    # cash = 1000 - 4000 = -3000; liquidated when -3000 + 0.1 P = 0.1 P x 0.005  =>  P = 3000 / 0.0995
    pf, book = book_with(perp(10, 0.005), "1000", "0.1", "40000",
                         commission=PercentCommission(5.0))
    level = 3000 / (0.1 * (1 - 0.005))
    assert level == pytest.approx(30150.7537688, rel=1e-9)
    assert liquidation_price(0.1, 0.005, 0.0, 0.0, -3000.0) == pytest.approx(level)
    assert book.on_bar("BTC/USD:USD", T0, 35000, 36000, 30200, 31000, "s1") == []  # low stays above
    [liq] = book.on_bar("BTC/USD:USD", T0 + H, 31000, 31500, 30000, 30500, "s1")
    assert isinstance(liq, Liquidation) and liq.reason == "liquidation"
    assert liq.trigger_price == pytest.approx(level)
    assert liq.fill.price == Decimal("30150.75") and liq.fill.side is Side.SELL and liq.fill.quantity == Decimal("0.1")
    assert liq.fill.fee == Decimal("1.50753750")  # 5 bps taker of 3,015.075
    assert liq.order.reduce_only and liq.order.status.value == "FILLED" and liq.order.strategy_id == "s1"
    assert pf.positions["BTC/USD:USD"].quantity == 0
    assert pf.trades[-1].reason == "liquidation" and pf.trades[-1].exit_price == pytest.approx(30150.75)
    # what is left is the maintenance margin less the fee
    assert pf.cash == Decimal("-3000") + Decimal("3015.075") - Decimal("1.50753750")


def test_liquidation_gapped_through_fills_at_the_open_and_shorts_liquidate_upwards() -> None:
    _pf, book = book_with(perp(10, 0.005), "1000", "0.1", "40000")
    [liq] = book.on_bar("BTC/USD:USD", T0, 29000, 29500, 28500, 29200)  # opened below 30,150.75
    assert isinstance(liq, Liquidation) and liq.fill.price == Decimal("29000.00")
    # short 0.1 at 40,000: cash = 5000; liquidated when 5000 - 0.1 P = 0.1 P x 0.005  =>  P = 5000 / 0.1005
    _pf2, book2 = book_with(perp(10, 0.005), "1000", "-0.1", "40000")
    level = 5000 / (0.1 * 1.005)
    assert book2.on_bar("BTC/USD:USD", T0, 45000, 49700, 44000, 49000) == []
    [liq2] = book2.on_bar("BTC/USD:USD", T0 + H, 49000, 50000, 48000, 49900)
    assert isinstance(liq2, Liquidation) and liq2.fill.side is Side.BUY
    assert liq2.trigger_price == pytest.approx(level) and liq2.fill.price == Decimal("49751.24")


def test_cross_margin_counts_the_other_positions() -> None:
    # Two perpetuals in one account: the other one's value and maintenance margin move this one's level.
    eth = replace(default_instrument("ETH/USD:USD", MarketType.CRYPTO), leverage=10.0, initial_margin=None,
                  maintenance_margin=0.01)
    pf, book = book_with(perp(10, 0.005), "1000", "0.1", "40000")
    pf.register(eth)
    pf.apply_fill(Fill("e", "ETH/USD:USD", Side.BUY, Decimal(1), Decimal(3000), Decimal(0), T0 - H))
    book.on_bar("ETH/USD:USD", T0, 3000, 3000, 3000, 2900)  # marks ETH at 2,900
    # cash = 1000 - 4000 - 3000 = -6000; others: value 2900, maintenance 29
    level = (29 - (-6000 + 2900)) / (0.1 * (1 - 0.005))
    [liq] = book.on_bar("BTC/USD:USD", T0 + H, 32000, 32000, 31000, 31500)
    assert isinstance(liq, Liquidation) and liq.trigger_price == pytest.approx(level)


def test_forex_margin_closeout_at_half_the_margin_used() -> None:
    # 10,000 USD, leverage 50 (margin 2 %), long 400,000 EUR/USD at 1.10000: margin 8,800.
    # cash = 10000 - 440000 = -430000; closeout when equity = 50 % of margin used:
    # -430000 + 400000 P = 0.5 x 0.02 x 400000 P  =>  P = 430000 / (400000 x 0.99)
    pf, book = book_with(fx(50), "10000", "400000", "1.10000")
    level = 430000 / (400000 * 0.99)
    assert book.on_bar("EUR/USD", T0, 1.0900, 1.0920, 1.0860, 1.0880) == []  # low 1.0860 > 1.085859
    [out] = book.on_bar("EUR/USD", T0 + H, 1.0870, 1.0875, 1.0850, 1.0855)
    assert isinstance(out, Liquidation) and out.reason == "margin_closeout"
    assert out.trigger_price == pytest.approx(level) and out.fill.price == Decimal("1.08586")
    equity_at = -430000 + 400000 * level
    assert equity_at == pytest.approx(0.5 * 0.02 * 400000 * level)  # the closeout level, by construction
    assert pf.trades[-1].reason == "margin_closeout" and pf.positions["EUR/USD"].quantity == 0


def test_book_event_mirrors_a_second_ledger() -> None:
    pf, book = book_with(perp(10, 0.005), "1000", "0.1", "40000", funding={"BTC/USD:USD": ConstantFunding(0.001)})
    mirror = Portfolio(Decimal(1000), "USD")
    mirror.register(perp(10, 0.005))
    mirror.apply_fill(Fill("open", "BTC/USD:USD", Side.BUY, Decimal("0.1"), Decimal(40000), Decimal(0), T0 - H))
    events = book.on_bar("BTC/USD:USD", T0, 31000, 31000, 30000, 30500)
    assert [type(e).__name__ for e in events] == ["FundingPayment", "Liquidation"]
    for e in events:
        book_event(mirror, e)
    assert mirror.cash == pf.cash and mirror.realized_pnl == pf.realized_pnl
    assert mirror.trades[-1].reason == "liquidation"


# ------------------------------------------------------------------------------------- pre-trade

WED = datetime_to_ns(datetime(2024, 3, 6, 15, 0, tzinfo=UTC))


def account(positions: dict[str, tuple[Instrument, str, str]] | None = None, equity: str = "10000") -> AccountState:
    snaps = tuple(PositionSnapshot(s, i.market, Decimal(q), Decimal(px), Decimal(px), Decimal(0), Decimal(0),
                                   i.margin(Decimal(q), Decimal(px)))
                  for s, (i, q, px) in (positions or {}).items())
    return AccountState(WED, "USD", Decimal(equity), Decimal(equity), snaps, peak_equity=Decimal(equity))


def intent(inst: Instrument, side: Side, qty: str, price: str = "100") -> OrderIntent:
    sig = TradeSignal(SignalAction(side.value), inst.symbol, 1.0, strategy_id="s1", signal_id="x")
    return OrderIntent("s1", "x", inst, side, Decimal(qty), Decimal(price), WED, False, sig)


def test_short_stock_refused_unless_shortable() -> None:
    aapl = default_instrument("AAPL", MarketType.STOCK)
    gk = RiskGatekeeper({}, "PAPER")
    d = gk.evaluate(intent(aapl, Side.SELL, "10"), account())
    assert d.status is DecisionStatus.REJECTED
    [reason] = d.reasons
    assert reason.rule == "ShortSelling" and "AAPL is not shortable" in reason.message
    # long 4: the sell is cut to the 4 held
    held = gk.evaluate(intent(aapl, Side.SELL, "10"), account({"AAPL": (aapl, "4", "100")}))
    assert held.status is DecisionStatus.RESIZED and held.quantity == 4
    shortable = replace(aapl, shortable=True)
    ok = gk.evaluate(intent(shortable, Side.SELL, "10"), account())
    assert ok.status is DecisionStatus.APPROVED and ok.quantity == 10
    # the minimal gate applies the same venue rule
    assert MinimalRiskGate().evaluate(intent(aapl, Side.SELL, "10"), account()).status is DecisionStatus.REJECTED
    assert MinimalRiskGate().evaluate(intent(shortable, Side.SELL, "10"), account()).quantity == 10


def test_spot_cannot_be_shorted_but_a_perpetual_can() -> None:
    gk = RiskGatekeeper({}, "PAPER")
    spot = default_instrument("BTC/USDT", MarketType.CRYPTO)
    d = gk.evaluate(intent(spot, Side.SELL, "1"), account())
    assert d.status is DecisionStatus.REJECTED and "spot" in d.reasons[0].message
    assert gk.evaluate(intent(perp(), Side.SELL, "1"), account()).status is DecisionStatus.APPROVED


def test_margin_requirement_caps_an_order_at_the_free_margin() -> None:
    gk = RiskGatekeeper({}, "PAPER")
    p = perp(10)
    # equity 10,000 at 10x: at most 100,000 of notional = 1,000 BTC at 100
    d = gk.evaluate(intent(p, Side.BUY, "1500"), account())
    assert d.status is DecisionStatus.RESIZED and d.quantity == 1000
    assert [r.rule for r in d.reasons] == ["MarginRequirement"]
    # 400 already held (4,000 margin): 600 more
    d2 = gk.evaluate(intent(p, Side.BUY, "1500"), account({p.symbol: (p, "400", "100")}))
    assert d2.quantity == 600


def test_max_margin_utilisation_refuses_an_order_that_would_exceed_it() -> None:
    p = perp(10)
    eur = fx(50)
    gk = RiskGatekeeper({"global": {"max_margin_utilisation": 0.5}}, "PAPER")
    # EUR/USD uses 100,000 x 1.1 x 0.02 = 2,200 of margin; the limit is 5,000: 2,800 left for BTC at 10 each
    acct = account({"EUR/USD": (eur, "100000", "1.1")})
    assert acct.margin_used == Decimal("2200.000") and acct.margin_utilisation == Decimal("0.22")
    d = gk.evaluate(intent(p, Side.BUY, "500"), acct)
    assert d.status is DecisionStatus.RESIZED and d.quantity == 280
    assert d.reasons[-1].rule == "MaxMarginUtilisation" and d.reasons[-1].limit == 0.5
    full = account({"EUR/USD": (eur, "250000", "1.1")})  # 5,500 used: over the limit already
    r = gk.evaluate(intent(p, Side.BUY, "1"), full)
    assert r.status is DecisionStatus.REJECTED and r.reasons[0].rule == "MaxMarginUtilisation"
    # cash holdings use no margin: a spot buy is not limited by it
    spot = default_instrument("BTC/USDT", MarketType.CRYPTO)
    assert gk.evaluate(intent(spot, Side.BUY, "10"), full).status is DecisionStatus.APPROVED
    # and reducing the margined position is always allowed
    out = gk.evaluate(intent(eur, Side.SELL, "250000", "1.1"), full)
    assert out.status is DecisionStatus.APPROVED
    # the risk status (mmats risk, the control API) shows how much of the limit is in use
    [use] = [u for u in gk.utilization(acct).items if u.limit == "max_margin_utilisation"]
    assert use.limit_value == 0.5 and use.current == pytest.approx(0.22)


def test_portfolio_snapshot_reports_margin_used_available_and_utilisation() -> None:
    pf = Portfolio(Decimal(10000), "USD")
    p = perp(5)
    stock = replace(default_instrument("AAPL", MarketType.STOCK), shortable=True)
    for inst in (p, stock, default_instrument("BTC/USD", MarketType.CRYPTO)):
        pf.register(inst)
    pf.apply_fill(Fill("a", p.symbol, Side.BUY, Decimal(1), Decimal(20000), Decimal(0), T0))
    pf.apply_fill(Fill("b", "AAPL", Side.SELL, Decimal(10), Decimal(150), Decimal(0), T0))
    pf.apply_fill(Fill("c", "BTC/USD", Side.BUY, Decimal("0.01"), Decimal(20000), Decimal(0), T0))
    snap = pf.snapshot(T0)
    # perp: 20,000 / 5 = 4,000; AAPL short: 1,500 x 0.5 = 750; spot: none
    assert snap.margin_used == Decimal(4750)
    assert snap.margin_available == snap.equity - Decimal(4750)
    assert snap.margin_utilisation == Decimal(4750) / snap.equity


# --------------------------------------------------------------------------- paper venue and config


def test_paper_venue_pays_funding_and_liquidates_like_the_backtest() -> None:
    from mmats.execution.paper import BarUpdate, PaperExecution
    from mmats.model import Order, OrderType

    p = perp(10, 0.005)
    venue = PaperExecution({p.symbol: p}, Decimal(1000), funding={p.symbol: ConstantFunding(0.0001, 8)})
    buy = Order("s1-entry-1", p.symbol, Side.BUY, Decimal("0.1"), strategy_id="s1", created_ns=T0 - H)
    assert venue.submit(buy, [], T0 - H)
    [entry] = venue.on_bar(BarUpdate(p.symbol, T0 - H, 40000.0, 40100.0, 39900.0, 40000.0, 1.0))
    assert entry.price == Decimal("40000.00")
    assert venue.on_bar(BarUpdate(p.symbol, T0, 40000.0, 40100.0, 39900.0, 40000.0, 1.0)) == []
    funding, canceled = venue.drain_margin()
    [pay] = funding
    assert pay.ts_ns == T0 and pay.amount == Decimal("-0.40000000") and canceled == []  # 0.1 x 40,000 x 0.0001
    # a resting take-profit would reopen nothing after the liquidation: it is canceled with it
    tp = Order("s1-tp-1", p.symbol, Side.SELL, Decimal("0.1"), order_type=OrderType.LIMIT,
               price=Decimal(45000), reduce_only=True, strategy_id="s1", created_ns=T0)
    venue.submit(tp, [], T0)
    # cash = 1000 - 4000 - 0.40 = -3000.40: the level is 3000.40 / 0.0995
    [liq] = venue.on_bar(BarUpdate(p.symbol, T0 + H, 31000.0, 31000.0, 30000.0, 30500.0, 1.0))
    assert float(liq.price) == pytest.approx(3000.40 / 0.0995, abs=0.006)
    assert venue.orders[liq.client_order_id].status.value == "FILLED"
    _, canceled = venue.drain_margin()
    assert [o.client_order_id for o in canceled] == ["s1-tp-1"] and tp.status.value == "CANCELED"
    assert venue.ledger.positions[p.symbol].quantity == 0


def test_system_config_instruments_section() -> None:
    from mmats.system_config import SystemConfig

    feeds = [{"venue": "replay", "market": "crypto", "generated_symbols": ["BTC/USDT:USDT", "ETH/USDT"]},
             {"venue": "stocks", "market": "stock", "generated_symbols": ["AAPL"]}]
    cfg = SystemConfig.model_validate({"feeds": feeds, "instruments": {
        "BTC/USDT:USDT": {"leverage": 5, "maintenance_margin": 0.01, "funding": {"rate": 0.0001}},
        "AAPL": {"shortable": True}}})
    btc = cfg.instruments["BTC/USDT:USDT"].apply(default_instrument("BTC/USDT:USDT", MarketType.CRYPTO))
    assert btc.leverage == 5 and btc.initial_margin == pytest.approx(0.2) and btc.maintenance_margin == 0.01
    assert cfg.instruments["AAPL"].apply(default_instrument("AAPL", MarketType.STOCK)).shortable is True
    bad = [
        ({"ETH/USDT": {"funding": {"rate": 0.0001}}}, "funding is only paid on perpetual swaps"),
        ({"ETH/USDT": {"leverage": 3}}, "leverage is for kinds perpetual and forex"),
        ({"SOL/USDT": {"shortable": True}}, "instruments.SOL/USDT: no feed provides it"),
        ({"AAPL": {"maintenance_margin": 0.3}}, "maintenance_margin is for kind perpetual"),
        ({"BTC/USDT:USDT": {"funding": {"file": "/nonexistent/funding.csv"}}}, "funding file not found"),
    ]
    for instruments, message in bad:
        with pytest.raises(ValueError, match=message):
            SystemConfig.model_validate({"feeds": feeds, "instruments": instruments})


def test_paper_venue_restart_books_journaled_funding_once() -> None:
    from mmats.audit import InMemoryJournal
    from mmats.execution.paper import BarUpdate, PaperExecution
    from mmats.margin import journaled_funding
    from mmats.model import Order

    p = perp(10, 0.005)
    src = {p.symbol: ConstantFunding(0.0001, 8)}
    venue = PaperExecution({p.symbol: p}, Decimal(1000), funding=src)
    venue.submit(Order("s1-entry-1", p.symbol, Side.BUY, Decimal("0.1"), strategy_id="s1", created_ns=T0 - H),
                 [], T0 - H)
    bars = [BarUpdate(p.symbol, T0 + k * H, 40000.0, 40100.0, 39900.0, 40000.0, 1.0) for k in range(-1, 10)]
    journal = InMemoryJournal()
    fills = []
    for b in bars:
        fills += venue.on_bar(b)
        for e in venue.drain_margin()[0]:
            journal.append("funding", e.to_dict(), e.ts_ns)
    paid = journaled_funding(journal.records())
    assert [(x.ts_ns, x.amount) for x in paid] == [(T0, Decimal("-0.40000000")), (T0 + 8 * H, Decimal("-0.40000000"))]
    # a restarted venue gets the fills and the journaled funding back: same cash, and 08:00 is not paid twice
    again = PaperExecution({p.symbol: p}, Decimal(1000), funding=src)
    again.restore([venue.orders["s1-entry-1"]], fills, journaled_funding(journal.records()))
    assert again.ledger.cash == venue.ledger.cash
    again.on_bar(bars[9])  # a replay that resumes at the 08:00 bar
    assert bars[9].ts_ns == T0 + 8 * H and again.drain_margin()[0] == []


def test_live_config_takes_leverage_only_for_ccxt_swaps() -> None:
    from mmats.system_config import SystemConfig

    def live(symbols: list[str], instruments: dict[str, object]) -> SystemConfig:
        return SystemConfig.model_validate({
            "environment": "LIVE",
            "feeds": [{"venue": "bn", "source": "ccxt", "exchange": "binance", "market": "crypto", "symbols": symbols}],
            "venues": [{"name": "bn", "kind": "ccxt", "exchange": "binance", "symbols": symbols}],
            "instruments": instruments})

    assert live(["BTC/USDT:USDT"], {"BTC/USDT:USDT": {"leverage": 5}}).instruments["BTC/USDT:USDT"].leverage == 5
    for symbols, instruments, message in [
        (["BTC/USDT:USDT"], {"BTC/USDT:USDT": {"leverage": 2.5}}, "a venue takes whole numbers"),
        (["BTC/USDT:USDT"], {"BTC/USDT:USDT": {"funding": {"rate": 0.0001}}}, "the venue's account sets margin"),
        (["BTC/USDT"], {"BTC/USDT": {"leverage": 3}}, "only shortable applies"),
        (["BTC/USDT", "ETH/USDT:USDT"], {}, "a venue's symbols are all spot or all swaps"),
    ]:
        with pytest.raises(ValueError, match=message):
            live(symbols, instruments)
