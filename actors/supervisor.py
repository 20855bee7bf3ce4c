"""Supervisor: builds the actor graph from config, starts/stops it, submits strategies, reports health.

It is a named actor (``mmats_supervisor`` in namespace ``mmats``), so the CLI and the Serve app find
it from any process connected to the cluster.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Any

import ray

from actors.feed import FeedActor
from actors.gatekeeper import RiskGatekeeperActor
from actors.portfolio import PortfolioActor
from actors.router import OrderRouterActor
from actors.strategy import StrategyActor
from actors.strategy_pool import StrategyPoolActor
from adapters.sql_store import SqlStorage, make_storage
from mmats.data import BarArrays, generate_bars, generated_seed, load_bars, to_arrays
from mmats.engine.actor_settings import (
    FeedSettings,
    GatekeeperSettings,
    HostSettings,
    Peers,
    PortfolioSettings,
    RouterSettings,
    StrategySettings,
)
from mmats.engine.strategy_host import feed_for_strategy, strategy_benchmarks
from mmats.engine.topology import GATEKEEPER, PORTFOLIO, ROUTER, Topology, Wiring, assign_hosts, feed_node, host_node
from mmats.errors import ConfigError, StrategyError
from mmats.execution.paper import PaperExecution
from mmats.execution.routing import refuse_live_venue
from mmats.fx import FxError, FxRates
from mmats.model import Environment, Instrument, MarketType, SignalAction, Timeframe, TradeSignal, default_instrument
from mmats.ports import StorageConflict, StrategyRecord
from mmats.registry import load_object
from mmats.system_config import FeedConfig, StrategyConfig, SystemConfig, resolve_market

NAMESPACE = "mmats"
SUPERVISOR = "mmats_supervisor"  # f"{system_name}_supervisor" with the default system_name
log = logging.getLogger("mmats.supervisor")
REWIRE_ATTACH_TIMEOUT_S = 60.0  # a restarted feed waits this long for its hosts to attach before publishing


def placement(market: MarketType | str) -> dict[str, Any]:
    """Pin to a node advertising ``market_<market>`` when the cluster has one (multi-node deployments)."""
    key = f"market_{MarketType(market).value}"
    return {"resources": {key: 0.001}} if ray.cluster_resources().get(key) else {}


def live_spec(feed: FeedConfig, home: str, environment: str) -> dict[str, Any] | None:
    """What a FeedActor needs to open a live source (None: it replays). Names of credentials only: the
    process that uses them loads them from its environment's secret store."""
    if feed.source == "replay":
        return None
    return {"source": feed.source, "exchange": feed.exchange, "api_base": feed.api_base,
            "account_id": feed.account_id, "data_feed": feed.data_feed, "home": home, "environment": environment,
            "symbols": list(feed.symbols), "timeframe": feed.timeframe.value, "poll_s": feed.poll_s,
            "warmup_bars": feed.warmup_bars}


def venue_instruments(spec: dict[str, Any], venue: str) -> dict[str, Instrument]:
    """The venue's own tick, lot and minimum size for a live feed's symbols: the paper broker must refuse
    what the real venue would refuse. An unknown symbol or an unreachable venue fails the build by name."""
    from adapters.market_data import open_market_data

    try:
        source = open_market_data(spec)
        source.subscribe(spec["symbols"], Timeframe(spec["timeframe"]))
        instruments: dict[str, Instrument] = source.instruments(spec["symbols"])
    except Exception as exc:
        raise ConfigError(f"feed {venue}: {exc}") from None
    return instruments


def live_venue_specs(cfg: SystemConfig) -> dict[str, Any] | None:
    """What the router needs to open the LIVE venues (None: PAPER). Names of credentials only."""
    if cfg.environment is not Environment.LIVE:
        return None
    venues = [{"name": v.name, "kind": v.kind, "exchange": v.exchange, "account_id": v.account_id,
               "symbols": list(v.symbols), "api_base": v.api_base, "timeout_s": v.timeout_s,
               "rate_per_s": v.default_rate(), "breaker": v.breaker.model_dump(), "outside_hours": v.outside_hours,
               "home": cfg.home, "environment": cfg.environment.value,
               # perpetual swaps: the leverage the adapter sets before each symbol's first order
               "leverage": {s: int(cfg.instruments[s].leverage or 1) if s in cfg.instruments else 1
                            for s in v.symbols if ":" in s}} for v in cfg.venues]
    return {"venues": venues, "unknown_grace_s": cfg.live.unknown_grace_s,
            "reconcile_every_s": cfg.live.reconcile_every_s, "dry_run": cfg.dry_run}


