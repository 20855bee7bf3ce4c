"""The live topology (mmats.engine.topology) and the typed messages between actors (mmats.messages)."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from mmats.engine.signal_path import PendingSignal
from mmats.engine.topology import EDGES, GATEKEEPER, PORTFOLIO, ROUTER, Topology, assign_hosts, describe
from mmats.messages import AccountSnapshot, BarBatch, FillBatch, OrderCommands, OrderOutcomes, SignalBatch
from mmats.model import AccountState, Order, OrderType, Side, SignalAction, TradeSignal


def _topology(per_actor: int = 1, risk_bars: bool = False) -> Topology:
    t = Topology(["binance", "oanda"], risk_reads_bars=risk_bars, lockstep=True)
    strategies = [("a", "binance"), ("b", "binance"), ("c", "binance"), ("fx", "oanda")]
    hosts = assign_hosts(strategies, per_actor)
    for sid, venue in strategies:
        t.place(sid, hosts[sid], venue, ["EUR/USD"] if venue == "oanda" else ["BTC/USDT"])
    return t


def test_one_actor_per_strategy_by_default_and_pools_per_feed_in_config_order() -> None:
    pairs = [("a", "x"), ("b", "y"), ("c", "x"), ("d", "x"), ("e", "x")]
    assert assign_hosts(pairs, 1) == {s: s for s, _ in pairs}
    pooled = assign_hosts(pairs, 2)
    assert pooled == {"a": "pool-x-0", "c": "pool-x-0", "d": "pool-x-1", "e": "pool-x-1", "b": "pool-y-0"}
    with pytest.raises(ValueError, match="at least 1"):
        assign_hosts(pairs, 0)


def test_every_actor_gets_its_peers_from_the_one_description() -> None:
    t = _topology(per_actor=3)
    hosts = t.hosts()
    assert hosts == {"host:pool-binance-0": ["a", "b", "c"], "host:pool-oanda-0": ["fx"]}
    gk = t.wiring(GATEKEEPER)
    assert (gk.router, gk.portfolio) == (ROUTER, PORTFOLIO)
    assert gk.strategies == {"a": "host:pool-binance-0", "b": "host:pool-binance-0", "c": "host:pool-binance-0",
                             "fx": "host:pool-oanda-0"}
    router = t.wiring(ROUTER)
    assert (router.gatekeeper, router.portfolio, router.feed) == (GATEKEEPER, PORTFOLIO, "feed:binance")
    assert gk.strategies == t.wiring(PORTFOLIO).strategies
    assert router.strategies == {}  # a strategy hears of its orders from the portfolio only
    pool = t.wiring("host:pool-oanda-0")
    assert (pool.gatekeeper, pool.feed, pool.strategies) == (GATEKEEPER, "feed:oanda", {"fx": "host:pool-oanda-0"})
    feed = t.wiring("feed:binance")
    assert set(feed.subscribers) == {"router"} and feed.heartbeat == GATEKEEPER
    assert t.nodes() == ["portfolio", "feed:binance", "feed:oanda", "router", "gatekeeper", "host:pool-binance-0",
                         "host:pool-oanda-0"]


def test_the_gatekeeper_subscribes_to_bars_only_when_the_risk_config_reads_them() -> None:
    assert "gatekeeper" not in _topology().wiring("feed:oanda").subscribers
    assert _topology(risk_bars=True).wiring("feed:oanda").subscribers["gatekeeper"].handle == GATEKEEPER


def test_a_strategy_moved_to_a_new_host_is_addressed_there_and_a_removed_one_nowhere() -> None:
    t = _topology()
    t.place("a", "a-v2", "binance", ["BTC/USDT"])
    t.remove("b")
    assert t.wiring(GATEKEEPER).strategies == {"a": "host:a-v2", "c": "host:c", "fx": "host:fx"}
    with pytest.raises(ValueError, match="no node 'host:b'"):
        t.wiring("host:b")
    with pytest.raises(ValueError, match="no feed 'kraken'"):
        t.place("k", "k", "kraken", ["X"])


def test_a_wiring_resolves_names_to_handles() -> None:
    handles = {GATEKEEPER: object(), ROUTER: object(), PORTFOLIO: object(), "feed:binance": object(),
               "host:a": object(), "host:b": object(), "host:c": object(), "host:fx": object()}
    w = _topology().wiring(ROUTER).resolve(handles.__getitem__)
    assert w.gatekeeper is handles[GATEKEEPER] and w.feed is handles["feed:binance"]
    assert _topology().wiring(GATEKEEPER).resolve(handles.__getitem__).strategies["fx"] is handles["host:fx"]
    fw = _topology().wiring("feed:binance").resolve(handles.__getitem__)
    assert fw.subscribers["router"].handle is handles[ROUTER]


def test_the_edges_name_every_message_type_and_their_receivers() -> None:
    messages = " ".join(e.message for e in EDGES)
    for name in ("BarBatch", "SignalBatch", "OrderCommands", "FillBatch", "AccountSnapshot", "OrderOutcomes",
                 "FeedStatus"):
        assert name in messages
    # a strategy host hears of its orders from one sender
    assert [e.sender for e in EDGES if e.receiver == "host" and e.method == "on_orders"] == [PORTFOLIO]
    lines = describe()
    assert "OrderCommands -> router.apply_commands" in lines[GATEKEEPER]
    assert any(line.startswith("FillBatch -> portfolio.on_fills") for line in lines[ROUTER])


def test_messages_survive_pickling_and_refuse_mutation() -> None:
    order = Order("c1", "BTC/USDT", Side.BUY, Decimal("0.5"), OrderType.MARKET, strategy_id="a", signal_id="s")
    account = AccountState(1, "USD", Decimal(100), Decimal(100))
    signal = PendingSignal("a", 5, 10.0, TradeSignal(SignalAction.BUY, "BTC/USDT", 1.0))
    msgs = [BarBatch([("BTC/USDT", 5, 1.0, 2.0, 0.5, 1.5, 10.0)], 5, True),
            SignalBatch(("a", "b"), 5, [signal]), OrderCommands([("a", "BTC/USDT")], [(order, [])], 5, 5, 7),
            FillBatch([], 5, {"BTC/USDT": 10.0}, ["c1"], [order]),
            AccountSnapshot(account, 5, {("a", "BTC/USDT"): 1.0}),
            OrderOutcomes("a", [order], [(order, "no cash")], account)]
    for m in msgs:
        assert pickle.loads(pickle.dumps(m)) == m
    with pytest.raises(AttributeError):
        msgs[0].upto_ts = 6  # type: ignore[misc]
