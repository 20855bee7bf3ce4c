"""Per-strategy P&L from each strategy's own fills, marked at the account's prices."""

from __future__ import annotations

from decimal import Decimal

from mmats.attribution import StrategyLedgers
from mmats.model import Fill, Side, default_instrument
from mmats.portfolio import Portfolio

BTC = default_instrument("BTC/USDT", "crypto")


def fill(n: int, strategy: str, side: Side, qty: str, price: str, fee: str = "0.1") -> Fill:
    return Fill(f"o{n}", BTC.symbol, side, Decimal(qty), Decimal(price), Decimal(fee), n, strategy_id=strategy,
                fill_id=f"f{n}")


def test_each_strategy_books_its_own_fills_and_marks_at_the_account_price() -> None:
    fills = [fill(1, "a", Side.BUY, "2", "100"), fill(2, "b", Side.SELL, "1", "110"),  # b shorts what a holds
             fill(3, "a", Side.SELL, "1", "120"), fill(4, "b", Side.BUY, "1", "90")]
    led = StrategyLedgers([BTC], "USDT")
    for f in fills:
        led.apply(f)
    st = led.stats({BTC.symbol: Decimal("130")})
    # a: bought 2 at 100, sold 1 at 120 -> realized 20; 1 left at avg 100 marked at 130 -> unrealized 30
    assert (st["a"]["realized_pnl"], st["a"]["unrealized_pnl"], st["a"]["fees"]) == ("20", "30", "0.2")
    assert st["a"]["net_pnl"] == "49.8" and (st["a"]["trades"], st["a"]["wins"]) == (1, 1)
    # b: short 1 at 110, covered at 90 -> realized 20, flat
    assert (st["b"]["realized_pnl"], st["b"]["unrealized_pnl"], st["b"]["positions"]) == ("20", "0", {})
    # The account nets them; here each strategy's P&L adds up to the account's.
    acct = Portfolio(Decimal(1000), "USDT")
    acct.register(BTC)
    for f in fills:
        acct.apply_fill(f)
    acct.mark(BTC.symbol, Decimal("130"))
    total = sum(Decimal(s["realized_pnl"]) + Decimal(s["unrealized_pnl"]) - Decimal(s["fees"]) for s in st.values())
    assert total == acct.equity - acct.initial_cash


def test_a_win_beats_the_entry_and_exit_fees_of_what_it_closes_as_a_round_trip_does() -> None:
    # bought 2 at 100 paying 3, sold 1 at 102 paying 0.5: gross +2 on the unit closed, fees 1.5 + 0.5 = 2 -> no win
    # then sold the other at 104 paying 0.5: gross +4, fees 1.5 + 0.5 -> a win
    led = StrategyLedgers([BTC], "USDT")
    for f in (fill(1, "a", Side.BUY, "2", "100", fee="3"), fill(2, "a", Side.SELL, "1", "102", fee="0.5"),
              fill(3, "a", Side.SELL, "1", "104", fee="0.5")):
        led.apply(f)
    assert (led.counts["a"]["trades"], led.counts["a"]["wins"]) == (2, 1)
    # the account's round trip over the same fills is one trade, net of every fee: 6 - 4 > 0, a win
    pf = Portfolio(Decimal(10_000), "USDT")
    pf.register(BTC)
    trips = [t for f in (fill(1, "a", Side.BUY, "2", "100", fee="3"), fill(2, "a", Side.SELL, "1", "102", fee="0.5"),
                         fill(3, "a", Side.SELL, "1", "104", fee="0.5")) if (t := pf.apply_fill(f)) is not None]
    assert len(trips) == 1 and trips[0].pnl == Decimal("2")