def check_live_venues(live: dict[str, Any]) -> dict[str, Instrument]:
    """LIVE start-up: every venue reachable with its keys, the keys able to trade and unable to withdraw,
    every routed symbol known to its venue. Returns the venues' instruments (their tick, lot and minimums
    are what orders are sized and rounded to). Any problem refuses the start, naming venue and cause."""
    from adapters.venues import open_venue
    from mmats.execution.venue import VenueError

    out: dict[str, Instrument] = {}
    for spec in live["venues"]:
        venue = open_venue(spec)
        try:
            check = venue.account_check()
            if check.problems:
                raise ConfigError(f"venue {spec['name']}: " + "; ".join(check.problems))
            out.update(venue.instruments(spec["symbols"]))
        except VenueError as exc:
            raise ConfigError(f"venue {spec['name']}: {exc.kind.value}: {exc}") from None
        finally:
            venue.close()
    return out


def _alive(handle: Any, timeout_s: float = REWIRE_ATTACH_TIMEOUT_S) -> bool:
    """Wait until a restarted actor answers. It asks for its wiring from its constructor, so the request
    can arrive before the actor is back, and a call sent then to an actor without task retries (feeds,
    strategy hosts) fails and would leave it unwired (a feed publishing to nobody but its strategies)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(handle.ping.remote(), timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            return True
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            time.sleep(0.05)
    log.error("a restarted actor did not answer within %.0f s: not rewired", timeout_s)
    return False


@ray.remote(max_restarts=0)
class SupervisorActor:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = SystemConfig.model_validate(config)
        self.started = time.time()
        self.instruments: dict[str, Instrument] = {}
        self.series: list[tuple[Any, dict[str, BarArrays]]] = []
        self.feeds: dict[str, Any] = {}
        self.strategies: dict[str, dict[str, Any]] = {}
        self.router: Any = None
        self.portfolio: Any = None
        self.gatekeeper: Any = None
        self.running = False
        self.storage: SqlStorage | None = None
        self._origin: dict[str, str] = {}  # strategy id -> "config" | "runtime" (the registry's spec.origin)
        self.restore_errors: dict[str, str] = {}
        self.risk_feeds = {"bars": False, "reports": False}  # what the gatekeeper's risk config reads
        # Who sends what to whom (mmats.engine.topology): every actor's peers come from it, through
        # its ``wire(...)``, at build time, after a strategy is added or replaced, and after a restart.
        self.plan = Topology([])
        self.hosts: dict[str, Any] = {}  # host node -> the strategy actor or pool running there
        self.peers = Peers()
        self._built = False

    # ------------------------------------------------------------------------------------- build

    def build(self) -> dict[str, Any]:
        cfg = self.config
        if cfg.paper_venue is not None:  # refused before any actor exists
            refuse_live_venue(cfg.environment, load_object(cfg.paper_venue, PaperExecution), cfg.paper_venue)
        for feed in cfg.feeds:
            data: dict[str, BarArrays] = {}
            for sym, path in feed.files.items():
                data[sym] = to_arrays(load_bars(path))
            for sym in feed.generated_symbols:
                data[sym] = to_arrays(generate_bars(feed.generated_bars, seed=generated_seed(sym)))
            for sym in data:
                self.instruments[sym] = default_instrument(sym, feed.market)
            spec = live_spec(feed, cfg.home, cfg.environment.value)
            if spec is not None:
                self.instruments.update(venue_instruments(spec, feed.venue))
            self.series.append((feed, data))
        if not self.instruments:
            raise ConfigError("no symbols: configure at least one feed with files, generated_symbols or symbols")
        live = live_venue_specs(cfg)
        if live is not None:
            self.instruments.update(check_live_venues(live))
        for sym, settings in cfg.instruments.items():  # how each is held: kind, leverage, margins, shortable
            if sym in self.instruments:
                self.instruments[sym] = settings.apply(self.instruments[sym])
        funding = {sym: st.funding.model_dump() for sym, st in cfg.instruments.items() if st.funding is not None}
        cash = repr(cfg.initial_cash)
        first_market = cfg.feeds[0].market
        fx = self.account_rates()
        persist = self.persist_settings()
        if persist is not None:
            self.storage = make_storage(Environment(persist["environment"]), persist.get("database_url"),
                                        home=persist.get("home"))
            self._check_saved_state(self.storage)
        ctx = ray.get_runtime_context()
        self.peers = peers = Peers(ctx.get_actor_name() or f"{cfg.system_name}_supervisor", ctx.namespace)
        gk_name = f"{cfg.system_name}_gatekeeper"
        lockstep = any(f.pace == "lockstep" for f in cfg.feeds)
        self.portfolio = PortfolioActor.options(**placement(first_market)).remote(PortfolioSettings(
            self.instruments, cash, persist=persist, push_every_batch=lockstep, fx=fx, peers=peers))
        for feed, data in self.series:
            self.feeds[feed.venue] = FeedActor.options(**placement(feed.market)).remote(FeedSettings(
                feed.venue, data, feed.pace, feed.speed, feed.max_pending, stale_after_s=feed.stale_after_s,
                persist=persist, min_send_interval_ms=feed.min_send_interval_ms,
                live=live_spec(feed, cfg.home, cfg.environment.value), peers=peers))
        self.plan = Topology(list(self.feeds), lockstep=lockstep)
        self.router = OrderRouterActor.options(**placement(first_market)).remote(RouterSettings(
            self.instruments, cash, cfg.costs.model_dump(), persist, paper_venue=cfg.paper_venue,
            retry=cfg.router_retry.model_dump(), live=live, fx=fx, funding=funding, peers=peers),
            self.wiring(ROUTER))
        allocation = {s.id: s.allocation for s in cfg.strategies}
        self.gatekeeper = RiskGatekeeperActor.options(name=gk_name).remote(GatekeeperSettings(
            self.instruments, allocation, cfg.risk, cfg.mode, cfg.allow_operator, lockstep,
            router_error_limit=cfg.router_error_limit, persist=persist, environment=cfg.environment.value,
            initial_equity=cfg.initial_cash,
            allocation_plan=cfg.allocation.model_dump() if cfg.allocation is not None else None, peers=peers),
            self.wiring(GATEKEEPER))
        self.risk_feeds = ray.get(self.gatekeeper.risk_feeds.remote())
        self.plan.risk_reads_bars = self.risk_feeds["bars"]  # ATR and correlation from every bar (docs/risk.md)
        self._wire(PORTFOLIO, ROUTER, GATEKEEPER, *(feed_node(v) for v in self.feeds))
        self._start_pools()
        for s in self._strategies_to_start():
            try:
                if s.id not in self.strategies:  # not started in a pool
                    self._start_strategy(s)
            except Exception as exc:
                if self._origin.get(s.id) != "runtime":
                    raise  # the config file is wrong: say so at start
                self.restore_errors[s.id] = f"{type(exc).__name__}: {exc}"
                continue
            self._register(s)
        self._wire(GATEKEEPER, ROUTER, PORTFOLIO)
        self._built = True
        return self.topology()

    # ---------------------------------------------------------------------------------- topology

    def _handle(self, node: str) -> Any:
        if node == GATEKEEPER:
            return self.gatekeeper
        if node == ROUTER:
            return self.router
        if node == PORTFOLIO:
            return self.portfolio
        if node.startswith("feed:"):
            return self.feeds.get(node[5:])
        return self.hosts.get(node)

    def wiring(self, node: str) -> Wiring[Any]:
        """``node``'s peers as actor handles (None for a peer not built yet)."""
        return self.plan.wiring(node).resolve(self._handle)

    def _wire(self, *nodes: str) -> None:
        """Apply the topology to ``nodes`` (each actor's single ``wire``) and wait until they have it."""
        refs = [self._handle(n).wire.remote(self.wiring(n)) for n in nodes if self._handle(n) is not None]
        ray.get(refs)

    def rewire(self, node: str) -> None:
        """A restarted actor asks for its wiring: sent, not awaited (the actor may be busy warming up).
        A restarted feed of a running system starts publishing again once its hosts have attached.
        A strategy host also gets its members as they run now (a member replaced since the host was
        built, an operator's disable), before it takes its place on the feed again, and then the account
        (its strategies' positions) without waiting for the portfolio's next push."""
        handle = self._handle(node)
        if handle is None or not _alive(handle):
            return
        if node in self.hosts:
            members = self.plan.hosts().get(node, [])
            wired = handle.wire.remote(self.wiring(node), [self._member(sid) for sid in members])
            if self.portfolio is not None and members:  # after ``wire``: it may have replaced members
                self.portfolio.send_account.remote(members, wait=False, after=wired)
        else:
            handle.wire.remote(self.wiring(node))
        if node.startswith("feed:"):  # its subscriptions were lost with the process: hosts attach again
            attached = [self.hosts[host].attach.remote(False) for host in self.plan.hosts()
                        if self.plan.wiring(host).feed == node]
            if self.running:  # then it publishes again, from the position it saved (a replay resumes)
                ray.wait(attached, num_returns=len(attached), timeout=REWIRE_ATTACH_TIMEOUT_S)
                handle.start.remote()

    def _member(self, strategy_id: str) -> StrategySettings:
        entry = self.strategies[strategy_id]
        return self._strategy_settings(entry["config"])

    def _strategy_settings(self, s: StrategyConfig) -> StrategySettings:
        market = s.market or self.instruments[s.symbols[0]].market
        return StrategySettings(s.id, s.ref, dict(s.params), list(s.symbols), market.value,
                                self.config.environment.value, self.config.max_strategy_errors,
                                timeframe=s.timeframe.value if s.timeframe else None, enabled=s.enabled)

    def _report_empty(self) -> bool:
        return any(f.pace == "lockstep" for f in self.config.feeds) or self.risk_feeds["reports"]

    def _start_pools(self) -> None:
        """``strategies_per_actor`` > 1: the strategies to start share pools, by feed, in config order.
        A pool that cannot start fails the build like a strategy from the config would."""
        per_actor = self.config.strategies_per_actor
        if per_actor == 1:
            return
        todo = self._strategies_to_start()
        venues = {feed.venue: feed.all_symbols for feed, _ in self.series}
        venue_of = {s.id: feed_for_strategy(venues, s.id, s.symbols, strategy_benchmarks(s.ref, s.params))
                    for s in todo}
        names = assign_hosts([(s.id, venue_of[s.id]) for s in todo], per_actor)
        by_host: dict[str, list[StrategyConfig]] = {}
        for s in todo:
            by_host.setdefault(names[s.id], []).append(s)
        for name, members in by_host.items():
            node = host_node(name)
            venue = venue_of[members[0].id]
            for s in members:
                self.plan.place(s.id, name, venue, s.symbols)
            settings = HostSettings(node, [self._strategy_settings(s) for s in members],
                                    report_empty=self._report_empty(), peers=self.peers)
            w = self.wiring(node)
            handle = StrategyPoolActor.options(**placement(members[0].market or self.config.feeds[0].market)).remote(
                settings, w)
            ray.get(handle.ping.remote())
            self.hosts[node] = handle
            for s in members:
                self.strategies[s.id] = {"config": s, "handle": handle, "feed": self.feeds[venue], "host": node}
                ray.get(self.gatekeeper.allocate_strategy.remote(s.id, s.allocation))
                health = ray.get(handle.health.remote(s.id))
                if s.enabled and not health["enabled"] and health["errors_total"] > 0:
                    ray.get(self.gatekeeper.on_strategy_disabled.remote(
                        s.id, f"failed during warm-up ({health['errors_total']} errors): "
                        f"{health['last_error'].split(' | ')[0]}"))
                self._register(s)

    def account_rates(self) -> FxRates:
        """The account's currency rates (mmats.fx): planned from the config, checked against the quote
        currencies the venues report, and seeded with each replayed pair's first open so that a position
        booked before that pair's first bar is valued (a live pair's rate comes with its first bar)."""
        fx = self.config.fx_plan()
        try:
            fx.require({i.quote_currency for i in self.instruments.values()}, "the venues' instruments")
        except FxError as exc:
            raise ConfigError(str(exc)) from None
        for _, data in self.series:
            for sym, arrays in data.items():
                if fx.is_source(sym) and len(arrays):
                    fx.on_price(sym, self.instruments[sym].round_price(float(arrays.open[0])))
        return fx

    def _check_saved_state(self, storage: SqlStorage) -> None:
        """Saved fills the config cannot book (a symbol it no longer trades) refuse the start in one line.

        The portfolio replays every saved fill; a fill for a symbol no feed provides cannot be booked,
        and guessing (dropping it, or inventing an instrument) would misstate positions and cash."""
        saved = {f.symbol for f in storage.list_fills()}
        foreign = sorted(saved - set(self.instruments))
        if foreign:
            where = storage.url if self.config.database_url else self.config.home
            raise ConfigError(
                f"saved state in {where} ({self.config.environment.value}) holds fills for {foreign}, which this "
                f"config does not trade (its symbols: {sorted(self.instruments)}): give this config its own "
                f"home (`home:` in the file, --home or MMATS_HOME), or move {where} aside to start afresh "
                "(docs/configuration.md, \"Saved state\")")

    def _strategies_to_start(self) -> list[StrategyConfig]:
        """The config's strategies and the registry's (docs/configuration.md, "Strategy registry").

        A strategy submitted or hot-replaced at runtime comes back from the registry as it was; one from
        the config file starts as the file says, except that a strategy an operator disabled stays
        disabled (the stricter of the two wins: a restart never switches on what someone switched off)."""
        records = {r.strategy_id: r for r in self.storage.list_strategies()} if self.storage is not None else {}
        out: list[StrategyConfig] = []
        for s in self.config.strategies:
            rec = records.pop(s.id, None)
            if rec is not None and rec.spec.get("origin") == "runtime":
                s = self._from_record(rec) or s
            elif rec is not None and not rec.enabled:
                s = s.model_copy(update={"enabled": False})
            out.append(s)
        for rec in records.values():
            if rec.spec.get("origin") == "runtime":
                restored = self._from_record(rec)
                if restored is not None:
                    out.append(restored)
        return out

    def _from_record(self, rec: StrategyRecord) -> StrategyConfig | None:
        spec = {k: v for k, v in rec.spec.items() if k != "origin"}
        try:
            s = StrategyConfig.model_validate({**spec, "id": rec.strategy_id, "ref": rec.ref,
                                               "params": dict(rec.params), "enabled": rec.enabled})
        except Exception as exc:  # a registry entry that no longer fits the feeds is reported, not fatal
            self.restore_errors[rec.strategy_id] = f"{type(exc).__name__}: {exc}"
            return None
        missing = [x for x in s.symbols if x not in self.instruments]
        if missing:
            self.restore_errors[rec.strategy_id] = f"symbols {missing} are not on any feed"
            return None
        self._origin[s.id] = "runtime"
        return s

    def _register(self, s: StrategyConfig, origin: str | None = None) -> None:
        """Record the strategy as it runs now (optimistic versioning: re-read on a conflict)."""
        if origin is not None:
            self._origin[s.id] = origin
        if self.storage is None:
            return
        spec = s.model_dump(mode="json", exclude={"id", "ref", "params", "enabled"})
        spec["origin"] = self._origin.get(s.id, "config")
        for _ in range(3):
            cur = self.storage.get_strategy(s.id)
            try:
                self.storage.save_strategy(StrategyRecord(s.id, s.ref, dict(s.params), s.enabled,
                                                          cur.version if cur else 0, spec=spec))
                return
            except StorageConflict:
                continue
        raise StorageConflict(f"strategy {s.id}: registry kept changing under the supervisor")

    def persist_settings(self) -> dict[str, Any] | None:
        cfg = self.config
        if not cfg.persist:
            return None
        return {"environment": cfg.environment.value, "home": cfg.home, "database_url": cfg.database_url,
                "redis_url": cfg.redis_url, "redis_prefix": f"mmats:{cfg.environment.value.lower()}:{cfg.system_name}:"}

    def _feed_for(self, symbols: list[str]) -> Any:
        for feed, _ in self.series:
            if all(sym in feed.all_symbols for sym in symbols):
                return self.feeds[feed.venue]
        raise ConfigError(f"no single feed provides all of {symbols}")

    def _feed_for_strategy(self, s: StrategyConfig) -> Any:
        """The feed of the strategy's symbols, which must also provide the benchmarks its indicators name."""
        venues = {feed.venue: feed.all_symbols for feed, _ in self.series}
        return self.feeds[feed_for_strategy(venues, s.id, s.symbols, strategy_benchmarks(s.ref, s.params))]

    def _start_strategy(self, s: StrategyConfig, refuse_failing: bool = False, attach: bool = True) -> None:
        """Start one strategy actor. One that disabled itself during warm-up (it raised on every history
        bar) is refused when ``refuse_failing`` (a runtime submit or replace answers with the reason);
        from the config it stays, disabled, and the gatekeeper raises a ``strategy_disabled`` alert."""
        feed = self._feed_for_strategy(s)
        market = s.market or self.instruments[s.symbols[0]].market
        s.market = market
        venue = next(v for v, h in self.feeds.items() if h == feed)
        node = host_node(s.id)
        previous = self.plan.placements.get(s.id)
        self.plan.place(s.id, s.id, venue, s.symbols)
        settings = HostSettings(node, [self._strategy_settings(s)], report_empty=self._report_empty(),
                                attach=attach, peers=self.peers)
        handle = StrategyActor.options(**placement(market)).remote(settings, self.wiring(node))
        try:
            ray.get(handle.ping.remote())  # surfaces a bad strategy reference or parameter now, not later
        except Exception:
            self._unplace(s.id, previous)
            raise
        health = ray.get(handle.health.remote())
        failed = f"failed during warm-up ({health['errors_total']} errors): {health['last_error'].split(' | ')[0]}"
        warmup_failed = not health["enabled"] and health["errors_total"] > 0
        if warmup_failed and refuse_failing:
            ray.kill(handle)
            self._unplace(s.id, previous)
            raise StrategyError(f"strategy {s.id} {failed}; not started")
        self.hosts[node] = handle
        ray.get(self.gatekeeper.allocate_strategy.remote(s.id, s.allocation))
        if self._built or not attach:  # at build time the topology is applied once, after every start
            self._wire(GATEKEEPER, ROUTER, PORTFOLIO)
        self.strategies[s.id] = {"config": s, "handle": handle, "feed": feed, "host": node}
        if not s.enabled:
            ray.get(handle.set_enabled.remote(False))
        elif warmup_failed:
            ray.get(self.gatekeeper.on_strategy_disabled.remote(s.id, failed))

    def _unplace(self, strategy_id: str, previous: Any) -> None:
        if previous is None:
            self.plan.remove(strategy_id)
        else:
            self.plan.placements[strategy_id] = previous

    def start(self) -> None:
        for feed in self.feeds.values():
            ray.get(feed.start.remote())
        self.running = True

    # ---------------------------------------------------------------------------------- controls

    def submit_strategy(self, spec: dict[str, Any]) -> dict[str, Any]:
        s = StrategyConfig.model_validate(spec)
        if s.id in self.strategies:
            raise ConfigError(f"strategy id {s.id!r} already exists")
        unknown = [x for x in s.symbols if x not in self.instruments]
        if unknown:
            raise ConfigError(f"strategy {s.id}: symbols {unknown} are not on any feed ({sorted(self.instruments)})")
        try:
            s.market = resolve_market(s, {self.instruments[x].market for x in s.symbols})
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._start_strategy(s, refuse_failing=True)
        self._register(s, origin="runtime")
        return {"id": s.id, "symbols": s.symbols}

    def set_strategy_enabled(self, strategy_id: str, enabled: bool, close_positions: bool = False,
                             reason: str = "manual") -> dict[str, Any]:
        """Enable or disable; disabling with ``close_positions`` sends a CLOSE through the gatekeeper (as this
        strategy) for each of its symbols with an open position. Positions are netted per symbol across
        strategies, so that CLOSE takes the symbol flat (docs/http-api.md)."""
        entry = self.strategies.get(strategy_id)
        if entry is None:
            raise ConfigError(f"unknown strategy {strategy_id!r}")
        ray.get(entry["handle"].set_enabled.remote(enabled, strategy_id))
        entry["config"].enabled = enabled
        self._register(entry["config"])
        ray.get(self.gatekeeper.on_strategy_toggled.remote(strategy_id, enabled, reason))
        closes: list[dict[str, Any]] = []
        if close_positions and not enabled:
            held = {p["symbol"] for p in ray.get(self.portfolio.status.remote())["positions"]
                    if Decimal(p["quantity"]) != 0}
            for sym in entry["config"].symbols:
                if sym not in held:
                    continue
                price = ray.get(self._feed_for([sym]).last_prices.remote()).get(sym)
                if price is None:
                    continue
                signal = TradeSignal(SignalAction.CLOSE, sym, 0.0, confidence=1.0, strategy_id=strategy_id,
                                     signal_id=f"disable-{time.time_ns()}",
                                     reasoning=f"strategy disabled: {reason}", metadata={"source": "disable"})
                result = ray.get(self.gatekeeper.submit_external.remote(strategy_id, signal, float(price)))
                closes.append({"symbol": sym, "signal_id": signal.signal_id, "result": result})
        return {"id": strategy_id, "enabled": enabled, "close_positions": close_positions, "closes": closes}

    def list_strategies(self) -> list[dict[str, Any]]:
        out = []
        for sid, entry in self.strategies.items():
            try:
                health = ray.get(entry["handle"].health.remote(sid), timeout=5)
            except Exception as exc:  # a restarting actor is reported, not fatal
                health = {"error": f"{type(exc).__name__}"}
            out.append({"id": sid, "ref": entry["config"].ref, "params": entry["config"].params, **health})
        return out

    def kill(self, state: str, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = ray.get(self.gatekeeper.set_kill_switch.remote(state, reason))
        return result

    def status(self) -> dict[str, Any]:
        gk, pf, rt, vs = ray.get([self.gatekeeper.stats.remote(), self.portfolio.status.remote(),
                                  self.router.stats.remote(), self.router.venue_status.remote()])
        feeds = {k: ray.get(f.stats.remote()) for k, f in self.feeds.items()}
        return {
            "environment": self.config.environment.value,
            "mode": "advisory" if gk["advisory"] else "operator",
            "kill_switch": gk["kill_switch"],
            "uptime_s": round(time.time() - self.started, 1),
            "running": self.running,
            "portfolio": pf,
            "router": rt,
            "gatekeeper": gk,
            "feeds": feeds,
            "strategies": self.list_strategies(),
            "restore_errors": dict(self.restore_errors),
            "venues": vs["venues"],
            "dry_run_orders": vs["dry_run"],
            "allocation": ray.get(self.gatekeeper.allocation_status.remote()),
        }

    def handles(self) -> dict[str, Any]:
        return {"gatekeeper": self.gatekeeper, "router": self.router, "portfolio": self.portfolio,
                "feeds": dict(self.feeds), "strategies": {k: v["handle"] for k, v in self.strategies.items()}}

    def topology(self) -> dict[str, Any]:
        return {"feeds": list(self.feeds), "strategies": list(self.strategies), "symbols": sorted(self.instruments)}

    def down(self) -> dict[str, Any]:
        """Graceful stop: feed stops, the gatekeeper's journal written out, open orders canceled, final
        status returned as the summary."""
        for feed in self.feeds.values():
            ray.get(feed.stop.remote())
        ray.get(self.gatekeeper.flush.remote())  # the decisions already taken are on record
        canceled = ray.get(self.router.cancel_all.remote())
        self.running = False
        summary = self.status()
        summary["canceled_on_shutdown"] = canceled
        return summary

    # ----------------------------------------------------------------- control API (serve_app.py)

    def get_config(self) -> dict[str, Any]:
        """The running config (strategies as they are now) and what changed but needs a restart to apply."""
        cfg = self.config.model_dump(mode="json")
        cfg["strategies"] = [e["config"].model_dump(mode="json") for e in self.strategies.values()]
        return {"config": cfg, "restart_required": sorted(getattr(self, "restart_required", set())),
                "versions": {sid: e.get("version", 1) for sid, e in self.strategies.items()},
                "started": self.started, "running": self.running}

    def replace_strategy(self, strategy_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Hot-replace: a new version of the strategy (new ref/params) takes over from the old actor.

        The new version warms up from the feed's history while the old one keeps trading; then the feed
        swaps them between two bars (``FeedActor.handover``): every bar is processed live exactly once,
        up to the swap by the old version and after it by the new one. The new version gets the account
        (its positions) before its first live bar; orders and P&L stay attributed to the same id. A new
        version that fails to load or to warm up is refused and the old one never stopped.
        """
        entry = self.strategies.get(strategy_id)
        if entry is None:
            raise ConfigError(f"unknown strategy {strategy_id!r}")
        s = StrategyConfig.model_validate({**entry["config"].model_dump(mode="json"), **spec, "id": strategy_id})
        unknown = [x for x in s.symbols if x not in self.instruments]
        if unknown:
            raise ConfigError(f"strategy {s.id}: symbols {unknown} are not on any feed ({sorted(self.instruments)})")
        old, version = entry["handle"], entry.get("version", 1)
        if entry["host"] != host_node(strategy_id):  # a pool member: replaced inside its pool
            s.market = s.market or entry["config"].market
            ray.get(old.replace_member.remote(self._strategy_settings(s)))
            entry["config"], entry["version"] = s, version + 1
            self._register(s, origin="runtime")
            return {"id": strategy_id, "version": version + 1, "ref": s.ref, "params": s.params}
        try:
            self._start_strategy(s, refuse_failing=True, attach=False)
        except Exception:
            self.strategies[strategy_id] = entry  # the old version never stopped
            self.hosts[entry["host"]] = old
            self._wire(GATEKEEPER, ROUTER, PORTFOLIO)
            raise
        new = self.strategies[strategy_id]["handle"]
        ray.get(self.portfolio.send_account.remote([strategy_id], new))  # its positions before its first bar
        in_flight = ray.get(new.attach.remote(True))
        ray.wait(in_flight, num_returns=len(in_flight), timeout=30)  # the old version's last bars
        self.strategies[strategy_id]["version"] = version + 1
        self._register(s, origin="runtime")
        ray.kill(old)
        return {"id": strategy_id, "version": version + 1, "ref": s.ref, "params": s.params}

    def apply_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Apply a new config version: strategy changes now, everything else flagged as needing a restart."""
        new = SystemConfig.model_validate(config)
        current = SystemConfig.model_validate(self.get_config()["config"])
        restart: set[str] = set(getattr(self, "restart_required", set()))
        applied: list[str] = []
        for name in type(new).model_fields:
            if name != "strategies" and getattr(new, name) != getattr(current, name):
                restart.add(name)
        live = {s.id: s for s in current.strategies}
        for s in new.strategies:
            old = live.get(s.id)
            if old is None:
                self.submit_strategy(s.model_dump(mode="json"))
                applied.append(f"strategies.{s.id}: added")
                continue
            if old.allocation != s.allocation:
                restart.add(f"strategies.{s.id}.allocation")
            if old.model_dump(exclude={"enabled", "allocation"}) != s.model_dump(exclude={"enabled", "allocation"}):
                res = self.replace_strategy(s.id, s.model_dump(mode="json"))
                applied.append(f"strategies.{s.id}: replaced by version {res['version']}")
            elif old.enabled != s.enabled:
                self.set_strategy_enabled(s.id, s.enabled)
                applied.append(f"strategies.{s.id}: {'enabled' if s.enabled else 'disabled'}")
            self.strategies[s.id]["config"].allocation = s.allocation
        for sid in live.keys() - {s.id for s in new.strategies}:
            if live[sid].enabled:
                self.set_strategy_enabled(sid, False)
                applied.append(f"strategies.{sid}: disabled (not in the new config)")
        self.config = new
        self.restart_required = restart
        return {"applied": applied, "restart_required": sorted(restart)}

    def ping(self) -> str:
        return "ok"
