"""The risk gatekeeper: the one door between a sized order intent and a broker.

Evaluation order (fixed, documented in docs/risk.md):
1. sanity of the intent (positive quantity and price);
2. the kill switch: RUNNING passes; SOFT lets only the reducing part of an order through; HARD rejects
   everything but the flatten orders this gatekeeper issued itself; FREEZE rejects everything;
3. the configured rules in ``rules.RULE_ORDER``, each cutting the allowed quantity, stopping at zero;
   rules marked not ``applies_to_reducing`` are skipped for orders that only reduce a position;
4. the strategy's sizing method caps new exposure;
5. the allowed quantity becomes a ``Decimal`` rounded down to the lot; below min notional is a rejection.
The signal and the decision are journaled before ``evaluate`` returns. Limits are resolved and rule
objects built once per (strategy, market, symbol); account aggregates once per account snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mmats.model import AccountState, Environment, Fill, Instrument, MarketType, Side, TradeSignal
from mmats.risk.aggregation import AggregatedSignal, aggregate
from mmats.risk.correlation import CorrelationTracker
from mmats.risk.decision import DecisionStatus, OrderIntent, RiskDecision, RiskReason
from mmats.risk.exposure import Exposure, FloatMemo, base_asset
from mmats.risk.inputs import InputNeeds, RiskInputs, TradeTracker
from mmats.risk.killswitch import KillSwitch, KillSwitchState, KillSwitchTransition, KillTrigger, flatten_plan
from mmats.risk.limits import EffectiveRisk, RiskConfig, VolatilityTargetSpec, parse_risk_config
from mmats.risk.monitor import KillSwitchMonitor
from mmats.risk.rules import OrderRateAnomaly, RiskState, Rule, RuleContext, Throttle, build_rules, no_new_exposure
from mmats.risk.sessions import Session
from mmats.risk.sizing import SizingResult, SizingSpecT, TradeStats, size_position, target_notional
from mmats.risk.utilization import Utilization, measure

_ZERO = Decimal(0)
_INF = float("inf")
_RUNNING = KillSwitchState.RUNNING
_HARD = KillSwitchState.HARD
_SOFT = KillSwitchState.SOFT


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Everything resolved for one (strategy, market, symbol): built once, reused for every evaluation."""

    rules: tuple[Rule, ...]
    sizing: SizingSpecT | None
    throttled: bool
    rate_limited: bool


