"""One settings object per actor kind: what an actor needs to build its kernel objects.

The supervisor derives them from the system config (``actors.supervisor``); Ray re-runs an actor's
constructor with the same object after a crash, so everything here must be enough to rebuild the actor's
state from its stores and its feed. Who the actor talks to is not here: that is its wiring
(``mmats.engine.topology.Wiring``), applied by ``wire(...)`` and re-applied after every restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmats.data import BarArrays
from mmats.fx import FxRates
from mmats.model import Instrument

Persist = dict[str, Any]  # the stores to open (``SupervisorActor.persist_settings``), None: memory only


@dataclass(frozen=True, slots=True)
class Peers:
    """How a restarted actor finds the supervisor, which re-applies its wiring."""

    supervisor: str | None = None
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class PortfolioSettings:
    instruments: dict[str, Instrument]
    initial_cash: str
    equity_every_s: int = 60
    persist: Persist | None = None
    push_every_batch: bool = False  # lockstep replays: the account after every fill batch
    fx: FxRates | None = None
    peers: Peers = field(default_factory=Peers)


@dataclass(frozen=True, slots=True)
class RouterSettings:
    instruments: dict[str, Instrument]
    initial_cash: str
    costs: dict[str, Any] = field(default_factory=dict)
    persist: Persist | None = None
    paper_venue: str | None = None
    retry: dict[str, Any] | None = None
    live: dict[str, Any] | None = None  # the LIVE venues (``actors.supervisor.live_venue_specs``)
    fx: FxRates | None = None
    funding: dict[str, dict[str, Any]] | None = None
    peers: Peers = field(default_factory=Peers)


@dataclass(frozen=True, slots=True)
class GatekeeperSettings:
    instruments: dict[str, Instrument]
    allocation: float | dict[str, float] = 1.0
    risk: dict[str, Any] | None = None
    mode: str = "advisory"
    allow_operator: bool = False
    lockstep: bool = False
    router_error_limit: int = 5
    persist: Persist | None = None
    environment: str = "PAPER"
    initial_equity: float | None = None
    allocation_plan: dict[str, Any] | None = None
    peers: Peers = field(default_factory=Peers)


@dataclass(frozen=True, slots=True)
class FeedSettings:
    venue: str
    series: dict[str, BarArrays] = field(default_factory=dict)
    pace: str = "max"
    speed: float = 60.0
    max_pending: int = 50_000
    history_len: int = 5_000
    stale_after_s: float = 30.0
    lockstep_timeout_s: float = 3.0
    persist: Persist | None = None
    min_send_interval_ms: float | None = None
    live: dict[str, Any] | None = None  # a live source (``actors.supervisor.live_spec``), None: replay
    peers: Peers = field(default_factory=Peers)


@dataclass(frozen=True, slots=True)
class StrategySettings:
    """One strategy instance, hosted alone (``StrategyActor``) or with others (``StrategyPoolActor``)."""

    strategy_id: str
    ref: str
    params: dict[str, Any]
    symbols: list[str]
    market: str
    environment: str = "PAPER"
    max_errors: int = 5
    warmup_bars: int = 2_000
    timeframe: str | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class HostSettings:
    """A strategy host: one strategy (a strategy actor) or several (a pool), all on one feed.

    ``report_empty``: every batch is reported to the gatekeeper even without signals (lockstep replays
    and aggregating risk configs count on it). ``attach``: take the place on the feed at once (a start
    or a Ray restart); a hot replace attaches when the supervisor says so."""

    node: str
    strategies: list[StrategySettings]
    report_empty: bool = False
    attach: bool = True
    peers: Peers = field(default_factory=Peers)

    def __post_init__(self) -> None:
        if not self.strategies:
            raise ValueError(f"strategy host {self.node}: hosts no strategy")
        ids = [s.strategy_id for s in self.strategies]
        if len(set(ids)) != len(ids):
            raise ValueError(f"strategy host {self.node}: strategy ids repeat: {ids}")
