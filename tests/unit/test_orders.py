"""Order state machine, fills, idempotent client ids and brackets (mmats.orders)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmats.errors import IllegalTransition, ValidationError
from mmats.model import Order, OrderStatus, OrderType, Side
from mmats.orders import (
    TRANSITIONS,
    OrderRegistry,
    Overfill,
    apply_fill,
    can_transition,
    children_to_activate,
    client_order_id,
    make_bracket,
    on_child_filled,
    transition,
)

S = OrderStatus


def order(qty: str = "10", side: Side = Side.BUY, **kw: object) -> Order:
    return Order(client_order_id("strat", "sig-1"), "BTC/USDT", side, Decimal(qty), **kw)  # type: ignore[arg-type]


# -- transitions ------------------------------------------------------------------------------------

def test_happy_path_new_to_filled() -> None:
    o = order()
    transition(o, S.SUBMITTED, 1)
    transition(o, S.ACCEPTED, 2, venue_order_id="V1")
    apply_fill(o, Decimal("4"), Decimal("100"), 3)
    assert o.status is S.PARTIALLY_FILLED and o.filled_quantity == 4
    apply_fill(o, Decimal("6"), Decimal("110"), 4)
    assert o.status is S.FILLED and o.avg_fill_price == Decimal("106") and o.updated_ns == 4
    assert o.venue_order_id == "V1"


@pytest.mark.parametrize("current", list(S))
def test_every_edge_not_in_the_table_raises(current: OrderStatus) -> None:
    for new in S:
        o = order()
        o.status = current
        if new is S.FILLED:
            o.filled_quantity = o.quantity  # FILLED also needs the quantity filled
        if can_transition(current, new):
            transition(o, new, 5)
            assert o.status is new
        else:
            with pytest.raises(IllegalTransition):
                transition(o, new, 5)
            assert o.status is current


def test_terminal_states_have_no_exit_and_unknown_resolves_anywhere_the_venue_says() -> None:
    for t in (S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED):
        assert TRANSITIONS[t] == frozenset() and t.is_terminal
    assert TRANSITIONS[S.UNKNOWN] >= {S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED}
    assert S.UNKNOWN in TRANSITIONS[S.SUBMITTED]


def test_filled_status_needs_the_quantity_filled() -> None:
    o = order()
    transition(o, S.SUBMITTED, 1)
    with pytest.raises(IllegalTransition):
        transition(o, S.FILLED, 2)


def test_reject_records_reason() -> None:
    o = order()
    transition(o, S.REJECTED, 1, reason="MaxLeverage")
    assert o.reject_reason == "MaxLeverage"


def test_overfill_and_fill_in_wrong_state_raise() -> None:
    o = order("5")
    with pytest.raises(IllegalTransition):
        apply_fill(o, Decimal(1), Decimal(1), 1)  # NEW cannot fill
    transition(o, S.SUBMITTED, 1)
    apply_fill(o, Decimal(3), Decimal(10), 2)
    with pytest.raises(Overfill):
        apply_fill(o, Decimal("2.0001"), Decimal(10), 3)
    assert o.filled_quantity == 3
    with pytest.raises(IllegalTransition):
        apply_fill(o, Decimal(0), Decimal(10), 3)


@settings(max_examples=200, deadline=None)
@given(qty=st.integers(1, 10_000), fills=st.lists(st.integers(1, 5_000), max_size=30))
def test_filled_quantity_never_exceeds_quantity(qty: int, fills: list[int]) -> None:
    o = order(str(qty))
    transition(o, S.SUBMITTED, 0)
    transition(o, S.ACCEPTED, 0)
    for k, f in enumerate(fills):
        with contextlib.suppress(IllegalTransition):
            apply_fill(o, Decimal(f), Decimal(100 + k), k)
        assert 0 <= o.filled_quantity <= o.quantity
        assert (o.status is S.FILLED) == (o.filled_quantity == o.quantity)


# -- client ids ---------------------------------------------------------------------------------

def test_client_order_id_is_deterministic_short_and_distinct() -> None:
    a = client_order_id("sma_cross v2", "2024-01-01T00:00:00Z", "entry")
    assert a == client_order_id("sma_cross v2", "2024-01-01T00:00:00Z", "entry")
    assert a.startswith("smacrossv2-entry-") and len(a) <= 36
    assert a != client_order_id("sma_cross v2", "2024-01-01T00:00:00Z", "sl")
    assert a != client_order_id("sma_cross v2", "2024-01-01T00:00:01Z", "entry")
    # the prefix is sanitised, the hash is not: these must differ
    assert client_order_id("a/b", "1") != client_order_id("ab", "1")


def test_client_order_id_is_stable_across_processes() -> None:
    code = "from mmats.orders import client_order_id; print(client_order_id('s', 'sig', 'entry'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=str(__import__("pathlib").Path(__file__)
                                                                             .resolve().parents[2]))
    assert out.stdout.strip() == client_order_id("s", "sig", "entry")


def test_duplicated_signal_makes_one_order() -> None:
    reg = OrderRegistry()
    built = []

    def build(cid: str) -> Order:
        o = Order(cid, "ETH/USDT", Side.BUY, Decimal(1), strategy_id="s", signal_id="x")
        built.append(o)
        return o

    first, created = reg.order_for("s", "x", "entry", build)
    transition(first, S.SUBMITTED, 1)
    again, created2 = reg.order_for("s", "x", "entry", build)
    assert created and not created2 and again is first and len(built) == 1 and len(reg) == 1
    assert again.status is S.SUBMITTED
    twin = Order(first.client_order_id, "ETH/USDT", Side.BUY, Decimal(5))
    kept, added = reg.register(twin)
    assert kept is first and not added
    other, created3 = reg.order_for("s", "y", "entry", build)
    assert created3 and other is not first and len(reg) == 2
    assert reg.open_orders() == [first, other] and reg.open_orders("nobody") == []


@settings(max_examples=100, deadline=None)
@given(signals=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=20))
def test_any_sequence_of_retries_gives_one_order_per_signal(signals: list[str]) -> None:
    reg = OrderRegistry()
    for sig in signals:
        reg.order_for("s", sig, "entry", lambda cid: Order(cid, "X", Side.SELL, Decimal(1)))
    assert len(reg) == len(set(signals))


# -- brackets ---------------------------------------------------------------------------------------

def test_bracket_children_are_reduce_only_oco_and_inactive_until_the_entry_fills() -> None:
    entry = Order(client_order_id("s", "b1"), "BTC/USDT", Side.BUY, Decimal(2), strategy_id="s", signal_id="b1",
                  created_ns=7)
    b = make_bracket(entry, Decimal(90), Decimal(120))
    assert b.stop_loss is not None and b.take_profit is not None
    sl, tp = b.stop_loss, b.take_profit
    assert sl.order_type is OrderType.STOP and sl.stop_price == 90 and sl.side is Side.SELL
    assert tp.order_type is OrderType.LIMIT and tp.price == 120 and tp.side is Side.SELL
    assert sl.reduce_only and tp.reduce_only and sl.oco_group == tp.oco_group == entry.client_order_id
    assert sl.parent_id == entry.client_order_id and sl.status is S.NEW
    assert len({entry.client_order_id, sl.client_order_id, tp.client_order_id}) == 3

    transition(entry, S.SUBMITTED, 8)
    transition(entry, S.ACCEPTED, 8)
    apply_fill(entry, Decimal("1.5"), Decimal(100), 9)
    assert children_to_activate(entry, b.children) == []  # partial: not yet
    apply_fill(entry, Decimal("0.5"), Decimal(100), 10)
    active = children_to_activate(entry, b.children)
    assert active == [sl, tp] and all(c.quantity == 2 for c in active)
    for c in active:
        transition(c, S.SUBMITTED, 10)
        transition(c, S.ACCEPTED, 10)
    apply_fill(tp, Decimal(1), Decimal(120), 11)
    assert on_child_filled(tp, b.children) == [sl]
    assert on_child_filled(sl, b.children) == []  # nothing filled on the stop: nothing to cancel


def test_bracket_with_levels_on_the_wrong_side_is_refused() -> None:
    buy = order()
    with pytest.raises(ValidationError):
        make_bracket(buy, Decimal(120), Decimal(90))
    sell = order(side=Side.SELL)
    with pytest.raises(ValidationError):
        make_bracket(sell, Decimal(90), Decimal(120))
    limit_buy = Order("L", "X", Side.BUY, Decimal(1), OrderType.LIMIT, price=Decimal(100))
    with pytest.raises(ValidationError):
        make_bracket(limit_buy, Decimal(101), None)
    only_sl = make_bracket(sell, Decimal(120), None)
    assert only_sl.take_profit is None and only_sl.children == [only_sl.stop_loss]