class RiskGatekeeper:
    """Implements ``RiskGate``. Not thread-safe by design: one instance lives in one actor or one backtest."""

    def __init__(
        self,
        config: RiskConfig | Mapping[str, Any] | None = None,
        environment: Environment | str = Environment.BACKTEST,
        *,
        journal: Any = None,
        kill_switch: KillSwitch | None = None,
        initial_equity: float | None = None,
        observe_equity: bool = True,
        config_path: str = "risk",
    ) -> None:
        self.config = parse_risk_config(config, config_path)
        self.environment = Environment(str(environment).upper())
        self.effective: EffectiveRisk = self.config.for_environment(self.environment)
        levels = self.effective.levels
        self.journal = journal
        self.kill_switch = kill_switch if kill_switch is not None else KillSwitch(journal)
        self.monitor = KillSwitchMonitor(self.kill_switch, levels.kill_switch, initial_equity)
        cc = levels.correlation
        self.correlation = CorrelationTracker(cc.threshold, cc.window, cc.min_observations) if cc else None
        self.state = RiskState(self.monitor, self.correlation, _longest_signal_window(self.effective))
        self.observe_equity = observe_equity
        self.rejections: list[RiskDecision] = []
        self.trade_stats: dict[str, TradeStats] = {}
        # Bars (ATR, returns) and closed trades (Kelly) for the settings that read them: docs/risk.md.
        self.inputs = RiskInputs(InputNeeds.of(self.effective), self.correlation, self.trade_stats)
        self.trades = TradeTracker() if self.inputs.needs.trades else None
        self._ctx = RuleContext(self.state)
        self._rulesets: dict[tuple[str, MarketType, str], RuleSet] = {}
        self._sessions: dict[MarketType, Session] = {}
        self._assets: dict[str, str] = {}
        self._exp: Exposure | None = None
        # the positions' float figures by snapshot identity; the signal path that feeds this gate reads them too
        self.position_floats = FloatMemo()
        self._corr_version = -1
        self._flatten_keys: set[tuple[str, str, str]] = set()

    # ------------------------------------------------------------------------------------ evaluate

    def evaluate(self, intent: OrderIntent, account: AccountState) -> RiskDecision:
        journal = self.journal
        if journal is not None:
            journal.append("signal", _signal_payload(intent), intent.ts_ns)
        decision = self._evaluate(intent, account)
        if journal is not None:
            journal.append("risk_decision", decision.to_dict(), intent.ts_ns)
        if decision.status is DecisionStatus.REJECTED:
            self.rejections.append(decision)
        return decision

    def _evaluate(self, intent: OrderIntent, account: AccountState) -> RiskDecision:
        qty_d = intent.quantity
        price_d = intent.price
        price = float(price_d)  # NaN fails the test below, infinities are excluded explicitly
        quote = intent.instrument.quote_currency
        if quote != account.currency and account.fx_rates:  # value of one unit in base currency (mmats.fx)
            price *= float(account.fx_rate(quote))
        qty = float(qty_d)
        if not (0.0 < qty < _INF and 0.0 < price < _INF):
            return RiskDecision(DecisionStatus.REJECTED, intent, _ZERO, (RiskReason(
                "InvalidIntent", 0.0, 0.0, f"quantity {qty_d} and price {price_d} must be positive"),))
        exp = self._exposure(account)
        if self.observe_equity:
            self.monitor.on_equity(account.ts_ns, exp.equity)
        inst = intent.instrument
        sym = inst.symbol
        ctx = self._ctx
        sign = 1 if intent.side is Side.BUY else -1
        pos = exp.qty.get(sym, 0.0)
        opposite = pos != 0.0 and (pos > 0.0) != (sign > 0)
        reducing = opposite and qty <= abs(pos)
        ctx.exposure = exp
        ctx.symbol = sym
        ctx.strategy_id = intent.strategy_id
        ctx.market = inst.market
        ctx.asset = self._assets.get(sym) or self._asset(sym)
        ctx.equity = exp.equity
        ctx.price = price
        ctx.qty = qty
        ctx.pos = pos
        ctx.sign = sign
        ctx.opposite = opposite
        ctx.reducing = reducing
        ctx.ts_ns = intent.ts_ns

        allowed = qty
        reasons: list[RiskReason] = []
        ks = self.kill_switch.state
        if ks is not _RUNNING:
            if ks is _HARD and (intent.strategy_id, intent.signal_id, sym) in self._flatten_keys:
                return self._flatten_decision(intent, account)
            if ks is not _SOFT or not opposite:
                return RiskDecision(DecisionStatus.REJECTED, intent, Decimal(0), (self._kill_reason(ks),))
            if not reducing:
                allowed = abs(pos)
                reasons.append(self._kill_reason(ks))
                ctx.qty = qty = allowed
                ctx.reducing = reducing = True

        rs = self._rulesets.get((intent.strategy_id, inst.market, sym))
        if rs is None:
            rs = self._ruleset(intent.strategy_id, inst.market, sym)
        for rule in rs.rules:
            if reducing and not rule.applies_to_reducing:
                continue
            a, reason = rule.check(intent, account, ctx)
            if a < allowed:
                allowed = a
                if reason is not None:
                    reasons.append(reason)
                if allowed <= 0.0:
                    break
        if rs.sizing is not None and not reducing and allowed > 0.0:
            allowed = self._apply_sizing(intent, rs.sizing, ctx, allowed, reasons)
        self._remember(intent, rs, allowed, reasons)
        if allowed <= 0.0:
            return RiskDecision(DecisionStatus.REJECTED, intent, _ZERO, tuple(reasons))
        if allowed >= ctx.qty and not reasons:
            return self._finish(intent, qty_d, qty * price, reasons, False)
        q = inst.round_quantity(min(Decimal(repr(allowed)), qty_d))
        return self._finish(intent, q, float(q) * price, reasons, True)

    def _finish(self, intent: OrderIntent, quantity: Decimal, notional: float,
                reasons: list[RiskReason], rounded: bool) -> RiskDecision:
        """``decide`` without its Decimal arithmetic on the common path: same statuses, same reasons.

        The lot check is a Decimal remainder only when the quantity is not already known to be a
        whole number of lots; the min-notional check is exact only within 1e-9 of the boundary.
        """
        inst = intent.instrument
        if not rounded and quantity % inst.lot_size != _ZERO:
            quantity = inst.round_quantity(quantity)
        if quantity <= _ZERO:
            return RiskDecision(DecisionStatus.REJECTED, intent, _ZERO, tuple(reasons))
        min_n = inst.min_notional
        if min_n:
            mf = float(min_n)
            if notional < mf * 1.000000001 and not inst.meets_min_notional(quantity, intent.price):
                return RiskDecision(DecisionStatus.REJECTED, intent, _ZERO, (*reasons, RiskReason(
                    "MinNotional", mf, float(quantity * intent.price), "order below the venue's min notional")))
        if quantity < intent.quantity:
            return RiskDecision(DecisionStatus.RESIZED, intent, quantity, tuple(reasons))
        return RiskDecision(DecisionStatus.APPROVED, intent, quantity, tuple(reasons))

    def _apply_sizing(self, intent: OrderIntent, spec: SizingSpecT, ctx: RuleContext, allowed: float,
                      reasons: list[RiskReason]) -> float:
        sig = intent.signal
        stop = intent.extra.get("stop_loss", sig.stop_loss if sig is not None else None)
        atr = intent.extra.get("atr")
        if atr is None and isinstance(spec, VolatilityTargetSpec):
            atr = self.inputs.atr(ctx.symbol, spec.atr_period, intent.ts_ns)
        notional, note = target_notional(spec, ctx.equity, ctx.price, stop_loss=stop, atr=atr,
                                         stats=self.trade_stats.get(intent.strategy_id))
        cap = no_new_exposure(ctx) + notional / ctx.price
        if cap < allowed:
            reasons.append(RiskReason(f"Sizing:{spec.method}", notional, ctx.qty * ctx.price,
                                      note or "order larger than the sizing method's position"))
            return cap
        return allowed

    def _remember(self, intent: OrderIntent, rs: RuleSet, allowed: float, reasons: list[RiskReason]) -> None:
        st = self.state
        if rs.throttled:
            st.record_signal(intent.strategy_id, intent.ts_ns)
        if rs.rate_limited:
            if allowed > 0.0:
                st.order_times.append(intent.ts_ns)
            for r in reasons:
                if r.rule == "OrderRateAnomaly":
                    window = next(x.window_s for x in rs.rules if isinstance(x, OrderRateAnomaly))
                    self.monitor.on_order_rate(intent.ts_ns, int(r.observed), window)

    def _kill_reason(self, state: KillSwitchState) -> RiskReason:
        ks = self.kill_switch
        what = {"SOFT": "no new exposure, exits only", "HARD": "flattening, no orders but the flatten orders",
                "FREEZE": "nothing moves"}[state.value]
        return RiskReason("KillSwitch", 0.0, float(state.rank),
                          f"kill switch {state.value} ({ks.trigger.value}: {ks.reason}): {what}")

    def _flatten_decision(self, intent: OrderIntent, account: AccountState) -> RiskDecision:
        p = account.position(intent.symbol)
        held = p.quantity if p is not None else Decimal(0)
        if held == 0 or (held > 0) == (intent.side is Side.BUY):
            return RiskDecision(DecisionStatus.REJECTED, intent, Decimal(0),
                                (RiskReason("KillSwitch", 0.0, 0.0, "flatten order: nothing left to close"),))
        qty = min(intent.quantity, abs(held))
        status = DecisionStatus.APPROVED if qty == intent.quantity else DecisionStatus.RESIZED
        return RiskDecision(status, intent, qty, ())

    # ------------------------------------------------------------------------------------ caches

    def _exposure(self, account: AccountState) -> Exposure:
        exp = self._exp
        if exp is None or exp.account is not account:
            exp = self._exp = Exposure(account, self._assets, self.effective.levels.assets, self.position_floats)
            self.state.cluster_cache.clear()
        corr = self.correlation
        if corr is not None:
            v = corr.refresh()
            if v != self._corr_version:
                self._corr_version = v
                self.state.cluster_cache.clear()
        return exp

    def _asset(self, symbol: str) -> str:
        a = self._assets[symbol] = base_asset(symbol, self.effective.levels.assets)
        return a

    def _ruleset(self, strategy_id: str, market: MarketType, symbol: str) -> RuleSet:
        limits = self.effective.resolve(strategy_id, market, symbol)
        rules = build_rules(limits, self.effective, market, self._session(market))
        sz = self.effective.levels.sizing
        spec = sz.strategies.get(strategy_id, sz.default)
        rs = RuleSet(rules, spec, any(isinstance(r, Throttle) for r in rules),
                     any(isinstance(r, OrderRateAnomaly) for r in rules))
        self._rulesets[(strategy_id, market, symbol)] = rs
        return rs

    def _session(self, market: MarketType) -> Session | None:
        th = self.effective.levels.trading_hours
        if th is None or not th.enabled:
            return None
        s = self._sessions.get(market)
        if s is None:
            name, windows = th.windows(market)
            s = self._sessions[market] = Session(name, windows)
        return s

    def prepare(self, account: AccountState) -> None:
        """Precompute the aggregates of a new account snapshot outside the latency-critical path."""
        self._exposure(account)

    def limits_for(self, strategy_id: str, market: MarketType, symbol: str) -> dict[str, Any]:
        """The resolved limits and which level each came from (for the API and for tests)."""
        r = self.effective.resolve(strategy_id, market, symbol)
        return {k: {"value": v, "from": r.sources[k]} for k, v in sorted(r.values.items())}

    # ------------------------------------------------------------------------------- kill switch

    def engage(self, state: KillSwitchState | str, reason: str, ts_ns: int,
               trigger: KillTrigger | str = KillTrigger.MANUAL) -> KillSwitchTransition | None:
        return self.kill_switch.engage(state, trigger, reason, ts_ns)

    def reset(
        self, reason: str, ts_ns: int, to: KillSwitchState | str = KillSwitchState.RUNNING
    ) -> KillSwitchTransition:
        return self.kill_switch.reset(reason, ts_ns, to)

    def flatten(self, account: AccountState, ts_ns: int | None = None,
                instruments: Mapping[str, Instrument] | None = None) -> list[OrderIntent]:
        """The HARD-state orders (riskiest first); only these pass ``evaluate`` while HARD."""
        intents = flatten_plan(account, instruments, ts_ns)
        for i in intents:
            self._flatten_keys.add((i.strategy_id, i.signal_id, i.symbol))
        return intents

    # ------------------------------------------------------------------------------------- feeds

    def update_return(self, symbol: str, ret: float) -> None:
        if self.correlation is not None:
            self.correlation.update_return(symbol, ret)

    def update_prices(self, prices: Mapping[str, float]) -> None:
        if self.correlation is not None:
            for symbol, price in prices.items():
                self.correlation.update_price(symbol, price)

    def record_trade(self, strategy_id: str, pnl: float) -> None:
        """A closed trade's result, for fractional Kelly sizing (the feeds below pass its return)."""
        stats = self.trade_stats.get(strategy_id)
        if stats is None:
            stats = self.trade_stats[strategy_id] = TradeStats()
        stats.record(pnl)

    @property
    def needs(self) -> InputNeeds:
        """What the config reads from bars and fills; callers skip feeding what is not needed."""
        return self.inputs.needs

    def on_bar(self, symbol: str, ts_ns: int, high: float, low: float, close: float) -> None:
        """Every closed bar of every symbol: the ATR of volatility sizing and the correlation returns."""
        self.inputs.on_bar(symbol, ts_ns, high, low, close)

    def on_bars(self, bars: Iterable[tuple[str, int, float, float, float, float, float]]) -> None:
        """Bar tuples ``(symbol, ts_ns, open, high, low, close, volume)``, as the feed actors send them."""
        self.inputs.on_bars(bars)

    def on_fill(self, fill: Fill) -> None:
        """Every booked fill, when the gatekeeper runs in the same process as the ledger (backtests):
        the strategies' closed round trips reach Kelly sizing."""
        if self.trades is not None:
            self.on_closed_trades(self.trades.on_fill(fill))

    def on_closed_trades(self, closed: Iterable[tuple[str, float]]) -> None:
        """(strategy, return on entry notional) of closed round trips, from a ``TradeTracker`` elsewhere."""
        for strategy_id, ret in closed:
            self.inputs.on_closed_trade(strategy_id, ret)

    @property
    def aggregating(self) -> bool:
        """Whether signals pass through an aggregation mode before evaluation (INDEPENDENT does not)."""
        return self.effective.levels.aggregation.mode != "INDEPENDENT"

    def drain_rejections(self) -> list[RiskDecision]:
        """Rejections since the last call, for the caller to pass to each strategy's ``on_order_rejected``."""
        out, self.rejections = self.rejections, []
        return out

    def size(self, strategy_id: str, instrument: Instrument, price: float, equity: float, *,
             stop_loss: float | None = None, atr: float | None = None) -> SizingResult | None:
        """The strategy's configured sizing (None when it has none), rounded down to the lot."""
        sz = self.effective.levels.sizing
        spec = sz.strategies.get(strategy_id, sz.default)
        if spec is None:
            return None
        return size_position(spec, equity, price, instrument, stop_loss=stop_loss, atr=atr,
                             stats=self.trade_stats.get(strategy_id))

    def aggregate(self, signals: Sequence[TradeSignal]) -> list[AggregatedSignal]:
        ag = self.effective.levels.aggregation
        return aggregate(signals, ag.mode, consensus_threshold=ag.consensus_threshold, weights=ag.weights,
                         priorities=ag.priorities, min_net_exposure=ag.min_net_exposure)

    def counters(self) -> dict[str, Any]:
        """Everything the rules count over time (throttles, order rate, loss references) as plain JSON."""
        return {"monitor": self.monitor.counters(), "rules": self.state.counters(),
                "trades": {sid: [t.wins, t.losses, t.gross_win, t.gross_loss] for sid, t in self.trade_stats.items()}}

    def restore_counters(self, saved: dict[str, Any]) -> None:
        self.monitor.restore_counters(saved.get("monitor") or {})
        self.state.restore_counters(saved.get("rules") or {})
        for sid, (wins, losses, gross_win, gross_loss) in (saved.get("trades") or {}).items():
            t = self.trade_stats[sid] = TradeStats()
            t.wins, t.losses, t.gross_win, t.gross_loss = int(wins), int(losses), float(gross_win), float(gross_loss)

    def utilization(self, account: AccountState | None) -> Utilization:
        """How much of each configured limit ``account`` uses, measured as the rules measure it (the
        monitor's peak and day-start equity included); the control API and ``mmats risk`` show it."""
        m = self.monitor
        return measure(account, self.effective, peak_equity=m.peak, day_start_equity=m.day_start,
                       assets=self.effective.levels.assets)

    def status(self) -> dict[str, Any]:
        m = self.monitor
        return {"environment": self.environment.value, "profile": self.effective.profile,
                "kill_switch": self.kill_switch.to_dict(), "peak_equity": m.peak, "day_start_equity": m.day_start,
                "week_start_equity": m.week_start, "month_start_equity": m.month_start}


