"""The live system's topology: which actor sends which message to whom, in one place.

``EDGES`` is the picture (docs/architecture.md draws it). ``Topology`` turns a roster (the feeds, the
strategies and the host each runs in, what the risk config reads) into each actor's ``Wiring``: the
peers it sends to. The supervisor resolves the node names to actor handles and applies a wiring with the
actor's single ``wire(...)`` method, at build time and again whenever an actor restarts, a strategy is
added, or one is replaced. Nodes are named ``gatekeeper``, ``router``, ``portfolio``, ``feed:<venue>``
and ``host:<name>`` (a strategy actor or a pool of strategies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

H = TypeVar("H")
T = TypeVar("T")

GATEKEEPER, ROUTER, PORTFOLIO = "gatekeeper", "router", "portfolio"


@dataclass(frozen=True, slots=True)
class Edge:
    sender: str  # a node kind: feed, host, gatekeeper, router, portfolio
    receiver: str
    message: str  # the mmats.messages type (or the plain call)
    method: str
    when: str = ""


EDGES: tuple[Edge, ...] = (
    Edge("feed", "host", "BarBatch", "on_bars", "the host's symbols; attached by handover"),
    Edge("feed", ROUTER, "BarBatch", "on_bars", "every bar: paper fills and marks"),
    Edge("feed", GATEKEEPER, "BarBatch", "on_bars", "the risk config reads bars"),
    Edge("feed", GATEKEEPER, "FeedStatus", "on_feed_status", "heartbeat, about once a second"),
    Edge("host", GATEKEEPER, "SignalBatch", "on_signals"),
    Edge(GATEKEEPER, ROUTER, "OrderCommands", "apply_commands"),
    Edge(GATEKEEPER, PORTFOLIO, "rejected orders (list[(Order, reason)])", "on_rejections",
         "risk and kill-switch refusals, for their strategies"),
    Edge(ROUTER, PORTFOLIO, "FillBatch", "on_fills", "fills, marks, orders done, venue rejections"),
    Edge(ROUTER, GATEKEEPER, "router error / ok / venue alert", "on_router_error"),
    Edge(ROUTER, "feed", "lockstep acknowledgement", "ack", "lockstep replays"),
    Edge(PORTFOLIO, GATEKEEPER, "AccountSnapshot", "on_account"),
    Edge(PORTFOLIO, "host", "OrderOutcomes", "on_orders",
         "fills, rejections, account; one message per host, its only sender"),
)


@dataclass(frozen=True, slots=True)
class Subscription(Generic[H]):
    """A fixed subscriber of a feed (strategy hosts attach themselves with ``FeedActor.handover``)."""

    handle: H
    symbols: tuple[str, ...] | None = None  # None: every symbol
    method: str = "on_bars"


@dataclass(slots=True)
class Wiring(Generic[H]):
    """The peers of one actor. ``H`` is a node name in the kernel and an actor handle once resolved."""

    node: str
    gatekeeper: H | None = None
    router: H | None = None
    portfolio: H | None = None
    feed: H | None = None  # a host's feed; the router's lockstep acknowledgements go to it
    strategies: dict[str, H] = field(default_factory=dict)  # strategy id -> its host
    subscribers: dict[str, Subscription[H]] = field(default_factory=dict)  # a feed's fixed subscribers
    heartbeat: H | None = None  # who hears a feed's heartbeat

    def resolve(self, lookup: Callable[[H], T]) -> Wiring[T]:
        def one(x: H | None) -> T | None:
            return None if x is None else lookup(x)

        return Wiring(self.node, one(self.gatekeeper), one(self.router), one(self.portfolio), one(self.feed),
                      {k: lookup(v) for k, v in self.strategies.items()},
                      {k: Subscription(lookup(s.handle), s.symbols, s.method) for k, s in self.subscribers.items()},
                      one(self.heartbeat))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one strategy runs: its host node and the feed it reads."""

    host: str
    venue: str
    symbols: tuple[str, ...]


def feed_node(venue: str) -> str:
    return f"feed:{venue}"


def host_node(name: str) -> str:
    return f"host:{name}"


