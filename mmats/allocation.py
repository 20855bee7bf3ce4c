"""Capital between strategies: allocation weights and their periodic rebalancing.

A strategy's signal asks for a fraction of *its* capital (``position_size``); the weight says how much of
the account's equity that capital is. The signal path sizes a signal of strategy ``s`` on
``equity * weight[s] * strategies.s.allocation`` (mmats.engine.signal_path), in the backtest and in the
running system alike, so the allocator only has to keep ``weights`` current.

Three methods (``allocation.method`` in the system config, docs/configuration.md):
- ``fixed``: the configured weights, for ever. Each signal is sized on the equity of the moment, so the
  mix is restored at every signal (a constant-mix portfolio) without a schedule.
- ``inverse_vol``: every ``rebalance_every`` of bar time, weights proportional to ``1 / volatility`` of
  each strategy's recent returns (over ``lookback``): each strategy brings about the same risk.
- ``performance``: weights proportional to each strategy's recent Sharpe ratio floored at 0; a strategy
  with no positive record falls to ``min_weight``, which keeps it trading so it can earn its way back.

Returns are measured on each strategy's own capital (its P&L divided by ``weight * equity``), summed into
samples of ``sample_every`` of bar time: a strategy's risk must not look smaller because its weight is.
A strategy with fewer than ``min_history`` samples in the lookback, or with no variation at all (it held
nothing), keeps its prior weight: no record is no reason to move capital.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mmats.errors import ConfigError
from mmats.model import AccountState

Method = Literal["fixed", "inverse_vol", "performance"]
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_SCHEDULED = ("rebalance_every", "lookback", "sample_every", "min_history", "min_weight", "max_weight")


def duration_ns(text: str) -> int:
    """``30d``, ``1h``, ``15m``, ``2w``, ``90s``: bar-time spans of the allocation schedule, in nanoseconds."""
    m = _DURATION.match(text)
    if m is None or int(m.group(1)) == 0:
        raise ConfigError(f"{text!r} is not a duration: a positive whole number and a unit s, m, h, d or w "
                          "(e.g. 1d, 30d, 4h)")
    return int(m.group(1)) * _UNITS_S[m.group(2)] * 1_000_000_000


class AllocationConfig(BaseModel):
    """``allocation:`` in the system config: how capital is split between its strategies."""

    model_config = ConfigDict(extra="forbid")

    method: Method = "fixed"
    weights: dict[str, float] = Field(
        default_factory=dict, description="strategy id -> share of equity (initial weights; the weights of "
        "method fixed). Strategies not named share what is left of total equally")
    total: float = Field(1.0, gt=0, le=10, description="the weights add up to at most this (1 = all the equity)")
    rebalance_every: str = Field("1d", description="bar time between rebalances (inverse_vol, performance)")
    lookback: str = Field("30d", description="bar time of returns a rebalance looks at")
    sample_every: str = Field("1h", description="returns are summed into samples of this bar-time span")
    min_history: int = Field(10, ge=2, le=100_000, description="samples in the lookback a strategy needs to "
                             "be reweighted; with fewer it keeps its prior weight")
    min_weight: float = Field(0.0, ge=0, description="floor of a reweighted strategy's weight")
    max_weight: float | None = Field(None, gt=0, description="cap of a reweighted strategy's weight "
                                     "(default: total)")

    @field_validator("rebalance_every", "lookback", "sample_every")
    @classmethod
    def _duration(cls, v: str) -> str:
        try:
            duration_ns(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if not (w >= 0 and math.isfinite(w))}
        if bad:
            raise ValueError(f"weights must be >= 0, got {bad}")
        return v

    @model_validator(mode="after")
    def _check(self) -> AllocationConfig:
        if sum(self.weights.values()) > self.total + 1e-9:
            raise ValueError(f"weights add up to {sum(self.weights.values()):g}, more than total {self.total:g}")
        if self.method == "fixed":
            # Compared with the defaults, not with what was typed: a dumped and re-read config must load.
            fields = type(self).model_fields
            given = [k for k in _SCHEDULED if getattr(self, k) != fields[k].default]
            if given:
                raise ValueError(f"{', '.join(given)}: only for methods inverse_vol and performance (fixed weights "
                                 "are never rebalanced)")
            return self
        cap = self.cap
        if cap > self.total:
            raise ValueError(f"max_weight {cap:g} is more than total {self.total:g}")
        if self.min_weight > cap:
            raise ValueError(f"min_weight {self.min_weight:g} is more than max_weight {cap:g}")
        if duration_ns(self.sample_every) > duration_ns(self.lookback):
            raise ValueError(f"sample_every {self.sample_every} is longer than lookback {self.lookback}")
        return self

    @property
    def cap(self) -> float:
        return self.total if self.max_weight is None else self.max_weight

    def check_strategies(self, strategy_ids: list[str]) -> None:
        """Against the strategies it splits capital between; raises ValueError naming what is wrong."""
        unknown = sorted(set(self.weights) - set(strategy_ids))
        if unknown:
            raise ValueError(f"weights name {unknown}, which are not strategies of this config "
                             f"(strategies: {sorted(strategy_ids)})")
        weights = initial_weights(self, strategy_ids)
        zero = sorted(s for s, w in weights.items() if w <= 0)
        if zero and self.method == "fixed":
            raise ValueError(f"strategies {zero} get no capital (weight 0): give them a weight or leave part of "
                             "total to them")
        if self.method != "fixed":
            n = len(strategy_ids)
            if n * self.min_weight > self.total + 1e-9:
                raise ValueError(f"min_weight {self.min_weight:g} for {n} strategies is more than total "
                                 f"{self.total:g}")
            outside = sorted(s for s, w in weights.items() if w < self.min_weight - 1e-12 or w > self.cap + 1e-12)
            if outside:
                raise ValueError(f"initial weights of {outside} are outside [min_weight, max_weight] = "
                                 f"[{self.min_weight:g}, {self.cap:g}]")


def initial_weights(cfg: AllocationConfig, strategy_ids: list[str]) -> dict[str, float]:
    """The configured weights; strategies not named share what is left of ``total`` equally."""
    named = {s: float(cfg.weights[s]) for s in strategy_ids if s in cfg.weights}
    rest = [s for s in strategy_ids if s not in named]
    left = max(cfg.total - sum(named.values()), 0.0)
    return {s: named[s] if s in named else left / len(rest) for s in strategy_ids}


@dataclass(frozen=True, slots=True)
class AllocationChange:
    """One rebalance that moved weights: what the audit journal records before it takes effect."""

    ts_ns: int
    method: str
    previous: dict[str, float]
    weights: dict[str, float]
    reason: str
    # Per strategy: the figure the method weighed (volatility or Sharpe), the samples it saw, and whether
    # it kept its prior weight for lack of history.
    detail: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ts_ns": self.ts_ns, "method": self.method, "previous": dict(self.previous),
                "weights": dict(self.weights), "reason": self.reason, "detail": self.detail}


class CapitalAllocator:
    """Weights per strategy, rebalanced on bar time from each strategy's returns.

    Call ``on_bar`` once per bar time (or less often: returns are summed into samples) with each
    strategy's P&L since the previous call divided by the account's equity; apply ``weights`` when it
    returns a change. Pure and deterministic: the backtest and the gatekeeper actor run the same object.
    """

    def __init__(self, config: AllocationConfig, strategy_ids: list[str]) -> None:
        if not strategy_ids:
            raise ConfigError("allocation: no strategies to allocate capital to")
        try:
            config.check_strategies(strategy_ids)
        except ValueError as exc:
            raise ConfigError(f"allocation: {exc}") from None
        self.config = config
        self.strategy_ids = list(strategy_ids)
        self.weights: dict[str, float] = initial_weights(config, self.strategy_ids)
        self.scheduled = config.method != "fixed"
        self.every_ns = duration_ns(config.rebalance_every)
        self.lookback_ns = duration_ns(config.lookback)
        self.sample_ns = duration_ns(config.sample_every)
        self.next_due_ns: int | None = None
        self.last_rebalance_ns: int | None = None
        self.rebalances = 0
        self.changes = 0
        self._bucket: int | None = None
        self._sums: dict[str, float] = {}
        self._samples: deque[tuple[int, dict[str, float]]] = deque()  # (sample start ns, returns on capital)

    def on_bar(self, ts_ns: int, returns: Mapping[str, float]) -> AllocationChange | None:
        """``returns``: per strategy, P&L since the previous call / account equity (a strategy not named
        made nothing). The change, when a due rebalance moved the weights; None otherwise."""
        if not self.scheduled:
            return None
        bucket = ts_ns // self.sample_ns
        if self._bucket is None:
            self._bucket = bucket
        elif bucket != self._bucket:
            self._close_sample()
            self._bucket = bucket
        for sid, r in returns.items():
            w = self.weights.get(sid)
            if w and r:
                self._sums[sid] = self._sums.get(sid, 0.0) + r / w  # on the strategy's own capital
        if self.next_due_ns is None:
            self.next_due_ns = (ts_ns // self.every_ns + 1) * self.every_ns
            return None
        if ts_ns < self.next_due_ns:
            return None
        self.next_due_ns = (ts_ns // self.every_ns + 1) * self.every_ns
        return self.rebalance(ts_ns, f"scheduled every {self.config.rebalance_every}")

    def _close_sample(self) -> None:
        assert self._bucket is not None
        sums, self._sums = self._sums, {}
        self._samples.append((self._bucket * self.sample_ns, {s: sums.get(s, 0.0) for s in self.strategy_ids}))

    def samples(self, ts_ns: int) -> dict[str, list[float]]:
        """Each strategy's finished samples within the lookback ending at ``ts_ns``, oldest first."""
        horizon = ts_ns - self.lookback_ns
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()
        return {s: [x[s] for _, x in self._samples] for s in self.strategy_ids}

    def rebalance(self, ts_ns: int, reason: str) -> AllocationChange | None:
        """Recompute the weights now (the schedule calls it; a test or an operator may too)."""
        if not self.scheduled:
            return None
        cfg = self.config
        history = self.samples(ts_ns)
        detail: dict[str, dict[str, Any]] = {}
        scores: dict[str, float] = {}
        for sid, xs in history.items():
            n = len(xs)
            sd = _stdev(xs)
            info: dict[str, Any] = {"samples": n}
            if n < cfg.min_history or sd <= 0:
                info["kept"] = "too little history" if n < cfg.min_history else "no variation (held nothing)"
            elif cfg.method == "inverse_vol":
                info["volatility"] = sd
                scores[sid] = 1.0 / sd
            else:
                sharpe = (sum(xs) / n) / sd
                info["sharpe"] = sharpe
                scores[sid] = max(sharpe, 0.0)
            detail[sid] = info
        self.rebalances += 1
        self.last_rebalance_ns = ts_ns
        kept = {s: self.weights[s] for s in self.strategy_ids if s not in scores}
        budget = max(cfg.total - sum(kept.values()), 0.0)
        new = dict(kept)
        new.update(_bounded(scores, budget, cfg.min_weight, cfg.cap))
        new = {s: round(new[s], 12) for s in self.strategy_ids}
        if all(abs(new[s] - self.weights[s]) <= 1e-9 for s in self.strategy_ids):
            return None
        change = AllocationChange(ts_ns, cfg.method, dict(self.weights), new, reason, detail)
        self.weights = new
        self.changes += 1
        return change

    def state(self) -> dict[str, Any]:
        """What status shows and what a restart restores (weights and schedule; samples start afresh)."""
        return {"method": self.config.method, "weights": dict(self.weights), "total": self.config.total,
                "rebalance_every": self.config.rebalance_every if self.scheduled else None,
                "lookback": self.config.lookback if self.scheduled else None,
                "next_due_ns": self.next_due_ns, "last_rebalance_ns": self.last_rebalance_ns,
                "rebalances": self.rebalances, "changes": self.changes}

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Weights and schedule saved by ``state`` (the gatekeeper's restart): strategies that are no longer
        allocated are dropped, new ones keep their initial weight."""
        weights = saved.get("weights") or {}
        for sid in self.strategy_ids:
            if sid in weights:
                self.weights[sid] = float(weights[sid])
        self.next_due_ns = saved.get("next_due_ns")
        self.last_rebalance_ns = saved.get("last_rebalance_ns")
        self.rebalances = int(saved.get("rebalances", 0))
        self.changes = int(saved.get("changes", 0))


def _stdev(xs: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mean = sum(xs) / n
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))


def _bounded(scores: Mapping[str, float], budget: float, lo: float, hi: float) -> dict[str, float]:
    """``budget`` split in proportion to ``scores``, each share within [lo, hi] (water-filling: a share
    pinned at a bound is fixed, the rest is split again among the others). All scores 0: equal shares."""
    if not scores:
        return {}
    lo = min(lo, budget / len(scores))  # strategies that kept their weight may leave less than the floors
    free = dict(scores) if any(v > 0 for v in scores.values()) else dict.fromkeys(scores, 1.0)
    out: dict[str, float] = {}
    left = budget
    while free:
        total = sum(free.values())
        share = {s: (left * v / total if total > 0 else left / len(free)) for s, v in free.items()}
        low = [s for s, w in share.items() if w < lo]
        high = [s for s, w in share.items() if w > hi]
        if not low and not high:
            out.update(share)
            break
        for s in low:
            out[s] = lo
        for s in high if not low else []:  # floors first: they take from the others, which may then fit
            out[s] = hi
        for s in out:
            free.pop(s, None)
        left = max(budget - sum(out.values()), 0.0)
    return out


class HoldingsPnL:
    """Each strategy's P&L between account updates, from what it holds: ``held[(strategy, symbol)] *``
    price change. The running system has each strategy's holdings and the account's marks at every
    update, so the gatekeeper measures returns where it sizes signals, with no extra message; fees and the
    gap between a fill's price and the bar's close are not in it (docs/risk.md, "Capital allocation")."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.held: dict[tuple[str, str], float] = {}
        self.as_of_ns = -1
        self.base_equity = 0.0  # the equity when the P&L now pending started to accrue
        self._pending: dict[str, float] = {}

    def update(self, as_of_ns: int, held: Mapping[tuple[str, str], float], marks: Mapping[str, float],
               equity: float) -> dict[str, float] | None:
        """Per strategy P&L / equity since the previous bar time; None when the bar time did not move (what
        the prices did meanwhile is kept for the next bar time's figure)."""
        pending = self._pending
        for (sid, sym), qty in self.held.items():
            before, now = self.marks.get(sym), marks.get(sym)
            if qty and before is not None and now is not None and now != before:
                pending[sid] = pending.get(sid, 0.0) + qty * (now - before)
        self.held = dict(held)
        self.marks.update(marks)
        if as_of_ns <= self.as_of_ns:
            return None
        base = self.base_equity if self.base_equity > 0 else equity
        out = {sid: pnl / base for sid, pnl in pending.items()} if base > 0 else {}
        self._pending = {}
        self.as_of_ns = as_of_ns
        self.base_equity = equity
        return out


class AccountAllocation:
    """The running system's allocation: the allocator fed from the account updates the signal path gets.

    ``allocation`` (per strategy, what ``SignalPath.allocation`` holds) is each strategy's own
    ``allocation`` multiplier times its weight; a strategy outside the allocator (submitted at runtime)
    keeps its multiplier of the whole equity."""

    def __init__(self, config: AllocationConfig, base: Mapping[str, float]) -> None:
        self.base = dict(base)
        self.allocator = CapitalAllocator(config, list(self.base))
        self.pnl = HoldingsPnL()

    @property
    def allocation(self) -> dict[str, float]:
        w = self.allocator.weights
        return {sid: self.base[sid] * w[sid] for sid in self.allocator.strategy_ids}

    def on_account(self, as_of_ns: int, held: Mapping[tuple[str, str], float] | None,
                   marks: Mapping[str, float], equity: float) -> AllocationChange | None:
        """One account update (``held``: each (strategy, symbol)'s net quantity; ``marks``: last prices);
        the change when this bar time's rebalance moved the weights."""
        returns = self.pnl.update(as_of_ns, self.pnl.held if held is None else held, marks, equity)
        if returns is None:
            return None
        return self.allocator.on_bar(as_of_ns, returns)

    def on_account_state(self, account: AccountState, as_of_ns: int, held: Mapping[tuple[str, str], float] | None,
                         sizing: dict[str, float]) -> AllocationChange | None:
        """The one call site of the gatekeeper actor and the portfolio backtest, right before the signal
        path gets the same account: a rebalance due at this bar time updates ``sizing`` (the signal path's
        ``allocation``) so this bar's signals are sized on the new weights. The caller journals the change."""
        marks = {p.symbol: float(p.last_price) for p in account.positions}
        change = self.on_account(as_of_ns, held, marks, float(account.equity))
        if change is not None:
            sizing.update(self.allocation)
        return change

    def state(self) -> dict[str, Any]:
        return {**self.allocator.state(), "allocation": self.allocation}


def account_allocation(config: AllocationConfig | None, base: Mapping[str, float]) -> AccountAllocation | None:
    """The allocation of a system config (``allocation:`` and each strategy's ``allocation``), or None."""
    return None if config is None else AccountAllocation(config, base)