def _longest_signal_window(eff: EffectiveRisk) -> float:
    lv = eff.levels
    levels = [lv.global_, *lv.markets.values(), *lv.strategies.values(), *lv.symbols.values()]
    return max([60.0, *(x.signal_window_s for x in levels if x.signal_window_s is not None)])


def _signal_payload(intent: OrderIntent) -> dict[str, Any]:
    s = intent.signal
    out: dict[str, Any] = {
        "strategy_id": intent.strategy_id, "signal_id": intent.signal_id, "symbol": intent.symbol,
        "side": intent.side.value, "quantity": str(intent.quantity), "price": str(intent.price),
        "reduces_position": intent.reduces_position,
    }
    if s is not None:
        out.update(action=s.action.value, position_size=s.position_size, confidence=s.confidence,
                   stop_loss=s.stop_loss, take_profit=s.take_profit, reasoning=s.reasoning)
    return out


#: The minimal gate's flat keys; in the full config they are limits of the ``global`` level.
FLAT_LIMIT_KEYS = ("max_position_pct", "max_order_notional")


def with_flat_limits(raw: Mapping[str, Any] | None, **flat: float | None) -> dict[str, Any]:
    """A full risk config from a leveled one plus flat ``max_position_pct``/``max_order_notional`` keys.

    Flat keys found at the top of ``raw`` or passed as arguments become ``global`` limits, so that a
    config written for the minimal gate runs unchanged through the full gatekeeper (backtest and live
    then apply the very same rules). An explicit ``global`` value wins over a flat one.
    """
    out = dict(raw or {})
    glob = dict(out.get("global") or {})
    for key in FLAT_LIMIT_KEYS:
        value = out.pop(key, None)
        if value is None:
            value = flat.get(key)
        if value is not None:
            glob.setdefault(key, value)
    if glob:
        out["global"] = glob
    return out


