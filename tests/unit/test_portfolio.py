from __future__ import annotations

from decimal import Context, Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from mmats.model import Fill, Instrument, MarketType, Side
from mmats.portfolio import Portfolio

INST = Instrument("BTC/USDT", MarketType.CRYPTO, "USDT", 2, 4, Decimal("0.0001"))
ETH = Instrument("ETH/USDT", MarketType.CRYPTO, "USDT", 2, 4, Decimal("0.0001"))


def fill(side: Side, qty: str, price: str, fee: str = "0", sym: str = "BTC/USDT", ts: int = 0,
         strategy: str = "s1") -> Fill:
    return Fill("c", sym, side, Decimal(qty), Decimal(price), Decimal(fee), ts, strategy_id=strategy)


def new() -> Portfolio:
    p = Portfolio(Decimal(10_000), "USDT")
    p.register(INST)
    p.register(ETH)
    return p


def test_long_round_trip_realizes_pnl_minus_fees() -> None:
    p = new()
    assert p.apply_fill(fill(Side.BUY, "2", "100", "0.2", ts=1)) is None
    trade = p.apply_fill(fill(Side.SELL, "2", "110", "0.22", ts=2))
    assert trade is not None and trade.side == "LONG"
    assert trade.pnl == float(Decimal(20) - Decimal("0.42")) and trade.fees == 0.42
    assert p.cash == Decimal(10_000) + Decimal(20) - Decimal("0.42")
    assert p.realized_pnl == Decimal(20) and p.fees == Decimal("0.42")


def test_short_and_flip_through_flat() -> None:
    p = new()
    p.apply_fill(fill(Side.SELL, "1", "100"))
    pos = p.positions["BTC/USDT"]
    assert pos.quantity == -1 and pos.is_short
    trade = p.apply_fill(fill(Side.BUY, "3", "90"))  # closes the short (+10) and opens 2 long
    assert trade is not None and trade.side == "SHORT" and trade.pnl == 10.0
    assert pos.quantity == 2 and pos.avg_price == Decimal(90)


def test_average_entry_and_partial_close() -> None:
    p = new()
    p.apply_fill(fill(Side.BUY, "1", "100"))
    p.apply_fill(fill(Side.BUY, "1", "120"))
    pos = p.positions["BTC/USDT"]
    assert pos.avg_price == Decimal(110)
    p.apply_fill(fill(Side.SELL, "1", "130"))
    assert pos.realized_pnl == Decimal(20) and pos.quantity == 1 and pos.avg_price == Decimal(110)


def test_attribution_by_strategy_and_market() -> None:
    p = new()
    p.apply_fill(fill(Side.BUY, "1", "100", "1", strategy="a"))
    p.apply_fill(fill(Side.SELL, "1", "105", "1", strategy="b"))
    att = p.attribution()
    assert att["by_strategy"]["b"]["realized_pnl"] == "5"
    assert att["by_strategy"]["a"]["fees"] == "1"
    assert att["by_market"]["crypto"]["realized_pnl"] == "5"


def test_snapshot_exposure_and_drawdown() -> None:
    p = new()
    p.apply_fill(fill(Side.BUY, "10", "100"))
    p.mark("BTC/USDT", Decimal(110))
    s1 = p.snapshot(1)
    assert s1.equity == Decimal(10_100) and s1.gross_exposure == Decimal(1100)
    p.mark("BTC/USDT", Decimal(90))
    s2 = p.snapshot(2)
    assert s2.peak_equity == Decimal(10_100) and s2.drawdown < 0
    assert s2.position("BTC/USDT") is not None and s2.position("ETH/USDT") is None


fills_strategy = st.lists(
    st.tuples(
        st.sampled_from(["BTC/USDT", "ETH/USDT"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 50_000).map(lambda q: Decimal(q) / 10_000),
        st.integers(1_000, 200_000).map(lambda p: Decimal(p) / 100),
        st.integers(0, 500).map(lambda f: Decimal(f) / 100),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(fills_strategy, st.integers(1_000, 200_000))
def test_ledger_invariants(fills: list[tuple[str, Side, Decimal, Decimal, Decimal]], mark: int) -> None:
    p = new()
    fees_before = Decimal(0)
    for sym, side, q, px, fee in fills:
        p.mark(sym, px)
        equity_before = p.equity
        p.apply_fill(Fill("c", sym, side, q, px, fee, 0))
        # A fill at the mark price changes equity by exactly -fee: fees only ever reduce equity.
        assert p.equity == equity_before - fee
        fees_before += fee
    price = Decimal(mark) / 100
    for sym in ("BTC/USDT", "ETH/USDT"):
        p.mark(sym, price)
    marked = sum((pos.quantity * pos.last_price for pos in p.positions.values()), Decimal(0))
    assert p.equity == p.cash + marked
    # Exact but for the average entry price, which is kept to 20 decimals.
    assert abs(p.equity - (p.initial_cash + p.realized_pnl + p.unrealized_pnl - p.fees)) < Decimal("1e-12")
    assert p.fees == fees_before
    # Closing every position at the mark realizes exactly its unrealized P&L.
    unrealized = p.unrealized_pnl
    realized = p.realized_pnl
    for sym, pos in p.positions.items():
        if pos.quantity:
            side = Side.SELL if pos.quantity > 0 else Side.BUY
            p.apply_fill(Fill("x", sym, side, abs(pos.quantity), price, Decimal(0), 1))
    with localcontext(Context(prec=60)):
        assert p.realized_pnl - realized == unrealized
    assert all(pos.quantity == 0 for pos in p.positions.values())
