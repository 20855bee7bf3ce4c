"""One account across currencies: base-currency equity and P&L computed by hand, to the cent."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmats.fx import FxError, FxRates
from mmats.model import Fill, Instrument, MarketType, Side, default_instrument
from mmats.portfolio import Portfolio

BTC = default_instrument("BTC/USDT", MarketType.CRYPTO)
EURUSD = default_instrument("EUR/USD", MarketType.FOREX)
USDJPY = default_instrument("USD/JPY", MarketType.FOREX)
EURJPY = default_instrument("EUR/JPY", MarketType.FOREX)
AAPL = default_instrument("AAPL", MarketType.STOCK)
CENT = Decimal("0.01")
D = Decimal


def cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_EVEN)


def fill(sym: str, side: Side, qty: str, price: str, fee: str = "0", fee_ccy: str | None = None,
         ts: int = 0) -> Fill:
    return Fill("c", sym, side, D(qty), D(price), D(fee), ts, fee_currency=fee_ccy)


def mixed_account() -> Portfolio:
    fx = FxRates("USD", feed_symbols=["BTC/USDT", "EUR/USD", "USD/JPY", "AAPL"])
    fx.require(["USDT", "USD", "JPY"])
    p = Portfolio(D(100_000), fx=fx)
    for inst in (BTC, EURUSD, USDJPY, AAPL):
        p.register(inst)
    return p


def test_four_markets_three_currencies_equity_and_pnl_in_usd_to_the_cent() -> None:
    p = mixed_account()
    p.apply_fill(fill("BTC/USDT", Side.BUY, "0.5", "60000", "30"))  # fee in USDT
    p.apply_fill(fill("EUR/USD", Side.BUY, "10000", "1.0850"))  # forex: the spread is the cost
    p.apply_fill(fill("USD/JPY", Side.BUY, "1000", "150.00", "300"))  # fee in JPY, 300/150 = 2 USD
    p.apply_fill(fill("AAPL", Side.BUY, "20", "190.00", "1.00"))
    p.apply_fill(fill("BTC/USDT", Side.SELL, "0.2", "62000", "12.4"))  # realizes 400 USDT
    p.apply_fill(fill("USD/JPY", Side.SELL, "500", "152.00", "152"))  # realizes 1000 JPY at 1/152
    for sym, px in (("BTC/USDT", "61000"), ("EUR/USD", "1.0900"), ("USD/JPY", "151.00"), ("AAPL", "195.00")):
        p.on_price(sym, D(px))

    # Hand computation. Cash per currency:
    usd = D(100_000) - D(10_000) * D("1.0850") - 20 * D(190) - 1  # 85,349
    usdt = -D("0.5") * 60_000 - 30 + D("0.2") * 62_000 - D("12.4")  # -17,642.4
    jpy = -D(1000) * 150 - 300 + 500 * 152 - 152  # -74,452
    assert p.cash_by_currency() == {"USD": usd, "JPY": jpy, "USDT": usdt}
    assert (usd, usdt, jpy) == (D(85_349), D("-17642.4"), D(-74_452))
    with localcontext(Context(prec=60)):
        jpy_rate = 1 / D(151)  # USD/JPY at 151: one yen is 1/151 dollar; USDT/USD = 1 by default
        positions_usd = (D("0.3") * 61_000 + D(10_000) * D("1.09") + 500 * D(151) * jpy_rate + 20 * D(195))
        equity = usd + usdt + jpy * jpy_rate + positions_usd
        realized = D(400) + D(1000) / 152
        unrealized = D(300) + D(50) + 500 * (D(151) - 150) * jpy_rate + 20 * 5
        fees = D(30) + D(300) / 150 + 1 + D("12.4") + D(152) / 152
        # Realized yen and yen fees are worth more or less dollars than when booked: 548 JPY now at 1/151.
        fx_pnl = (D(1000) - 300 - 152) * jpy_rate - (D(1000) / 152 - D(300) / 150 - D(152) / 152)
    assert cents(equity) == D("100813.54")  # 85,349 - 17,642.4 + 18,300 + 10,900 + 3,900 + 1,048 / 151
    assert cents(p.equity) == D("100813.54")
    assert cents(p.realized_pnl) == cents(realized) == D("406.58")
    assert cents(p.unrealized_pnl) == cents(unrealized) == D("453.31")
    assert p.fees == fees == D("46.4")
    assert cents(p.fx_pnl) == cents(fx_pnl) == D("0.05")
    # The two ledger identities, in base currency.
    assert abs(p.equity - (p.initial_cash + p.realized_pnl + p.unrealized_pnl - p.fees + p.fx_pnl)) < D("1e-12")
    snap = p.snapshot(1)
    assert snap.currency == "USD" and snap.equity == p.equity
    with localcontext(Context(prec=60)):
        assert snap.cash == p.cash == usd + usdt + jpy * jpy_rate
        assert snap.equity == snap.cash + sum((x.value_base for x in snap.positions), D(0))
    assert cents(snap.gross_exposure) == D("33600.00")  # 18,300 + 10,900 + 500 + 3,900
    assert snap.cash_by_currency["JPY"] == jpy and snap.fx_rates["JPY"] == jpy_rate
    jp = snap.position("USD/JPY")
    assert jp is not None and jp.quote_currency == "JPY" and jp.unrealized_pnl == D(500)  # in yen
    assert p.trades == [] or all(t.symbol for t in p.trades)


def test_fee_charged_in_another_currency_is_converted_at_its_rate() -> None:
    fx = FxRates("USD", configured={"BNB/USD": "600"}, feed_symbols=["BTC/USDT", "USD/JPY"])
    fx.require(["USDT", "JPY", "BNB"])
    p = Portfolio(D(10_000), fx=fx)
    p.register(BTC)
    p.register(USDJPY)
    p.apply_fill(fill("BTC/USDT", Side.BUY, "0.1", "50000", "0.005", "BNB"))  # 0.005 BNB x 600 = 3 USD
    assert p.cash_by_currency() == {"USD": D(10_000), "BNB": D("-0.005"), "USDT": D(-5000)}
    assert p.fees == D(3) and p.positions["BTC/USDT"].fees == D(3)  # USDT at par
    p.apply_fill(fill("USD/JPY", Side.BUY, "100", "160", "0.5", "USD"))  # a USD fee on a yen pair
    assert p.fees == D("3.5")
    assert p.positions["USD/JPY"].fees == D(80)  # the position's own fees are in its quote currency (yen)
    assert p.balances["JPY"] == D(-16_000) and p.balances["USD"] == D("9999.5")
    p.on_price("BTC/USDT", D(50_000))
    p.on_price("USD/JPY", D(160))
    assert p.equity == D(10_000) - D("3.5")  # fills at the mark: equity moves by the fees only
    with pytest.raises(FxError, match="XRP"):
        p.apply_fill(fill("BTC/USDT", Side.BUY, "0.1", "50000", "1", "XRP"))


def test_a_feed_rate_moves_the_value_of_a_position_quoted_in_that_currency() -> None:
    fx = FxRates("USD", feed_symbols=["EUR/JPY", "USD/JPY"])
    fx.require(["JPY"])
    p = Portfolio(D(100_000), fx=fx)
    p.register(EURJPY)
    p.on_price("USD/JPY", D(150))  # a rate-only feed: the account does not trade USD/JPY
    p.apply_fill(fill("EUR/JPY", Side.BUY, "10000", "160.00"))
    p.on_price("EUR/JPY", D("162.00"))
    # 10,000 x (162 - 160) = 20,000 JPY at 1/150
    assert cents(p.equity) == cents(D(100_000) + D(20_000) / 150) == D("100133.33")
    p.on_price("USD/JPY", D(125))  # the yen strengthens: the same yen P&L is worth more dollars
    assert cents(p.equity) == D("100160.00")
    assert cents(p.snapshot(2).unrealized_pnl) == D("160.00")


def test_missing_rate_is_an_error_naming_the_currency_never_one() -> None:
    fx = FxRates("USD", feed_symbols=["EUR/JPY"])
    with pytest.raises(FxError, match=r"JPY.*USD/JPY or JPY/USD.*fx_rates"):
        fx.require(["JPY"])
    pending = FxRates("USD", feed_symbols=["USD/JPY"])
    pending.require(["JPY"])
    with pytest.raises(FxError, match="has not delivered a price"):
        pending.rate("JPY")
    pf = Portfolio(D(1000), "USD")
    with pytest.raises(FxError, match="JPY .*instrument EUR/JPY"):  # refused before any fill
        pf.register(EURJPY)


def test_rate_chains_inverted_and_crossed() -> None:
    fx = FxRates("EUR", configured={"GBP/USD": "1.25"}, feed_symbols=["EUR/USD", "USD/JPY"])
    fx.require(["USD", "JPY", "GBP", "USDT"])
    fx.on_price("EUR/USD", D("1.25"))
    fx.on_price("USD/JPY", D("150"))
    assert fx.rate("USD") == D("0.8")
    assert fx.rate("GBP") == D(1)  # 1.25 USD, each 0.8 EUR
    assert fx.rate("JPY") * 150 == D("0.8")
    assert fx.rate("USDT") == D("0.8")
    assert fx.sources()["JPY"] == "feed USD/JPY (inverted) x feed EUR/USD (inverted)"
    assert fx.notes() and "USDT/USD = 1 assumed" in fx.notes()[0]


def test_configured_rate_a_feed_carries_or_nothing_needs_is_refused() -> None:
    from mmats.errors import ConfigError
    from mmats.fx import plan_fx

    with pytest.raises(ConfigError, match="a feed carries USD/JPY"):
        plan_fx("USD", ["JPY"], ["USD/JPY"], {"JPY/USD": 0.0067})
    with pytest.raises(ConfigError, match="EUR/USD: no instrument needs it"):
        plan_fx("USD", ["USD"], ["AAPL"], {"EUR/USD": 1.08})
    with pytest.raises(ConfigError, match="positive"):
        plan_fx("USD", ["EUR"], [], {"EUR/USD": -1})
    with pytest.raises(ConfigError, match="BASE/QUOTE"):
        plan_fx("USD", ["EUR"], [], {"EURO": 1.1})


pairs = st.sampled_from(["BTC/USDT", "USD/JPY", "EUR/USD", "AAPL"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(pairs, st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 400),
                          st.integers(90, 110), st.integers(0, 300)), max_size=30),
       st.integers(90, 110))
def test_ledger_identities_hold_across_currencies(fills: list[tuple[str, Side, int, int, int]], last: int) -> None:
    base_px = {"BTC/USDT": D(60_000), "USD/JPY": D(150), "EUR/USD": D("1.1"), "AAPL": D(200)}
    p = mixed_account()
    for sym, side, qty, move, fee in fills:
        px = base_px[sym] * move / 100
        p.on_price(sym, px)
        before = p.equity
        f = Fill("c", sym, side, D(qty) / 100, px, D(fee) / 100, 0)
        p.apply_fill(f)
        rate = p.fx.rate(p.quote_currency(sym))
        with localcontext(Context(prec=60)):
            assert abs(p.equity - (before - f.fee * rate)) < D("1e-40")  # at the mark a fill costs its fee only
    for sym, px in base_px.items():
        p.on_price(sym, px * last / 100)
    with localcontext(Context(prec=60)):
        marked = sum((pos.quantity * pos.last_price * p.fx.rate(p.quote_currency(s))
                      for s, pos in p.positions.items()), D(0))
        assert p.equity == p.cash + marked
        identity = p.initial_cash + p.realized_pnl + p.unrealized_pnl - p.fees + p.fx_pnl
    assert abs(p.equity - identity) < D("1e-12")


def test_single_currency_portfolio_is_unchanged() -> None:
    p = Portfolio(D(1000), "USDT")
    inst = Instrument("X/USDT", MarketType.CRYPTO, "USDT", 2, 2, D("0.01"))
    p.register(inst)
    p.apply_fill(fill("X/USDT", Side.BUY, "1", "100", "1"))
    assert p.currency == "USDT" and p.cash == D(899) and p.fx_pnl == 0
    assert p.snapshot(0).fx_rates == {}


def usd_account_trading_usdjpy() -> Portfolio:
    """100,000 USD, USD/JPY at 150 from its feed (the JPY rate follows it)."""
    fx = FxRates("USD", feed_symbols=["USD/JPY"])
    fx.require(["JPY"])
    p = Portfolio(D(100_000), fx=fx)
    p.register(USDJPY)
    p.on_price("USD/JPY", D(150))
    return p


def test_cash_follows_every_balance_and_rate_change_and_is_reused_only_when_neither_moved() -> None:
    p = usd_account_trading_usdjpy()
    assert p.cash == D(100_000)
    p.apply_fill(fill("USD/JPY", Side.SELL, "1000", "150.00"))  # short 1,000 units: 150,000 JPY of cash
    after_fill = p.cash
    assert after_fill == D(100_000) + D(150_000) / 150
    assert p.cash is after_fill  # nothing moved: the same sum
    p.on_price("USD/JPY", D(125))  # a rate moved
    assert p.cash == D(100_000) + D(150_000) / 125
    p.on_price("USD/JPY", D("125.000"))  # an equal price in another object: the rates are recomputed, same value
    assert p.cash == D(100_000) + D(150_000) / 125
    p.book_funding("USD/JPY", D("-300"), "s")  # a balance moved (JPY, as the pair is quoted)
    assert p.cash == D(100_000) + D(149_700) / 125


def test_snapshot_cash_by_currency_rates_and_translation_follow_fills_rates_and_funding() -> None:
    p = usd_account_trading_usdjpy()
    first = p.snapshot(1)
    assert first.cash_by_currency == {"USD": D(100_000)} and first.fx_rates == {"JPY": p.fx.rate("JPY")}
    assert p.snapshot(2).cash_by_currency is first.cash_by_currency  # nothing moved: the same figures
    p.apply_fill(fill("USD/JPY", Side.SELL, "1000", "150.00"))  # the balances moved
    s = p.snapshot(3)
    assert s.cash_by_currency == p.cash_by_currency() and set(s.cash_by_currency) == {"USD", "JPY"}
    p.on_price("USD/JPY", D(125))  # a rate moved: the rates and the translation P&L, not the balances
    r = p.snapshot(4)
    assert r.fx_rates == {"JPY": p.fx.rate("JPY")} != s.fx_rates
    assert r.cash_by_currency == s.cash_by_currency and r.fx_pnl == p.fx_pnl
    p.book_funding("USD/JPY", D("-300"), "s")  # the balances moved through funding
    f = p.snapshot(5)
    assert f.cash_by_currency == p.cash_by_currency() != r.cash_by_currency
    assert f.fx_pnl == p.fx_pnl
    p.on_price("USD/JPY", D(100))  # the funding paid in JPY is worth more dollars now
    assert p.snapshot(6).fx_pnl == p.fx_pnl != 0


def test_a_mirror_without_records_books_the_same_cash_positions_and_totals() -> None:
    """``records=False`` (the paper venue's mirror, the per-strategy books) skips the round trips and the
    attribution tables, nothing the mirror's readers use."""
    fills = [fill("BTC/USDT", Side.BUY, "0.5", "40000", "2"), fill("USD/JPY", Side.SELL, "1000", "150.00", "1"),
             fill("EUR/USD", Side.BUY, "2000", "1.10", "0.5", "USD"), fill("BTC/USDT", Side.SELL, "0.8", "41000", "3"),
             fill("USD/JPY", Side.BUY, "1500", "148.00"), fill("AAPL", Side.BUY, "10", "190", "1"),
             fill("EUR/USD", Side.SELL, "2000", "1.12"), fill("BTC/USDT", Side.BUY, "0.3", "39000", "1")]
    full, mirror = mixed_account(), mixed_account()
    mirror.records = False  # as Portfolio(..., records=False) builds it
    for p in (full, mirror):
        p.on_price("EUR/USD", D("1.10"))
        p.on_price("BTC/USDT", D("40000"))
        for f in fills:
            p.apply_fill(f)
    assert mirror.balances == full.balances and mirror.cash == full.cash and mirror.equity == full.equity
    assert {s: (p.quantity, p.avg_price, p.realized_pnl, p.fees) for s, p in mirror.positions.items()} == \
        {s: (p.quantity, p.avg_price, p.realized_pnl, p.fees) for s, p in full.positions.items()}
    assert mirror.realized_pnl == full.realized_pnl != 0 and mirror.fees == full.fees
    assert len(full.trades) == 4 and full.realized_by_strategy and full.fx_pnl != 0  # flips and closes happened
    assert not mirror.trades and not mirror.realized_by_strategy and not mirror.fees_by_market
    assert Portfolio(D(1), records=False).records is False