def system_risk_config(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``risk`` block of a running system as the gatekeeper sees it: the same default position limit
    as a backtest (``max_position_pct`` 1.0: no leverage unless the config says so)."""
    return with_flat_limits(raw, max_position_pct=1.0)


def build_backtest_gatekeeper(
    raw: Mapping[str, Any] | None, initial_cash: float, journal: Any = None
) -> tuple[RiskGatekeeper, KillSwitchMonitor]:
    """The gatekeeper of one backtest run, and the monitor the engine feeds equity to on every bar.

    The engine journals signals and decisions itself, so only the kill switch writes to ``journal``
    here; equity reaches the monitor from the engine (``observe_equity=False``), never twice.
    """
    gk = RiskGatekeeper(raw, Environment.BACKTEST, journal=None, kill_switch=KillSwitch(journal),
                        initial_equity=initial_cash, observe_equity=False, config_path="risk.gatekeeper")
    return gk, gk.monitor


def replay_flatten(intents: Iterable[OrderIntent], positions: dict[str, Decimal]) -> dict[str, Decimal]:
    """Apply flatten intents to a {symbol: signed quantity} map (tests and dry runs)."""
    out = dict(positions)
    for i in intents:
        out[i.symbol] = out.get(i.symbol, Decimal(0)) + i.signed_quantity
    return out