def assign_hosts(strategies: Sequence[tuple[str, str]], per_actor: int) -> dict[str, str]:
    """Strategy id -> host name, for ``(strategy id, venue)`` pairs in config order.

    One host per strategy (named after it) when ``per_actor`` is 1; otherwise consecutive strategies of
    the same feed share a pool of at most ``per_actor`` (a pool reads one feed: its members' bars arrive
    in one message)."""
    if per_actor < 1:
        raise ValueError(f"strategies_per_actor must be at least 1, got {per_actor}")
    if per_actor == 1:
        return {sid: sid for sid, _ in strategies}
    out: dict[str, str] = {}
    by_venue: dict[str, list[str]] = {}
    for sid, venue in strategies:
        by_venue.setdefault(venue, []).append(sid)
    for venue, ids in by_venue.items():
        for i in range(0, len(ids), per_actor):
            for sid in ids[i:i + per_actor]:
                out[sid] = f"pool-{venue}-{i // per_actor}"
    return out


@dataclass(slots=True)
class Topology:
    """The roster of a running system and the wiring it implies.

    ``risk_reads_bars``: the gatekeeper subscribes to every feed (ATR, correlation). ``lockstep``: the
    router acknowledges each bar time to the feed (exact replays)."""

    venues: list[str]
    placements: dict[str, Placement] = field(default_factory=dict)  # strategy id -> where it runs
    risk_reads_bars: bool = False
    lockstep: bool = False

    def place(self, strategy_id: str, host: str, venue: str, symbols: Iterable[str]) -> None:
        if venue not in self.venues:
            raise ValueError(f"strategy {strategy_id}: no feed {venue!r} (feeds: {self.venues})")
        self.placements[strategy_id] = Placement(host_node(host), venue, tuple(symbols))

    def remove(self, strategy_id: str) -> None:
        self.placements.pop(strategy_id, None)

    def hosts(self) -> dict[str, list[str]]:
        """Host node -> the strategy ids it runs, in placement order."""
        out: dict[str, list[str]] = {}
        for sid, p in self.placements.items():
            out.setdefault(p.host, []).append(sid)
        return out

    def nodes(self) -> list[str]:
        return [PORTFOLIO, *(feed_node(v) for v in self.venues), ROUTER, GATEKEEPER, *self.hosts()]

    def strategy_hosts(self) -> dict[str, str]:
        return {sid: p.host for sid, p in self.placements.items()}

    def wiring(self, node: str) -> Wiring[str]:
        """The peers of ``node``; a ValueError names a node this topology does not have."""
        w: Wiring[str] = Wiring(node)
        if node == GATEKEEPER:
            w.router, w.portfolio, w.strategies = ROUTER, PORTFOLIO, self.strategy_hosts()
        elif node == ROUTER:
            w.gatekeeper, w.portfolio = GATEKEEPER, PORTFOLIO  # its rejections reach strategies via the portfolio
            if self.lockstep and self.venues:  # one replay clock: the first feed paces the others' acks
                w.feed = feed_node(self.venues[0])
        elif node == PORTFOLIO:
            w.gatekeeper, w.strategies = GATEKEEPER, self.strategy_hosts()
        elif node.startswith("feed:") and node[5:] in self.venues:
            w.heartbeat = GATEKEEPER
            w.subscribers["router"] = Subscription(ROUTER)
            if self.risk_reads_bars:
                w.subscribers["gatekeeper"] = Subscription(GATEKEEPER)
        elif node in self.hosts():
            venues = {self.placements[sid].venue for sid in self.hosts()[node]}
            if len(venues) != 1:
                raise ValueError(f"{node} hosts strategies of several feeds: {sorted(venues)}")
            w.gatekeeper, w.feed = GATEKEEPER, feed_node(venues.pop())
            w.strategies = {sid: node for sid in self.hosts()[node]}
        else:
            raise ValueError(f"no node {node!r} in the topology (nodes: {self.nodes()})")
        return w

    def all_wirings(self) -> dict[str, Wiring[str]]:
        return {n: self.wiring(n) for n in self.nodes()}


def edges_from(kind: str, edges: Sequence[Edge] = EDGES) -> list[Edge]:
    return [e for e in edges if e.sender == kind]


def describe(edges: Sequence[Edge] = EDGES) -> Mapping[str, list[str]]:
    """Sender kind -> "message -> receiver.method" lines (the architecture doc's table)."""
    out: dict[str, list[str]] = {}
    for e in edges:
        when = f" ({e.when})" if e.when else ""
        out.setdefault(e.sender, []).append(f"{e.message} -> {e.receiver}.{e.method}{when}")
    return out
