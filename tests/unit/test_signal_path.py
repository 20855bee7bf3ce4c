"""The live gateway sizes each strategy on its own position plus its market orders still on their way."""

from __future__ import annotations

from decimal import Decimal

from mmats.engine.signal_path import PendingSignal, SignalPath, remark
from mmats.model import AccountState, MarketType, PositionSnapshot, Side, SignalAction, TradeSignal, default_instrument
from mmats.risk.gatekeeper import RiskGatekeeper, system_risk_config

SYM = "BTC/USDT"
INST = {SYM: default_instrument(SYM, MarketType.CRYPTO)}


def _gateway() -> SignalPath:
    gate = RiskGatekeeper(system_risk_config(None), "PAPER", observe_equity=False)
    return SignalPath(gate, INST, allocation=0.1, advisory=False)


def _account(qty: str, ts: int) -> AccountState:
    q = Decimal(qty)
    price = Decimal(100)
    cash = Decimal(100_000) - q * price
    positions = (PositionSnapshot(SYM, MarketType.CRYPTO, q, price, price, Decimal(0), Decimal(0)),) if q else ()
    return AccountState(ts, "USD", cash, Decimal(100_000), positions, peak_equity=Decimal(100_000),
                        gross_exposure=abs(q) * price)


def _signal(strategy: str, action: SignalAction, ts: int) -> PendingSignal:
    sig = TradeSignal(action, SYM, 1.0, strategy_id=strategy, signal_id=f"{strategy}{ts}")
    return PendingSignal(strategy, ts, 100.0, sig)


def test_a_strategy_closing_sells_only_what_it_holds() -> None:
    gw = _gateway()
    # a and b each hold 100 (10% of 100,000 at 100): the account holds 200
    gw.on_account(_account("200", 1), 1, held={("a", SYM): 100.0, ("b", SYM): 100.0})
    out = gw.on_signals([_signal("a", SignalAction.CLOSE, 1)])
    [(order, _)] = out.submits
    assert order.side is Side.SELL and order.quantity == Decimal(100)  # not the account's 200


def test_a_signal_counts_the_market_order_still_on_its_way() -> None:
    gw = _gateway()
    gw.on_account(_account("0", 1), 1, held={})
    [(buy, _)] = gw.on_signals([_signal("a", SignalAction.BUY, 1)]).submits
    assert buy.side is Side.BUY and buy.quantity == Decimal(100)
    # the next bar's CLOSE arrives before the BUY's fill is booked: it must still close the 100
    gw.on_account(_account("0", 2), 2, held={})
    [(close, _)] = gw.on_signals([_signal("a", SignalAction.CLOSE, 2)]).submits
    assert close.side is Side.SELL and close.quantity == Decimal(100)
    # both done: the position is what the fills left (flat), nothing is counted twice
    gw.on_account(_account("0", 3), 3, held={}, done=[buy.client_order_id, close.client_order_id])
    assert gw.state()["orders_in_flight"] == 0
    assert gw.on_signals([_signal("a", SignalAction.CLOSE, 3)]).submits == []  # nothing left to close


def test_a_partly_filled_market_order_counts_only_its_rest_as_on_the_way() -> None:
    """A volume-capped market order fills in parts: what it filled is already in ``held``, so only the
    rest may be counted again, or the next CLOSE would sell the filled part twice."""
    gw = _gateway()
    gw.on_account(_account("0", 1), 1, held={})
    [(buy, _)] = gw.on_signals([_signal("a", SignalAction.BUY, 1)]).submits
    assert buy.quantity == Decimal(100)
    # 40 of the 100 filled (booked in held), 60 still working
    gw.on_account(_account("40", 2), 2, held={("a", SYM): 40.0}, partial={buy.client_order_id: 40.0})
    [(close, _)] = gw.on_signals([_signal("a", SignalAction.CLOSE, 2)]).submits
    assert close.side is Side.SELL and close.quantity == Decimal(100)  # 40 held + 60 on the way, not 140


def test_the_live_path_sizes_at_once_without_waiting_for_the_account_of_the_bar() -> None:
    """Exact replays wait for the account as of the signal's bar; the live path sizes on the account it
    holds plus the orders on their way, so a signal costs no round trip to the portfolio."""
    exact = _gateway()
    exact.on_account(_account("0", 1), 1, held={})
    assert exact.on_signals([_signal("a", SignalAction.BUY, 5)]).submits == []  # waits for the account of bar 5
    assert exact.waiting == 1
    [(late, _)] = exact.on_account(_account("0", 5), 5, held={}).submits
    assert late.quantity == Decimal(100)

    live = _gateway()
    live.await_account = False
    assert live.on_signals([_signal("a", SignalAction.BUY, 5)]).submits == []  # no account at all yet: waits
    [(buy, _)] = live.on_account(_account("0", 1), 1, held={}).submits  # the first account releases it
    assert buy.side is Side.BUY and buy.quantity == Decimal(100)
    # bar 6's CLOSE arrives while the account is still as of bar 1 and the BUY not filled: it goes at
    # once, and closes what the BUY on its way will hold
    [(close, _)] = live.on_signals([_signal("a", SignalAction.CLOSE, 6)]).submits
    assert live.waiting == 0
    assert close.side is Side.SELL and close.quantity == Decimal(100)


def test_orders_on_their_way_count_for_their_own_strategy_only_and_expire_oldest_first(monkeypatch) -> None:
    """The in-flight orders are kept per (strategy, symbol): b's order never sizes a's signal, and an
    order whose done notice was lost stops counting after INFLIGHT_EXPIRY_S while younger ones stay."""
    import mmats.engine.signal_path as sp

    clock = [1000.0]
    monkeypatch.setattr(sp.time, "monotonic", lambda: clock[0])
    gw = _gateway()
    gw.on_account(_account("0", 1), 1, held={})
    [(buy_b, _)] = gw.on_signals([_signal("b", SignalAction.BUY, 1)]).submits
    clock[0] += sp.INFLIGHT_EXPIRY_S - 1
    [(buy_a, _)] = gw.on_signals([_signal("a", SignalAction.BUY, 1)]).submits
    assert buy_a.quantity == buy_b.quantity == Decimal(100)  # a did not count b's 100 as its own
    assert gw.state()["orders_in_flight"] == 2
    clock[0] += 2  # b's order is past the expiry, a's is not
    gw.on_account(_account("0", 3), 3, held={})
    assert gw.state()["orders_in_flight"] == 1
    [(close_a, _)] = gw.on_signals([_signal("a", SignalAction.CLOSE, 3)]).submits
    assert close_a.side is Side.SELL and close_a.quantity == Decimal(100)  # a's own order still counts
    assert gw.on_signals([_signal("b", SignalAction.CLOSE, 3)]).submits == []  # b's expired: nothing held


def test_remarking_at_the_prices_held_gives_the_account_itself_and_other_prices_revalue_it() -> None:
    account = _account("2", 1)
    assert remark(account, {SYM: Decimal("100.00")}) is account  # 100.00 == 100: the ledger's own figures
    assert remark(account, {"ETH/USDT": Decimal(7)}) is account  # a symbol the account does not hold
    moved = remark(account, {SYM: Decimal(110)})
    assert moved is not account
    assert moved.positions[0].last_price == Decimal(110)
    assert moved.equity == account.cash + 2 * Decimal(110)
    assert moved.unrealized_pnl == 2 * Decimal(10) and moved.gross_exposure == Decimal(220)
